//! The HTML pages (maud escapes every value) and the JSON API handlers that serve the same views.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use csv_fallback::{CsvFile, Export, ExportKind};
use health_monitor::{METRICS_CONTENT_TYPE, OrganisationHealth, Status, render_metrics};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sync_store::{Direction, RunStatus};

use crate::Shared;
use crate::auth::Admin;
use crate::chart::runs_chart;
use crate::csrf;
use crate::error::{Error, Result};
use crate::routes::Base;
use crate::view::{self, AlertView, CacheView, ConfigView, ConflictView, ExportOffer, FailureView, Overview, RunView};

/// The query of the list pages.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    /// Show one organisation only.
    org: Option<String>,
    /// The outcome of the action that led here, by code.
    notice: Option<String>,
}

/// Everything the frame of a page needs.
struct Frame<'a> {
    shared: &'a Shared,
    base: &'a Base,
    admin: &'a Admin,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
}

impl Frame<'_> {
    fn clock(&self) -> Now {
        Now {
            at: self.now,
            tz: self.tz,
        }
    }
}

const NAV: [(&str, &str); 8] = [
    ("/", "Overview"),
    ("/runs", "Runs"),
    ("/failures", "Failed records"),
    ("/conflicts", "Conflicts"),
    ("/alerts", "Alerts"),
    ("/cache", "Certification cache"),
    ("/export", "CSV export"),
    ("/config", "Configuration"),
];

fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "requeued" => "The record was requeued: the next run tries it again, with its attempts counted from zero.",
        "dismissed" => "The record was dismissed: it is no longer retried.",
        "resolved" => "The conflict was resolved: the next run writes the chosen value.",
        "resolved-applied" => "The conflict was resolved and the chosen value was written now.",
        "resolved-apply-failed" => {
            "The conflict was resolved, but writing it now failed (see the log); the next run writes it."
        }
        "acknowledged" => "The alert was acknowledged. It stays listed until its cause is gone.",
        _ => return None,
    })
}

/// The present moment and the zone times are shown in (the first organisation's, Europe/Oslo for HLF).
#[derive(Debug, Clone, Copy)]
struct Now {
    at: DateTime<Utc>,
    tz: chrono_tz::Tz,
}

/// An instant in the dashboard's zone with its abbreviation, e.g. `2026-12-02 02:00 CET` (`CEST` in summer).
fn when(at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let minutes = (now - at).num_minutes();
    match minutes {
        m if m < 1 => "just now".to_owned(),
        m if m < 120 => format!("{m} min ago"),
        m if m < 48 * 60 => format!("{} h ago", m / 60),
        m => format!("{} days ago", m / (24 * 60)),
    }
}

/// The exact local time, with how long ago beside it; the machine-readable instant in UTC.
fn time(at: DateTime<Utc>, now: Now) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (when(at, now.tz)) }
        span class="muted" { " (" (ago(at, now.at)) ")" }
    }
}

fn opt_time(at: Option<DateTime<Utc>>, now: Now) -> Markup {
    match at {
        Some(at) => time(at, now),
        None => html! { span class="muted" { "never" } },
    }
}

fn run_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Partial => "partial",
        RunStatus::Failed => "failed",
    }
}

fn direction(direction: Direction) -> &'static str {
    match direction {
        Direction::Pull => "Dynamics → app",
        Direction::Push => "app → Dynamics",
    }
}

fn direction_value(direction: Direction) -> &'static str {
    match direction {
        Direction::Pull => "pull",
        Direction::Push => "push",
    }
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

impl Frame<'_> {
    fn page(&self, title: &str, current: &str, notice: Option<&str>, body: Markup) -> Response {
        let base = self.base;
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="robots" content="noindex";
                    title { (title) " · HLF integration" }
                    link rel="stylesheet" href=(base.to("/assets/style.css"));
                    // No icon: without this the browser asks for /favicon.ico on every page.
                    link rel="icon" href="data:,";
                }
                body {
                    header class="top" {
                        a class="brand" href=(base.to("/")) { "HLF ⇄ Dynamics 365" }
                        nav {
                            @for (path, label) in NAV {
                                @if path == current {
                                    a href=(base.to(path)) aria-current="page" { (label) }
                                } @else {
                                    a href=(base.to(path)) { (label) }
                                }
                            }
                        }
                        span class="who" { "Signed in as " (self.admin.name) }
                    }
                    main {
                        h1 { (title) }
                        @if let Some(text) = notice.and_then(notice_text) {
                            p class="notice" role="status" { (text) }
                        }
                        (body)
                    }
                    footer {
                        "Generated " (when(self.now, self.tz)) ". Times are in " (self.tz.name())
                        " time, with how long ago in brackets; the JSON API gives them in UTC."
                    }
                }
            }
        };
        Html(page.into_string()).into_response()
    }

    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(csrf::FIELD) value=(self.shared.csrf.token(self.now)); }
    }

    /// Links to show all organisations or one.
    fn org_filter(&self, path: &str, selected: Option<&str>) -> Markup {
        let organisations = &self.shared.config.organisations;
        html! {
            @if organisations.len() > 1 {
                p class="filter" {
                    "Organisation: "
                    @if selected.is_none() { strong { "all" } } @else { a href=(self.base.to(path)) { "all" } }
                    @for org in organisations {
                        " · "
                        @if selected == Some(org.id.as_str()) {
                            strong { (org.name) }
                        } @else {
                            a href={(self.base.to(path)) "?org=" (org.id)} { (org.name) }
                        }
                    }
                }
            }
        }
    }

    fn org_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.shared.config.organisation(id).map_or(id, |o| o.name.as_str())
    }
}

/// An error as a page. `base` is known in handlers; the CSRF check answers before one is extracted.
pub(crate) fn error_response(error: &Error, base: Option<&Base>) -> Response {
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(error = %error.public_message(), "dashboard request failed");
    }
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Error · HLF integration" }
                @if let Some(base) = base { link rel="stylesheet" href=(base.to("/assets/style.css")); }
            }
            body {
                main {
                    h1 { (status.canonical_reason().unwrap_or("Error")) }
                    p class="error" { (error.public_message()) }
                    @if let Some(base) = base { p { a href=(base.to("/")) { "Back to the overview" } } }
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

macro_rules! frame {
    ($shared:ident, $base:ident, $admin:ident) => {
        Frame {
            shared: &$shared,
            base: &$base,
            admin: &$admin,
            now: $shared.clock.now(),
            tz: $shared
                .config
                .organisations
                .first()
                .map_or(chrono_tz::UTC, |o| o.time_zone),
        }
    };
}

fn respond(result: Result<Response>, base: &Base) -> Response {
    result.unwrap_or_else(|error| error_response(&error, Some(base)))
}

// ----- overview -----

pub(crate) async fn overview(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let frame = frame!(shared, base, admin);
    respond(
        view::overview(&shared)
            .await
            .map(|data| frame.page("Overview", "/", query.notice.as_deref(), overview_body(&frame, &data))),
        &base,
    )
}

fn overview_body(frame: &Frame<'_>, data: &Overview) -> Markup {
    let base = frame.base;
    let now = frame.clock();
    html! {
        @for org in &data.organisations {
            section class="card org" {
                h2 {
                    (org.name) " "
                    span class={"badge " (status_name(org.status))} { (status_name(org.status)) }
                }
                @if org.reasons.is_empty() {
                    p class="reason" { "Nothing to look at: both directions synced recently and no alert is open." }
                } @else {
                    // Worst first: the first reason decided the status.
                    ul class="reasons" {
                        @for reason in &org.reasons { li class="reason" { (reason) } }
                    }
                }
                dl class="facts" {
                    dt { "Last successful sync" }
                    dd {
                        (direction(Direction::Pull)) " " (opt_time(org.last_success.pull, now)) br;
                        (direction(Direction::Push)) " " (opt_time(org.last_success.push, now))
                    }
                    dt { "Last run" }
                    dd {
                        @if let Some(run) = &org.last_run {
                            span class={"status " (run_status(run.status))} { (run_status(run.status)) }
                            " · " (time(run.started_at, now)) " · "
                            (run.metrics.pull.written + run.metrics.push.written) " written, "
                            (run.metrics.pull.failed + run.metrics.push.failed) " failed · "
                            (duration(run.metrics.duration_ms))
                            @if let Some(error) = &run.error { br; span class="error" { (error) } }
                        } @else {
                            span class="muted" { "no run yet" }
                        }
                    }
                    dt { "Open alerts" }
                    dd { a href={(base.to("/alerts")) "?org=" (org.id)} { (org.alerts.len()) } }
                    dt { "Failed records" }
                    dd {
                        a href={(base.to("/failures")) "?org=" (org.id)} {
                            (org.failed_dead) " dead, " (org.failed_retrying) " retrying"
                        }
                    }
                    dt { "Conflicts to resolve" }
                    dd { a href={(base.to("/conflicts")) "?org=" (org.id)} { (org.conflicts_open) } }
                    dt { "Stale cached statuses" }
                    dd { a href={(base.to("/cache")) "?org=" (org.id)} { (org.cache_stale) } }
                    @if org.mismatches > 0 {
                        dt { "Certification mismatches" }
                        dd class="warn" {
                            @if org.mismatches == 1 { "1 mentor differs" } @else { (org.mismatches) " mentors differ" }
                            " between the app and Dynamics"
                        }
                    }
                    @if org.not_in_dynamics > 0 {
                        dt { "Not in Dynamics" }
                        dd class="warn" {
                            @if org.not_in_dynamics == 1 { "1 active mentor" } @else { (org.not_in_dynamics) " active mentors" }
                            " Dynamics has never confirmed; "
                            a href={(base.to("/failures")) "?org=" (org.id)} { "the failed records say why" }
                        }
                    }
                    @if let Some(postings) = &org.postings {
                        @let m = &postings.metrics;
                        dt { "Accounting export" }
                        dd {
                            span class={"status " (run_status(postings.status))} { (run_status(postings.status)) }
                            " · " (time(postings.started_at, now)) " · "
                            (m.exported) " exported, " (m.failed) " failed, " (m.held) " held"
                            @if let Some(error) = &postings.error { br; span class="error" { (error) } }
                        }
                        @if let Some(r) = &postings.reconciled {
                            dt { "Postings reconciled" }
                            @if r.unreconciled() == 0 {
                                dd { (r.checked) " exported postings checked; Dynamics holds them all as the app does" }
                            } @else {
                                dd class="warn" {
                                    (r.checked) " checked: " (r.missing) " missing in Dynamics, "
                                    (r.differing) " with another amount (posting ids "
                                    (r.sample.join(", "))
                                    @if r.unreconciled() > r.sample.len() as u64 { " …" }
                                    ")"
                                }
                            }
                        }
                    }
                }
                h3 { "Last " (org.chart.len()) " runs" }
                (runs_chart(&org.chart, now.tz))
                // The chart's figures as text, for a screen reader and for anyone who wants the numbers.
                @if !org.chart.is_empty() {
                    details class="chart-figures" {
                        summary { "The chart's figures" }
                        table {
                            thead { tr { th { "Run started" } th { "Status" } th { "Records written" } th { "Records failed" } } }
                            tbody {
                                @for point in org.chart.iter().rev() {
                                    tr {
                                        td { (time(point.started_at, now)) }
                                        td { span class={"status " (run_status(point.status))} { (run_status(point.status)) } }
                                        td class="num" { (point.synced) }
                                        td class="num" { (point.failed) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if !org.alerts.is_empty() {
                    h3 { "Alerts" }
                    ul class="alerts" {
                        @for alert in &org.alerts {
                            li class={"severity-" (severity(alert))} {
                                strong { (severity(alert)) } " " (alert.message)
                                span class="muted" { " · since " (time(alert.raised_at, now)) " · " (alert.state) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Healthy => "healthy",
        Status::Degraded => "degraded",
        Status::Unhealthy => "unhealthy",
    }
}

fn severity(alert: &AlertView) -> &'static str {
    match alert.severity {
        sync_store::Severity::Warning => "warning",
        sync_store::Severity::Critical => "critical",
    }
}

// ----- runs -----

pub(crate) async fn runs(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let frame = frame!(shared, base, admin);
    let org = query.org.as_deref();
    respond(
        view::runs(&shared, org)
            .await
            .map(|runs| frame.page("Runs", "/runs", query.notice.as_deref(), runs_body(&frame, org, &runs))),
        &base,
    )
}

fn runs_body(frame: &Frame<'_>, org: Option<&str>, runs: &[RunView]) -> Markup {
    let now = frame.clock();
    html! {
        (frame.org_filter("/runs", org))
        @if runs.is_empty() {
            p class="empty" { "No runs yet." }
        } @else {
            div class="scroll" {
                table {
                    thead {
                        tr {
                            th { "Started" } th { "Organisation" } th { "Kind" } th { "Status" } th { "Took" }
                            th title="read / written / skipped / failed / conflicts" { "Dynamics → app" }
                            th title="read / written / skipped / failed / conflicts" { "app → Dynamics" }
                            th { "Requests" } th { "Throttled" } th { "Retried" } th { "Waited" } th { "Error" }
                        }
                    }
                    tbody {
                        @for run in runs {
                            tr {
                                td { (time(run.started_at, now)) }
                                td { (frame.org_name(&run.organisation_id)) }
                                td { (format!("{:?}", run.kind).to_lowercase()) }
                                td { span class={"status " (run_status(run.status))} { (run_status(run.status)) } }
                                td class="num" { (duration(run.metrics.duration_ms)) }
                                @if let Some(p) = &run.metrics.postings {
                                    td class="num" { (p.checked) " checked, " (p.unreconciled()) " unreconciled" }
                                    td class="num" { (p.exported) " postings exported, " (p.failed) " failed" }
                                } @else {
                                    @for d in [&run.metrics.pull, &run.metrics.push] {
                                        td class="num" {
                                            (d.read) " / " (d.written) " / " (d.skipped) " / " (d.failed) " / " (d.conflicts)
                                        }
                                    }
                                }
                                td class="num" { (run.metrics.requests) }
                                td class="num" { (run.metrics.throttled) }
                                td class="num" { (run.metrics.retried) }
                                td class="num" { (duration(run.metrics.waited_ms)) }
                                td class="error" { (run.error.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            p class="muted" { "Counts per direction: read / written / skipped / failed / conflicts." }
        }
    }
}

// ----- failed records -----

pub(crate) async fn failures(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let frame = frame!(shared, base, admin);
    let org = query.org.as_deref();
    respond(
        view::failures(&shared, org).await.map(|records| {
            frame.page(
                "Failed records",
                "/failures",
                query.notice.as_deref(),
                failures_body(&frame, org, &records),
            )
        }),
        &base,
    )
}

fn failures_body(frame: &Frame<'_>, org: Option<&str>, records: &[FailureView]) -> Markup {
    let now = frame.clock();
    let base = frame.base;
    html! {
        (frame.org_filter("/failures", org))
        p class="help" {
            "A failed record is retried on every run until it has failed " (frame.shared.config.retry.record_max_attempts)
            " runs in a row; then it is dead and waits for you. Fix the cause (the reason says what it is), then "
            "requeue it. Dismiss a record that should not sync."
        }
        @if records.is_empty() {
            p class="empty" { "No failed records." }
        } @else {
            div class="scroll" {
                table {
                    thead {
                        tr {
                            th { "Organisation" } th { "Member number" } th { "Name" } th { "Direction" }
                            th { "Reason" } th { "Attempts" } th { "First failed" } th { "Last failed" }
                            th { "State" } th { "Actions" }
                        }
                    }
                    tbody {
                        @for r in records {
                            tr class={"failure " (r.state)} {
                                td { (frame.org_name(&r.organisation_id)) }
                                td { (r.member_number.as_deref().unwrap_or("—")) }
                                td { (r.name.as_deref().unwrap_or("—")) }
                                td { (direction(r.direction)) }
                                td class="error" { (r.error) }
                                td class="num" { (r.attempts) " of " (r.max_attempts) }
                                td { (time(r.first_failed_at, now)) }
                                td { (time(r.last_failed_at, now)) }
                                td { span class={"state " (r.state)} { (r.state) } }
                                td class="actions" {
                                    @if r.state != "retrying" {
                                        (failure_form(frame, &base.to("/failures/requeue"), r, "Requeue", "primary"))
                                    }
                                    @if r.state != "dismissed" {
                                        (failure_form(frame, &base.to("/failures/dismiss"), r, "Dismiss", "secondary"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn failure_form(frame: &Frame<'_>, action: &str, r: &FailureView, label: &str, class: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            (frame.csrf_field())
            input type="hidden" name="org" value=(r.organisation_id);
            input type="hidden" name="key" value=(r.record_key);
            input type="hidden" name="direction" value=(direction_value(r.direction));
            button type="submit" class=(class) { (label) }
        }
    }
}

// ----- conflicts -----

pub(crate) async fn conflicts(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let frame = frame!(shared, base, admin);
    let org = query.org.as_deref();
    respond(
        view::conflicts(&shared, org).await.map(|conflicts| {
            frame.page(
                "Conflicts",
                "/conflicts",
                query.notice.as_deref(),
                conflicts_body(&frame, org, &conflicts),
            )
        }),
        &base,
    )
}

fn conflicts_body(frame: &Frame<'_>, org: Option<&str>, conflicts: &[ConflictView]) -> Markup {
    let now = frame.clock();
    html! {
        (frame.org_filter("/conflicts", org))
        p class="help" {
            "A shared field changed in the app and in Dynamics since the two last agreed, and its strategy is manual: "
            "neither side is written until you pick one. The next run writes the chosen value to the other side; "
            "tick \"write now\" to sync this mentor at once."
        }
        @if conflicts.is_empty() {
            p class="empty" { "No conflicts to resolve." }
        }
        @for c in conflicts {
            section class={"card conflict " (c.state)} id={"conflict-" (c.id)} {
                h2 {
                    (c.display_name.as_deref().unwrap_or(&c.field))
                    span class="muted" { " (" (c.field) @if let Some(column) = &c.column { " ↔ " (column) } ")" }
                }
                p {
                    "Member " strong { (c.member_number.as_deref().unwrap_or("—")) }
                    @if let Some(name) = &c.name { " · " (name) }
                    " · " (frame.org_name(&c.organisation_id))
                    " · found " (time(c.detected_at, now))
                }
                div class="sides" {
                    div class="side app" {
                        h3 { "In the app" }
                        p class="value" { (c.app_value) }
                        p class="muted" { "changed " (opt_time(c.app_changed_at, now)) }
                    }
                    div class="side dynamics" {
                        h3 { "In Dynamics" }
                        p class="value" { (c.dynamics_value) }
                        p class="muted" { "changed " (opt_time(c.dynamics_changed_at, now)) }
                    }
                }
                p class="muted" { "Last agreed value: " (c.shadow_value.as_deref().unwrap_or("(none)")) }
                @if c.state == "open" {
                    form method="post" action=(frame.base.to(&format!("/conflicts/{}/resolve", c.id))) class="resolve" {
                        (frame.csrf_field())
                        button type="submit" name="side" value="app" class="primary" { "Keep the app's value" }
                        button type="submit" name="side" value="dynamics" class="primary" { "Keep Dynamics' value" }
                        label { input type="checkbox" name="apply_now"; " write now" }
                    }
                } @else {
                    p class="resolved" {
                        "Resolved: keep "
                        (match c.resolution { Some(sync_store::Side::App) => "the app's value", _ => "Dynamics' value" })
                        @if let Some(by) = &c.resolved_by { " (by " (by) ")" }
                        ". The next run writes it."
                    }
                }
            }
        }
    }
}

// ----- configuration -----

pub(crate) async fn config(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
) -> Response {
    let frame = frame!(shared, base, admin);
    let data = view::config(&shared);
    frame.page("Configuration", "/config", None, config_body(&frame, &data))
}

fn config_body(frame: &Frame<'_>, data: &ConfigView) -> Markup {
    html! {
        p class="help" {
            "The settings in effect, as " code { "sync-worker config check" } " prints them. Secrets are never shown, "
            "only whether they are set. Change them in the configuration file and the environment, then restart."
        }
        section class="card" {
            h2 { "Schedule" }
            p { (data.schedule) "; next run " (time(data.next_run_at, frame.clock())) "." }
        }
        @for org in &data.organisations {
            section class="card" {
                h2 { (org.name) span class="muted" { " (" (org.id) ")" } }
                dl class="facts" {
                    dt { "Dynamics instance" } dd { code { (org.instance_url) } }
                    dt { "Tenant" } dd { code { (org.tenant_id) } }
                    dt { "Client id" } dd { code { (org.client_id) } }
                    dt { "Client secret" } dd { (org.client_secret) }
                    dt { "Client secret expires" }
                    dd { (org.client_secret_expires_on.map_or_else(|| "unknown".to_owned(), |d| d.to_string())) }
                    dt { "Time zone" } dd { (org.time_zone) }
                    dt { "Language" } dd { (org.language) }
                    dt { "Mapping" } dd { code { (org.mapping_source) } }
                    dt { "Dynamics privileges" }
                    dd {
                        a href={(frame.base.to("/config/privileges")) "?org=" (org.id)} {
                            "Check the application user's security role"
                        }
                        " (asks Dynamics now)"
                    }
                    @for (table, filter) in &org.filters {
                        dt { "Filter on " (table) } dd { code { (filter) } }
                    }
                }
                h3 { "Field mapping" }
                div class="scroll" {
                    table {
                        thead {
                            tr {
                                th { "Record" } th { "App field" } th { "Dataverse column" } th { "Display name" }
                                th { "Owner" } th { "Type" } th { "Conflicts" }
                            }
                        }
                        tbody {
                            @for row in &org.mapping {
                                tr {
                                    td { (row.record) " → " (row.table) }
                                    td { code { (row.field) } @if row.alternate_key { " (key)" } }
                                    td { code { (row.column) } }
                                    td { (row.display_name) }
                                    td { span class={"owner " (row.owner)} { (row.owner) } }
                                    td { (row.kind) }
                                    td { (row.conflict_strategy.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section class="card" {
            h2 { "All settings" }
            pre { (data.settings) }
        }
    }
}

// ----- privileges -----

pub(crate) async fn privileges(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let frame = frame!(shared, base, admin);
    respond(
        view::privileges(&shared, query.org.as_deref())
            .await
            .map(|views| frame.page("Dynamics privileges", "/config", None, privileges_body(&views))),
        &base,
    )
}

fn privileges_body(views: &[view::PrivilegesView]) -> Markup {
    html! {
        p class="help" {
            "The privileges the application user holds in Dynamics, read now, against what the sync needs with this "
            "configuration. A missing privilege makes runs fail; one it does not need should be removed from the "
            "security role. " code { "health-check --privileges" } " prints the same."
        }
        @for org in views {
            section class="card" {
                h2 { (org.name) span class="muted" { " (" (org.organisation) ")" } }
                @if let Some(error) = &org.error {
                    p class="error" { "Dynamics could not be asked: " (error) }
                }
                @if let Some(report) = &org.report {
                    p { "Application user " code { (report.user_id) } "." }
                    @if report.missing.is_empty() {
                        p { span class="status healthy" { "OK" } " It holds all " (report.needed) " privileges the sync needs, at Organization level." }
                    } @else {
                        h3 { "Missing (runs fail until HLF IT adds them)" }
                        ul {
                            @for finding in &report.missing {
                                li { span class="status unhealthy" { "Missing" } " " code { (finding.privilege) } ": " (finding.message) }
                            }
                        }
                    }
                    @if report.excess.is_empty() {
                        p { "Nothing more than it needs." }
                    } @else {
                        h3 { "More than the sync needs (HLF IT can remove them)" }
                        ul {
                            @for finding in &report.excess {
                                li { span class="status degraded" { "Not needed" } " " code { (finding.privilege) } ": " (finding.message) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn api_privileges(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<view::PrivilegesView>>> {
    Ok(Json(view::privileges(&shared, query.org.as_deref()).await?))
}

// ----- certification cache -----

pub(crate) async fn cache(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let frame = frame!(shared, base, admin);
    let org = query.org.as_deref();
    respond(
        view::cache(&shared, org).await.map(|caches| {
            frame.page(
                "Certification cache",
                "/cache",
                query.notice.as_deref(),
                cache_body(&frame, org, &caches),
            )
        }),
        &base,
    )
}

fn cache_body(frame: &Frame<'_>, org: Option<&str>, caches: &[CacheView]) -> Markup {
    let now = frame.clock();
    html! {
        (frame.org_filter("/cache", org))
        p class="help" {
            "The certification status the backend reads when Dynamics cannot be reached, with the time Dynamics last "
            "confirmed it. An entry older than the configured limit is stale: the backend says so to its users."
        }
        @for cache in caches {
            section class="card" {
                h2 { (frame.org_name(&cache.organisation_id)) }
                p {
                    (cache.total) " cached, "
                    strong class=[(cache.stale > 0).then_some("warn")] { (cache.stale) " stale" }
                    " (older than " (cache.stale_after_hours) " h)"
                    @if let Some(oldest) = cache.oldest_as_of { "; oldest confirmed " (time(oldest, now)) }
                    "."
                }
                @if !cache.entries.is_empty() {
                    div class="scroll" {
                        table {
                            thead {
                                tr {
                                    th { "Member number" } th { "Status" } th { "Expires" } th { "On public site" }
                                    th { "As of" } th { "Fresh" }
                                }
                            }
                            tbody {
                                @for e in &cache.entries {
                                    tr class=[e.stale.then_some("stale")] {
                                        td { (e.member_number.as_deref().unwrap_or("—")) }
                                        td { (e.status) }
                                        td { (e.expires_on.map(|d| d.to_string()).unwrap_or_default()) }
                                        td { (if e.show_on_public_site { "yes" } else { "no" }) }
                                        td { (time(e.as_of, now)) }
                                        td { @if e.stale { span class="state dead" { "stale" } } @else { "fresh" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ----- alerts -----

pub(crate) async fn alerts(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    Query(query): Query<ListQuery>,
) -> Response {
    let frame = frame!(shared, base, admin);
    let org = query.org.as_deref();
    respond(
        view::alerts(&shared, org).await.map(|alerts| {
            frame.page(
                "Alerts",
                "/alerts",
                query.notice.as_deref(),
                alerts_body(&frame, org, &alerts),
            )
        }),
        &base,
    )
}

fn alerts_body(frame: &Frame<'_>, org: Option<&str>, alerts: &[AlertView]) -> Markup {
    let now = frame.clock();
    html! {
        (frame.org_filter("/alerts", org))
        p class="help" {
            "An alert stays until its cause is gone. Acknowledging says someone is on it; the alert still counts in "
            "the organisation's status, as in health-check, until then."
        }
        @if alerts.is_empty() {
            p class="empty" { "No active alerts." }
        } @else {
            div class="scroll" {
                table {
                    thead {
                        tr {
                            th { "Organisation" } th { "Severity" } th { "Cause" } th { "What happened" }
                            th { "Raised" } th { "Last seen" } th { "Times" } th { "State" } th { "Action" }
                        }
                    }
                    tbody {
                        @for a in alerts {
                            tr class={"severity-" (severity(a))} {
                                td { (frame.org_name(&a.organisation_id)) }
                                td { (severity(a)) }
                                td { code { (a.cause) } }
                                td { (a.message) }
                                td { (time(a.raised_at, now)) }
                                td { (time(a.updated_at, now)) }
                                td class="num" { (a.occurrences) }
                                td { (a.state) }
                                td class="actions" {
                                    @if a.state == "open" {
                                        form method="post" action=(frame.base.to(&format!("/alerts/{}/acknowledge", a.id))) {
                                            (frame.csrf_field())
                                            input type="hidden" name="org" value=(a.organisation_id);
                                            button type="submit" class="secondary" { "Acknowledge" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ----- CSV export -----

pub(crate) async fn export(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
) -> Response {
    let frame = frame!(shared, base, admin);
    respond(
        view::export_offers(&shared)
            .await
            .map(|offers| frame.page("CSV export", "/export", None, export_body(&frame, &offers))),
        &base,
    )
}

fn export_body(frame: &Frame<'_>, offers: &[ExportOffer]) -> Markup {
    let action = frame.base.to("/export");
    html! {
        p class="help" {
            "When the sync cannot reach Dynamics, HLF staff can bring the certification status in by hand: download "
            "an organisation's export here and import it with the Dynamics Import Data wizard, which updates the "
            "contacts by member number. " code { "docs/csv-fallback.md" } " says step by step how to import the "
            "files, check the import job and switch back to the API path."
        }
        @for offer in offers {
            section class="card export" {
                h2 { (offer.name) }
                h3 { "Full export" }
                (export_forms(&action, &frame.csrf_field(), &offer.organisation_id, &offer.full))
                h3 { "Delta export" }
                (export_forms(&action, &frame.csrf_field(), &offer.organisation_id, &offer.delta))
            }
        }
    }
}

fn kind_value(kind: ExportKind) -> &'static str {
    match kind {
        ExportKind::Full => "full",
        ExportKind::Delta => "delta",
    }
}

fn rows_text(rows: usize) -> String {
    match rows {
        1 => "1 mentor".to_owned(),
        n => format!("{n} mentors"),
    }
}

/// What one export holds and a form (posting to `action`, carrying `csrf`) whose buttons download each file.
fn export_forms(action: &str, csrf: &Markup, org: &str, export: &Export) -> Markup {
    let kind = kind_value(export.kind);
    let part_button = |number: usize, file: &CsvFile, label: String| {
        html! {
            button type="submit" name="part" value=(number) class="primary" title=(file.name) { (label) }
        }
    };
    html! {
        p {
            (rows_text(export.rows()))
            @if export.kind == ExportKind::Delta {
                " whose values Dynamics has not confirmed through the API; "
                (rows_text(export.mentors_unchanged)) " unchanged"
            }
            @if export.files.len() > 1 {
                ", in " strong { (export.files.len()) " parts" }
                " (each file stays under the wizard's 8 MB limit; import them one after another)"
            }
            "."
            @if !export.problems.is_empty() {
                " " strong class="warn" { (rows_text(export.problems.len())) " cannot be imported" }
                ": the errors file says why."
            }
        }
        @if export.files.is_empty() && export.errors_file.is_none() {
            p class="empty" { "Nothing to import: Dynamics has every mentor's current values." }
        } @else {
            form method="post" action=(action) class="download" {
                (csrf)
                input type="hidden" name="org" value=(org);
                input type="hidden" name="kind" value=(kind);
                @if let [file] = export.files.as_slice() {
                    (part_button(1, file, format!("Download the {kind} export (CSV)")))
                } @else {
                    @for (i, file) in export.files.iter().enumerate() {
                        (part_button(i + 1, file, format!("Part {} of {} ({})", i + 1, export.files.len(), rows_text(file.rows))))
                    }
                }
                @if let Some(errors) = &export.errors_file {
                    button type="submit" name="part" value="errors" class="secondary" title=(errors.name) {
                        "Download the errors file"
                    }
                }
            }
        }
    }
}

// ----- metrics -----

/// `GET /metrics`: the health monitor's Prometheus text, behind the admin credential like every page.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Result<Response> {
    let text = render_metrics(&shared.monitor, &shared.config.organisations).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

// ----- JSON API -----

pub(crate) async fn api_health(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<OrganisationHealth>>> {
    Ok(Json(view::health(&shared, query.org.as_deref()).await?))
}

pub(crate) async fn api_session(State(shared): State<Arc<Shared>>, Extension(admin): Extension<Admin>) -> Response {
    Json(serde_json::json!({
        "admin": admin.name,
        "csrf_token": shared.csrf.token(shared.clock.now()),
        "csrf_header": csrf::HEADER,
    }))
    .into_response()
}

pub(crate) async fn api_overview(State(shared): State<Arc<Shared>>) -> Result<Json<Overview>> {
    Ok(Json(view::overview(&shared).await?))
}

pub(crate) async fn api_runs(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<RunView>>> {
    Ok(Json(view::runs(&shared, query.org.as_deref()).await?))
}

pub(crate) async fn api_failures(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<FailureView>>> {
    Ok(Json(view::failures(&shared, query.org.as_deref()).await?))
}

pub(crate) async fn api_conflicts(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ConflictView>>> {
    Ok(Json(view::conflicts(&shared, query.org.as_deref()).await?))
}

pub(crate) async fn api_config(State(shared): State<Arc<Shared>>) -> Json<ConfigView> {
    Json(view::config(&shared))
}

pub(crate) async fn api_cache(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<CacheView>>> {
    Ok(Json(view::cache(&shared, query.org.as_deref()).await?))
}

pub(crate) async fn api_alerts(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<AlertView>>> {
    Ok(Json(view::alerts(&shared, query.org.as_deref()).await?))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn times_are_shown_in_the_organisation_s_zone_with_its_abbreviation_across_daylight_saving() {
        let oslo = chrono_tz::Europe::Oslo;
        let winter = Utc.with_ymd_and_hms(2026, 12, 2, 1, 0, 0).unwrap();
        let summer = Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap();
        assert_eq!(when(winter, oslo), "2026-12-02 02:00 CET");
        assert_eq!(when(summer, oslo), "2026-06-02 02:00 CEST");
        // The night the clocks go back: 02:30 happens twice, and the abbreviation tells them apart.
        let first = Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap();
        let second = Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap();
        assert_eq!(when(first, oslo), "2026-10-25 02:30 CEST");
        assert_eq!(when(second, oslo), "2026-10-25 02:30 CET");
        let now = Now {
            at: winter + chrono::Duration::hours(3),
            tz: oslo,
        };
        let shown = time(winter, now).into_string();
        assert!(shown.contains("datetime=\"2026-12-02T01:00:00+00:00\""), "{shown}");
        assert!(
            shown.contains("2026-12-02 02:00 CET") && shown.contains("(3 h ago)"),
            "{shown}"
        );
    }

    fn file(name: &str, rows: usize) -> CsvFile {
        CsvFile {
            name: name.to_owned(),
            contents: Vec::new(),
            rows,
        }
    }

    fn export(kind: ExportKind, files: Vec<CsvFile>, errors_file: Option<CsvFile>) -> Export {
        Export {
            kind,
            organisation_id: "hlf".into(),
            generated_at: Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap(),
            problems: errors_file
                .iter()
                .map(|_| csv_fallback::RowProblem {
                    mentor_id: "m".into(),
                    member_number: None,
                    field: "member_number".into(),
                    reason: "missing".into(),
                })
                .collect(),
            files,
            errors_file,
            mentors_considered: 0,
            mentors_unchanged: 0,
        }
    }

    fn render(export: &Export) -> String {
        export_forms(
            "/admin/export",
            &html! { input type="hidden" name="csrf" value="t"; },
            "hlf",
            export,
        )
        .into_string()
    }

    #[test]
    fn an_export_split_into_parts_says_how_many_and_offers_each() {
        let page = render(&export(
            ExportKind::Full,
            vec![
                file("hlf-mentors-full-1.csv", 70_000),
                file("hlf-mentors-full-2.csv", 12),
            ],
            Some(file("hlf-mentors-full-errors.csv", 1)),
        ));
        assert!(page.contains("<strong>2 parts</strong>"), "{page}");
        assert!(
            page.contains(r#"name="part" value="1""#) && page.contains(r#"name="part" value="2""#),
            "{page}"
        );
        assert!(page.contains("Part 2 of 2 (12 mentors)"), "{page}");
        assert!(page.contains(r#"name="part" value="errors""#), "{page}");
        assert!(page.contains(r#"action="/admin/export""#) && page.contains(r#"name="kind" value="full""#));
        assert!(page.contains("1 mentor cannot be imported</strong>"), "{page}");
    }

    #[test]
    fn a_single_file_is_one_button_and_an_empty_delta_offers_nothing() {
        let page = render(&export(ExportKind::Full, vec![file("f-1.csv", 3)], None));
        assert!(page.contains("Download the full export (CSV)"), "{page}");
        assert!(!page.contains("parts") && !page.contains("errors"), "{page}");
        let page = render(&export(ExportKind::Delta, Vec::new(), None));
        assert!(page.contains("Nothing to import"), "{page}");
        assert!(!page.contains("<form"), "{page}");
    }
}
