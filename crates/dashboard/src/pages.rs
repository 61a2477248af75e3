//! The HTML pages (maud escapes every value) and the JSON API handlers that serve the same views. Every text a page
//! shows comes from the language catalogues through [`Lang`]; the JSON keeps its English field values and UTC
//! RFC 3339 times.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri, Query, State};
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use csv_fallback::{CsvFile, Export, ExportKind};
use field_mapping::{AppValue, FieldKind};
use health_monitor::{Finding, METRICS_CONTENT_TYPE, OrganisationHealth, Status, render_metrics};
use integration_config::Schedule;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sync_store::{Direction, RunKind, RunStatus};

use crate::Shared;
use crate::auth::Admin;
use crate::chart::runs_chart;
use crate::csrf;
use crate::error::{Error, Result};
use crate::i18n::{LANGS, Lang};
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

/// What every page handler needs: the state, who is signed in, where the dashboard is mounted, the reader's
/// language and the address of this page (for the language switch to come back to).
pub(crate) struct Page {
    shared: Arc<Shared>,
    admin: Admin,
    base: Base,
    lang: Lang,
    here: String,
}

impl FromRequestParts<Arc<Shared>> for Page {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Self::Rejection> {
        let base = Base::from_request_parts(parts, shared).await?;
        let lang = Lang::from_request_parts(parts, shared).await?;
        let admin = parts
            .extensions
            .get::<Admin>()
            .cloned()
            .unwrap_or_else(|| Admin { name: String::new() });
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.clone(), |u| u.0.clone());
        let here = uri
            .path_and_query()
            .map_or_else(|| base.to("/"), |p| p.as_str().to_owned());
        Ok(Page {
            shared: shared.clone(),
            admin,
            base,
            lang,
            here,
        })
    }
}

impl Page {
    fn frame(&self) -> Frame<'_> {
        Frame {
            shared: &self.shared,
            base: &self.base,
            admin: &self.admin,
            lang: self.lang,
            here: &self.here,
            now: self.shared.clock.now(),
            tz: self
                .shared
                .config
                .organisations
                .first()
                .map_or(chrono_tz::UTC, |o| o.time_zone),
        }
    }

    fn respond(&self, result: Result<Response>) -> Response {
        result.unwrap_or_else(|error| error_response(&error, Some(&self.base), self.lang))
    }
}

/// Everything the frame of a page needs.
struct Frame<'a> {
    shared: &'a Shared,
    base: &'a Base,
    admin: &'a Admin,
    lang: Lang,
    here: &'a str,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
}

/// The present moment, the zone times are shown in (the first organisation's, Europe/Oslo for HLF) and the language.
#[derive(Debug, Clone, Copy)]
struct Now {
    at: DateTime<Utc>,
    tz: chrono_tz::Tz,
    lang: Lang,
}

const NAV: [(&str, &str); 8] = [
    ("/", "nav.overview"),
    ("/runs", "nav.runs"),
    ("/failures", "nav.failures"),
    ("/conflicts", "nav.conflicts"),
    ("/alerts", "nav.alerts"),
    ("/cache", "nav.cache"),
    ("/export", "nav.export"),
    ("/config", "nav.config"),
];

fn notice_text(lang: Lang, code: &str) -> Option<&'static str> {
    Some(match code {
        "requeued" => lang.t("notice.requeued"),
        "dismissed" => lang.t("notice.dismissed"),
        "resolved" => lang.t("notice.resolved"),
        "resolved-applied" => lang.t("notice.resolved_applied"),
        "resolved-apply-failed" => lang.t("notice.resolved_apply_failed"),
        "acknowledged" => lang.t("notice.acknowledged"),
        _ => return None,
    })
}

/// The exact local time with its zone, how long ago (or ahead) beside it; the machine-readable instant in UTC.
fn time(at: DateTime<Utc>, now: Now) -> Markup {
    let exact = now.lang.when(at, now.tz);
    html! {
        time datetime=(at.to_rfc3339()) title=(exact) { (exact) }
        span class="muted" { " (" (now.lang.relative(at, now.at)) ")" }
    }
}

fn opt_time(at: Option<DateTime<Utc>>, now: Now) -> Markup {
    match at {
        Some(at) => time(at, now),
        None => html! { span class="muted" { (now.lang.t("time.never")) } },
    }
}

/// A text that is only in English (an error from Dynamics, a stored alert message), marked so for a screen reader
/// on a bokmål page.
fn english(lang: Lang, text: &str) -> Markup {
    html! {
        @if lang == Lang::En { (text) } @else { span lang="en" { (text) } }
    }
}

/// The CSS class of a run status; the words come from the catalogue.
fn run_status_class(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Partial => "partial",
        RunStatus::Failed => "failed",
    }
}

fn run_status(lang: Lang, status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => lang.t("status.running"),
        RunStatus::Succeeded => lang.t("status.succeeded"),
        RunStatus::Partial => lang.t("status.partial"),
        RunStatus::Failed => lang.t("status.failed"),
    }
}

/// A run status as a labelled badge: the word carries the meaning, the colour only repeats it.
fn run_badge(lang: Lang, status: RunStatus) -> Markup {
    html! { span class={"status " (run_status_class(status))} { (run_status(lang, status)) } }
}

fn direction(lang: Lang, direction: Direction) -> &'static str {
    match direction {
        Direction::Pull => lang.t("direction.pull"),
        Direction::Push => lang.t("direction.push"),
    }
}

fn direction_value(direction: Direction) -> &'static str {
    match direction {
        Direction::Pull => "pull",
        Direction::Push => "push",
    }
}

fn state_text(lang: Lang, state: &str) -> &'static str {
    match state {
        "retrying" => lang.t("state.retrying"),
        "dead" => lang.t("state.dead"),
        "dismissed" => lang.t("state.dismissed"),
        "open" => lang.t("state.open"),
        "resolved" => lang.t("state.resolved"),
        "acknowledged" => lang.t("state.acknowledged"),
        _ => lang.t("state.unknown"),
    }
}

impl Frame<'_> {
    fn clock(&self) -> Now {
        Now {
            at: self.now,
            tz: self.tz,
            lang: self.lang,
        }
    }

    fn page(&self, title: &str, current: &str, notice: Option<&str>, body: Markup) -> Response {
        let (base, lang) = (self.base, self.lang);
        let page = html! {
            (DOCTYPE)
            html lang=(lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="robots" content="noindex";
                    title { (lang.f("frame.title", &[("page", &title)])) }
                    link rel="stylesheet" href=(base.to("/assets/style.css"));
                    // No icon: without this the browser asks for /favicon.ico on every page.
                    link rel="icon" href="data:,";
                }
                body {
                    a class="skip" href="#main" { (lang.t("frame.skip")) }
                    header class="top" {
                        a class="brand" href=(base.to("/")) { (lang.t("frame.brand")) }
                        nav aria-label=(lang.t("nav.label")) {
                            @for (path, key) in NAV {
                                @if path == current {
                                    a href=(base.to(path)) aria-current="page" { (lang.t(key)) }
                                } @else {
                                    a href=(base.to(path)) { (lang.t(key)) }
                                }
                            }
                        }
                        (self.language_switch())
                        span class="who" { (lang.f("frame.signed_in", &[("name", &self.admin.name)])) }
                    }
                    main id="main" {
                        h1 { (title) }
                        @if let Some(text) = notice.and_then(|code| notice_text(lang, code)) {
                            p class="notice" role="status" { (text) }
                        }
                        (body)
                    }
                    footer {
                        (lang.f("frame.footer", &[("at", &lang.when(self.now, self.tz)), ("zone", &self.tz.name())]))
                    }
                }
            }
        };
        Html(page.into_string()).into_response()
    }

    /// Links to this page in each language: plain links (no script), which set the cookie that remembers the choice.
    fn language_switch(&self) -> Markup {
        let back = form_encode(self.here);
        html! {
            nav class="lang" aria-label=(self.lang.t("lang.label")) {
                @for lang in LANGS {
                    @let href = format!("{}?back={back}", self.base.to(&format!("/lang/{}", lang.code())));
                    @if lang == self.lang {
                        a href=(href) hreflang=(lang.code()) lang=(lang.code()) aria-current="true" { (lang.t("lang.name")) }
                    } @else {
                        a href=(href) hreflang=(lang.code()) lang=(lang.code()) { (lang.t("lang.name")) }
                    }
                }
            }
        }
    }

    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(csrf::FIELD) value=(self.shared.csrf.token(self.now)); }
    }

    /// Links to show all organisations or one.
    fn org_filter(&self, path: &str, selected: Option<&str>) -> Markup {
        let organisations = &self.shared.config.organisations;
        let all = self.lang.t("filter.all");
        html! {
            @if organisations.len() > 1 {
                p class="filter" {
                    (self.lang.t("filter.organisation")) " "
                    @if selected.is_none() { strong { (all) } } @else { a href=(self.base.to(path)) { (all) } }
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

/// A path as a query value: everything but unreserved characters and `/` percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An error as a page in `lang`: what happened and what to do in the reader's language, the details (which name
/// records and settings, never a secret) as the log has them. `base` is known in handlers; the CSRF check answers
/// before one is extracted.
pub(crate) fn error_response(error: &Error, base: Option<&Base>, lang: Lang) -> Response {
    let status = error.status();
    if status.is_server_error() {
        tracing::error!(error = %error.public_message(), "dashboard request failed");
    }
    let (heading, lead) = match status.as_u16() {
        400 => (lang.t("error.400.heading"), lang.t("error.400.lead")),
        403 => (lang.t("error.403.heading"), lang.t("error.403.lead")),
        404 => (lang.t("error.404.heading"), lang.t("error.404.lead")),
        409 => (lang.t("error.409.heading"), lang.t("error.409.lead")),
        _ => (lang.t("error.500.heading"), lang.t("error.500.lead")),
    };
    let page = html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                title { (lang.f("frame.title", &[("page", &heading)])) }
                @if let Some(base) = base { link rel="stylesheet" href=(base.to("/assets/style.css")); }
            }
            body {
                main {
                    h1 { (heading) }
                    p { (lead) }
                    p class="error" { (lang.t("error.details")) " " (english(lang, &error.public_message())) }
                    @if let Some(base) = base { p { a href=(base.to("/")) { (lang.t("error.back")) } } }
                }
            }
        }
    };
    (status, Html(page.into_string())).into_response()
}

// ----- overview -----

pub(crate) async fn overview(page: Page, Query(query): Query<ListQuery>) -> Response {
    let frame = page.frame();
    let title = page.lang.t("nav.overview");
    page.respond(
        view::overview(&page.shared)
            .await
            .map(|data| frame.page(title, "/", query.notice.as_deref(), overview_body(&frame, &data))),
    )
}

fn status_class(status: Status) -> &'static str {
    match status {
        Status::Healthy => "healthy",
        Status::Degraded => "degraded",
        Status::Unhealthy => "unhealthy",
    }
}

fn status_name(lang: Lang, status: Status) -> &'static str {
    match status {
        Status::Healthy => lang.t("health.healthy"),
        Status::Degraded => lang.t("health.degraded"),
        Status::Unhealthy => lang.t("health.unhealthy"),
    }
}

/// One of the health monitor's findings in the reader's language; what Dynamics or Azure AD said stays as it was
/// said.
fn finding(now: Now, finding: &Finding) -> Markup {
    let lang = now.lang;
    match finding {
        Finding::AuthenticationFailed { message } => {
            html! { (lang.t("finding.authentication")) " " (english(lang, message)) }
        }
        Finding::Unreachable { error } => html! { (lang.t("finding.unreachable")) " " (english(lang, error)) },
        Finding::RunsFailed { runs } => html! { (lang.n("finding.runs_failed", u64::from(*runs), &[])) },
        Finding::LastRunFailed => html! { (lang.t("finding.last_run_failed")) },
        Finding::NeverSynced => html! { (lang.t("finding.never_synced")) },
        Finding::NotFresh { since, limit_seconds } => html! {
            (lang.f("finding.not_fresh", &[("since", &lang.when(*since, now.tz)), ("limit", &lang.span(*limit_seconds))]))
        },
        Finding::Alert { cause, message } => html! {
            (lang.t("finding.alert")) " " code { (cause) } ": " (english(lang, message))
        },
        Finding::PostingsFailed { error } => html! {
            (lang.t("finding.postings_failed"))
            @if let Some(error) = error { " " (english(lang, error)) }
        },
        Finding::CacheStale {
            age_seconds,
            limit_seconds,
        } => html! {
            (lang.f("finding.cache_stale", &[("age", &lang.span(*age_seconds)), ("limit", &lang.span(*limit_seconds))]))
        },
        Finding::Mismatches { mentors } => html! { (lang.n("finding.mismatches", *mentors, &[])) },
        Finding::DeadRecords { records } => html! { (lang.n("finding.dead_records", *records, &[])) },
        // A finding this dashboard does not know yet: the monitor's English text.
        other => english(lang, &other.to_string()),
    }
}

fn overview_body(frame: &Frame<'_>, data: &Overview) -> Markup {
    let (base, lang) = (frame.base, frame.lang);
    let now = frame.clock();
    html! {
        @for org in &data.organisations {
            section class="card org" aria-labelledby={"org-" (org.id)} {
                h2 id={"org-" (org.id)} {
                    (org.name) " "
                    span class={"badge " (status_class(org.status))} { (status_name(lang, org.status)) }
                }
                @if org.findings.is_empty() {
                    p class="reason" { (lang.t("overview.all_well")) }
                } @else {
                    // Worst first: the first finding decided the status.
                    ul class="reasons" {
                        @for f in &org.findings { li class="reason" { (finding(now, f)) } }
                    }
                }
                dl class="facts" {
                    dt { (lang.t("overview.last_success")) }
                    dd {
                        (direction(lang, Direction::Pull)) " " (opt_time(org.last_success.pull, now)) br;
                        (direction(lang, Direction::Push)) " " (opt_time(org.last_success.push, now))
                    }
                    dt { (lang.t("overview.last_run")) }
                    dd {
                        @if let Some(run) = &org.last_run {
                            (run_badge(lang, run.status))
                            " · " (time(run.started_at, now)) " · "
                            (lang.f("overview.run_counts", &[
                                ("written", &(run.metrics.pull.written + run.metrics.push.written)),
                                ("failed", &(run.metrics.pull.failed + run.metrics.push.failed)),
                            ]))
                            " · " (lang.duration(run.metrics.duration_ms))
                            @if let Some(error) = &run.error { br; span class="error" { (english(lang, error)) } }
                        } @else {
                            span class="muted" { (lang.t("overview.no_run")) }
                        }
                    }
                    dt { (lang.t("overview.open_alerts")) }
                    dd { a href={(base.to("/alerts")) "?org=" (org.id)} { (org.alerts.len()) } }
                    dt { (lang.t("overview.failed_records")) }
                    dd {
                        a href={(base.to("/failures")) "?org=" (org.id)} {
                            (lang.f("overview.failed_counts", &[("dead", &org.failed_dead), ("retrying", &org.failed_retrying)]))
                        }
                    }
                    dt { (lang.t("overview.conflicts")) }
                    dd { a href={(base.to("/conflicts")) "?org=" (org.id)} { (org.conflicts_open) } }
                    dt { (lang.t("overview.stale")) }
                    dd { a href={(base.to("/cache")) "?org=" (org.id)} { (org.cache_stale) } }
                    @if org.mismatches > 0 {
                        dt { (lang.t("overview.mismatches")) }
                        dd class="warn" { (lang.n("overview.mismatch_count", org.mismatches, &[])) }
                    }
                    @if org.not_in_dynamics > 0 {
                        dt { (lang.t("overview.not_in_dynamics")) }
                        dd class="warn" {
                            (lang.rich("overview.not_in_dynamics_count", &[
                                ("count", html! { (lang.n("overview.active_mentors", org.not_in_dynamics, &[])) }),
                                ("link", html! {
                                    a href={(base.to("/failures")) "?org=" (org.id)} { (lang.t("overview.failures_say_why")) }
                                }),
                            ]))
                        }
                    }
                    @if let Some(postings) = &org.postings {
                        @let m = &postings.metrics;
                        dt { (lang.t("overview.postings")) }
                        dd {
                            (run_badge(lang, postings.status))
                            " · " (time(postings.started_at, now)) " · "
                            (lang.f("overview.posting_counts", &[("exported", &m.exported), ("failed", &m.failed), ("held", &m.held)]))
                            @if let Some(error) = &postings.error { br; span class="error" { (english(lang, error)) } }
                        }
                        @if let Some(r) = &postings.reconciled {
                            dt { (lang.t("overview.reconciled")) }
                            @if r.unreconciled() == 0 {
                                dd { (lang.f("overview.reconciled_all", &[("checked", &r.checked)])) }
                            } @else {
                                dd class="warn" {
                                    (lang.f("overview.reconciled_some", &[
                                        ("checked", &r.checked),
                                        ("missing", &r.missing),
                                        ("differing", &r.differing),
                                        ("ids", &format!(
                                            "{}{}",
                                            r.sample.join(", "),
                                            if r.unreconciled() > r.sample.len() as u64 { " …" } else { "" }
                                        )),
                                    ]))
                                }
                            }
                        }
                    }
                }
                h3 {
                    @if org.chart.is_empty() { (lang.t("nav.runs")) }
                    @else { (lang.n("overview.chart_heading", org.chart.len() as u64, &[])) }
                }
                (runs_chart(&org.chart, now.tz, lang))
                // The chart's figures as text, for a screen reader and for anyone who wants the numbers.
                @if !org.chart.is_empty() {
                    details class="chart-figures" {
                        summary { (lang.t("chart.figures")) }
                        table {
                            thead {
                                tr {
                                    th scope="col" { (lang.t("chart.started")) }
                                    th scope="col" { (lang.t("chart.status")) }
                                    th scope="col" { (lang.t("chart.synced")) }
                                    th scope="col" { (lang.t("chart.failed")) }
                                }
                            }
                            tbody {
                                @for point in org.chart.iter().rev() {
                                    tr {
                                        td { (time(point.started_at, now)) }
                                        td { (run_badge(lang, point.status)) }
                                        td class="num" { (point.synced) }
                                        td class="num" { (point.failed) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if !org.alerts.is_empty() {
                    h3 { (lang.t("nav.alerts")) }
                    ul class="alerts" {
                        @for alert in &org.alerts {
                            li class={"severity-" (severity_class(alert))} {
                                strong { (severity(lang, alert)) } " " (english(lang, &alert.message))
                                span class="muted" {
                                    " · " (lang.t("alerts.since")) " " (time(alert.raised_at, now))
                                    " · " (state_text(lang, alert.state))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn severity_class(alert: &AlertView) -> &'static str {
    match alert.severity {
        sync_store::Severity::Warning => "warning",
        sync_store::Severity::Critical => "critical",
    }
}

fn severity(lang: Lang, alert: &AlertView) -> &'static str {
    match alert.severity {
        sync_store::Severity::Warning => lang.t("severity.warning"),
        sync_store::Severity::Critical => lang.t("severity.critical"),
    }
}

// ----- runs -----

pub(crate) async fn runs(page: Page, Query(query): Query<ListQuery>) -> Response {
    let frame = page.frame();
    let org = query.org.as_deref();
    let title = page.lang.t("nav.runs");
    page.respond(
        view::runs(&page.shared, org)
            .await
            .map(|runs| frame.page(title, "/runs", query.notice.as_deref(), runs_body(&frame, org, &runs))),
    )
}

fn run_kind(lang: Lang, kind: RunKind) -> &'static str {
    match kind {
        RunKind::Sync => lang.t("runs.kind.sync"),
        RunKind::Reconcile => lang.t("runs.kind.reconcile"),
        RunKind::Postings => lang.t("runs.kind.postings"),
    }
}

fn runs_body(frame: &Frame<'_>, org: Option<&str>, runs: &[RunView]) -> Markup {
    let (now, lang) = (frame.clock(), frame.lang);
    let counts = lang.t("runs.counts");
    html! {
        (frame.org_filter("/runs", org))
        @if runs.is_empty() {
            p class="empty" { (lang.t("runs.none")) }
        } @else {
            div class="scroll" tabindex="0" role="region" aria-label=(lang.t("table.scroll")) {
                table {
                    thead {
                        tr {
                            th scope="col" { (lang.t("runs.started")) }
                            th scope="col" { (lang.t("col.organisation")) }
                            th scope="col" { (lang.t("runs.col.kind")) }
                            th scope="col" { (lang.t("runs.status")) }
                            th scope="col" { (lang.t("runs.took")) }
                            th scope="col" title=(counts) { (direction(lang, Direction::Pull)) }
                            th scope="col" title=(counts) { (direction(lang, Direction::Push)) }
                            th scope="col" { (lang.t("runs.requests")) }
                            th scope="col" { (lang.t("runs.throttled")) }
                            th scope="col" { (lang.t("runs.retried")) }
                            th scope="col" { (lang.t("runs.waited")) }
                            th scope="col" { (lang.t("runs.error")) }
                        }
                    }
                    tbody {
                        @for run in runs {
                            tr {
                                td { (time(run.started_at, now)) }
                                td { (frame.org_name(&run.organisation_id)) }
                                td { (run_kind(lang, run.kind)) }
                                td { (run_badge(lang, run.status)) }
                                td class="num" { (lang.duration(run.metrics.duration_ms)) }
                                @if let Some(p) = &run.metrics.postings {
                                    td class="num" {
                                        (lang.f("runs.postings_checked", &[("checked", &p.checked), ("unreconciled", &p.unreconciled())]))
                                    }
                                    td class="num" {
                                        (lang.f("runs.postings_exported", &[("exported", &p.exported), ("failed", &p.failed)]))
                                    }
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
                                td class="num" { (lang.duration(run.metrics.waited_ms)) }
                                td class="error" { @if let Some(error) = &run.error { (english(lang, error)) } }
                            }
                        }
                    }
                }
            }
            p class="muted" { (lang.f("runs.counts_help", &[("counts", &counts)])) }
        }
    }
}

// ----- failed records -----

pub(crate) async fn failures(page: Page, Query(query): Query<ListQuery>) -> Response {
    let frame = page.frame();
    let org = query.org.as_deref();
    let title = page.lang.t("nav.failures");
    page.respond(view::failures(&page.shared, org).await.map(|records| {
        frame.page(
            title,
            "/failures",
            query.notice.as_deref(),
            failures_body(&frame, org, &records),
        )
    }))
}

fn failures_body(frame: &Frame<'_>, org: Option<&str>, records: &[FailureView]) -> Markup {
    let (now, lang, base) = (frame.clock(), frame.lang, frame.base);
    html! {
        (frame.org_filter("/failures", org))
        p class="help" {
            (lang.n("failures.help", u64::from(frame.shared.config.retry.record_max_attempts), &[]))
        }
        @if records.is_empty() {
            p class="empty" { (lang.t("failures.none")) }
        } @else {
            div class="scroll" tabindex="0" role="region" aria-label=(lang.t("table.scroll")) {
                table {
                    thead {
                        tr {
                            th scope="col" { (lang.t("col.organisation")) }
                            th scope="col" { (lang.t("col.member_number")) }
                            th scope="col" { (lang.t("col.name")) }
                            th scope="col" { (lang.t("failures.direction")) }
                            th scope="col" { (lang.t("failures.reason")) }
                            th scope="col" { (lang.t("failures.attempts")) }
                            th scope="col" { (lang.t("failures.first")) }
                            th scope="col" { (lang.t("failures.last")) }
                            th scope="col" { (lang.t("col.state")) }
                            th scope="col" { (lang.t("col.actions")) }
                        }
                    }
                    tbody {
                        @for r in records {
                            tr class={"failure " (r.state)} {
                                td { (frame.org_name(&r.organisation_id)) }
                                td { (r.member_number.as_deref().unwrap_or("—")) }
                                td { (r.name.as_deref().unwrap_or("—")) }
                                td { (direction(lang, r.direction)) }
                                td class="error" { (english(lang, &r.error)) }
                                td class="num" { (lang.f("failures.attempts_of", &[("attempts", &r.attempts), ("max", &r.max_attempts)])) }
                                td { (time(r.first_failed_at, now)) }
                                td { (time(r.last_failed_at, now)) }
                                td { span class={"state " (r.state)} { (state_text(lang, r.state)) } }
                                td class="actions" {
                                    @if r.state != "retrying" {
                                        (failure_form(frame, &base.to("/failures/requeue"), r, lang.t("failures.requeue"), "primary"))
                                    }
                                    @if r.state != "dismissed" {
                                        (failure_form(frame, &base.to("/failures/dismiss"), r, lang.t("failures.dismiss"), "secondary"))
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

/// A requeue or dismiss button. Its accessible name says which record it acts on, so a screen reader tabbing
/// through a long table hears "Requeue member 10234", not "Requeue" thirty times.
fn failure_form(frame: &Frame<'_>, action: &str, r: &FailureView, label: &str, class: &str) -> Markup {
    let record = r.member_number.as_deref().unwrap_or(&r.record_key);
    let name = frame
        .lang
        .f("failures.action_label", &[("action", &label), ("record", &record)]);
    html! {
        form method="post" action=(action) {
            (frame.csrf_field())
            input type="hidden" name="org" value=(r.organisation_id);
            input type="hidden" name="key" value=(r.record_key);
            input type="hidden" name="direction" value=(direction_value(r.direction));
            button type="submit" class=(class) aria-label=(name) { (label) }
        }
    }
}

// ----- conflicts -----

pub(crate) async fn conflicts(page: Page, Query(query): Query<ListQuery>) -> Response {
    let frame = page.frame();
    let org = query.org.as_deref();
    let title = page.lang.t("nav.conflicts");
    page.respond(view::conflicts(&page.shared, org).await.map(|conflicts| {
        frame.page(
            title,
            "/conflicts",
            query.notice.as_deref(),
            conflicts_body(&frame, org, &conflicts),
        )
    }))
}

/// A value of a field as people read it: dates and times in the language and zone, yes/no in words.
fn value(now: Now, value: &AppValue) -> String {
    let lang = now.lang;
    match value {
        AppValue::Null => lang.t("value.empty").to_owned(),
        AppValue::Bool(true) => lang.t("value.yes").to_owned(),
        AppValue::Bool(false) => lang.t("value.no").to_owned(),
        AppValue::Date(date) => lang.date(*date),
        AppValue::DateTime(at) => lang.when(*at, now.tz),
        other => view::value_text(other),
    }
}

fn conflicts_body(frame: &Frame<'_>, org: Option<&str>, conflicts: &[ConflictView]) -> Markup {
    let (now, lang) = (frame.clock(), frame.lang);
    html! {
        (frame.org_filter("/conflicts", org))
        p class="help" { (lang.t("conflicts.help")) }
        @if conflicts.is_empty() {
            p class="empty" { (lang.t("conflicts.none")) }
        }
        @for c in conflicts {
            section class={"card conflict " (c.state)} id={"conflict-" (c.id)} aria-labelledby={"conflict-" (c.id) "-title"} {
                h2 id={"conflict-" (c.id) "-title"} {
                    (c.display_name.as_deref().unwrap_or(&c.field))
                    span class="muted" { " (" (c.field) @if let Some(column) = &c.column { " ↔ " (column) } ")" }
                }
                p {
                    (lang.t("conflicts.member")) " " strong { (c.member_number.as_deref().unwrap_or("—")) }
                    @if let Some(name) = &c.name { " · " (name) }
                    " · " (frame.org_name(&c.organisation_id))
                    " · " (lang.t("conflicts.found")) " " (time(c.detected_at, now))
                }
                div class="sides" {
                    div class="side app" {
                        h3 { (lang.t("conflicts.in_app")) }
                        p class="value" { (value(now, &c.values.app)) }
                        p class="muted" { (lang.t("conflicts.changed")) " " (opt_time(c.app_changed_at, now)) }
                    }
                    div class="side dynamics" {
                        h3 { (lang.t("conflicts.in_dynamics")) }
                        p class="value" { (value(now, &c.values.dynamics)) }
                        p class="muted" { (lang.t("conflicts.changed")) " " (opt_time(c.dynamics_changed_at, now)) }
                    }
                }
                p class="muted" {
                    (lang.t("conflicts.last_agreed")) " "
                    (c.values.shadow.as_ref().map_or_else(|| lang.t("conflicts.no_agreed").to_owned(), |v| value(now, v)))
                }
                @if c.state == "open" {
                    form method="post" action=(frame.base.to(&format!("/conflicts/{}/resolve", c.id))) class="resolve" {
                        (frame.csrf_field())
                        button type="submit" name="side" value="app" class="primary" { (lang.t("conflicts.keep_app")) }
                        button type="submit" name="side" value="dynamics" class="primary" { (lang.t("conflicts.keep_dynamics")) }
                        label { input type="checkbox" name="apply_now"; " " (lang.t("conflicts.write_now")) }
                    }
                } @else {
                    p class="resolved" {
                        (match c.resolution {
                            Some(sync_store::Side::App) => lang.t("conflicts.resolved_app"),
                            _ => lang.t("conflicts.resolved_dynamics"),
                        })
                        @if let Some(by) = &c.resolved_by { " " (lang.f("conflicts.resolved_by", &[("name", by)])) }
                        ". " (lang.t("conflicts.next_run_writes"))
                    }
                }
            }
        }
    }
}

// ----- configuration -----

pub(crate) async fn config(page: Page) -> Response {
    let frame = page.frame();
    let data = view::config(&page.shared);
    frame.page(page.lang.t("nav.config"), "/config", None, config_body(&frame, &data))
}

fn schedule_text(lang: Lang, schedule: &Schedule) -> String {
    match schedule {
        Schedule::Nightly { at, time_zone } => lang.f(
            "config.schedule_nightly",
            &[("time", &at.format("%H:%M")), ("zone", &time_zone.name())],
        ),
        Schedule::Every(every) => {
            let minutes = every.as_secs() / 60;
            if minutes > 0 && every.as_secs() % 60 == 0 {
                lang.n("config.schedule_every_minutes", minutes, &[])
            } else {
                lang.n("config.schedule_every_seconds", every.as_secs(), &[])
            }
        }
    }
}

fn kind_text(lang: Lang, kind: &FieldKind) -> String {
    match kind {
        FieldKind::String { max_length } => lang.f("kind.text", &[("max", max_length)]),
        FieldKind::Choice { options } => lang.f(
            "kind.choice",
            &[(
                "options",
                &options.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
            )],
        ),
        FieldKind::Lookup { target_entity_set, .. } => lang.f("kind.lookup", &[("target", target_entity_set)]),
        FieldKind::Date => lang.t("kind.date").to_owned(),
        FieldKind::DateTime => lang.t("kind.datetime").to_owned(),
        FieldKind::Bool => lang.t("kind.bool").to_owned(),
        FieldKind::Decimal { scale } => lang.f("kind.decimal", &[("scale", scale)]),
    }
}

fn owner_text(lang: Lang, owner: &str) -> &'static str {
    match owner {
        "app" => lang.t("owner.app"),
        "dynamics" => lang.t("owner.dynamics"),
        _ => lang.t("owner.shared"),
    }
}

fn strategy_text(lang: Lang, strategy: &str) -> &'static str {
    match strategy {
        "newest-wins" => lang.t("strategy.newest_wins"),
        "app-wins" => lang.t("strategy.app_wins"),
        "dynamics-wins" => lang.t("strategy.dynamics_wins"),
        "manual" => lang.t("strategy.manual"),
        _ => lang.t("strategy.other"),
    }
}

fn config_body(frame: &Frame<'_>, data: &ConfigView) -> Markup {
    let lang = frame.lang;
    html! {
        p class="help" {
            (lang.rich("config.help", &[("command", html! { code { "sync-worker config check" } })]))
        }
        section class="card" {
            h2 { (lang.t("config.schedule")) }
            p {
                (lang.rich("config.schedule_line", &[
                    ("schedule", html! { (schedule_text(lang, &data.schedule_kind)) }),
                    ("next", time(data.next_run_at, frame.clock())),
                ]))
            }
        }
        @for org in &data.organisations {
            section class="card" {
                h2 { (org.name) span class="muted" { " (" (org.id) ")" } }
                dl class="facts" {
                    dt { (lang.t("config.instance")) } dd { code { (org.instance_url) } }
                    dt { (lang.t("config.tenant")) } dd { code { (org.tenant_id) } }
                    dt { (lang.t("config.client_id")) } dd { code { (org.client_id) } }
                    dt { (lang.t("config.client_secret")) } dd { (lang.t("config.secret_set")) }
                    dt { (lang.t("config.secret_expires")) }
                    dd {
                        (org.client_secret_expires_on.map_or_else(|| lang.t("config.unknown").to_owned(), |d| lang.date(d)))
                    }
                    dt { (lang.t("config.time_zone")) } dd { (org.time_zone) }
                    dt { (lang.t("config.language")) }
                    dd { (Lang::from_tag(org.language).map_or(org.language, |l| l.t("lang.name"))) }
                    dt { (lang.t("config.mapping")) } dd { code { (org.mapping_source) } }
                    dt { (lang.t("config.privileges")) }
                    dd {
                        a href={(frame.base.to("/config/privileges")) "?org=" (org.id)} { (lang.t("config.privileges_link")) }
                        " " (lang.t("config.privileges_note"))
                    }
                    @for (table, filter) in &org.filters {
                        dt { (lang.f("config.filter_on", &[("table", table)])) } dd { code { (filter) } }
                    }
                }
                h3 { (lang.t("config.mapping_heading")) }
                div class="scroll" tabindex="0" role="region" aria-label=(lang.t("table.scroll")) {
                    table {
                        thead {
                            tr {
                                th scope="col" { (lang.t("config.col.record")) }
                                th scope="col" { (lang.t("config.col.field")) }
                                th scope="col" { (lang.t("config.col.column")) }
                                th scope="col" { (lang.t("config.col.display_name")) }
                                th scope="col" { (lang.t("config.col.owner")) }
                                th scope="col" { (lang.t("config.col.type")) }
                                th scope="col" { (lang.t("config.col.conflicts")) }
                            }
                        }
                        tbody {
                            @for row in &org.mapping {
                                tr {
                                    td { (row.record) " → " (row.table) }
                                    td { code { (row.field) } @if row.alternate_key { " " (lang.t("config.key")) } }
                                    td { code { (row.column) } }
                                    td { (row.display_name) }
                                    td { span class={"owner " (row.owner)} { (owner_text(lang, &row.owner)) } }
                                    td { (kind_text(lang, &row.field_kind)) }
                                    td {
                                        @if let Some(strategy) = &row.conflict_strategy {
                                            (strategy_text(lang, strategy)) " " span class="muted" { "(" code { (strategy) } ")" }
                                        } @else { "—" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section class="card" {
            h2 { (lang.t("config.all_settings")) }
            p class="muted" { (lang.t("config.all_settings_note")) }
            pre lang="en" { (data.settings) }
        }
    }
}

// ----- privileges -----

pub(crate) async fn privileges(page: Page, Query(query): Query<ListQuery>) -> Response {
    let frame = page.frame();
    let title = page.lang.t("privileges.title");
    page.respond(
        view::privileges(&page.shared, query.org.as_deref())
            .await
            .map(|views| frame.page(title, "/config", None, privileges_body(page.lang, &views))),
    )
}

fn privileges_body(lang: Lang, views: &[view::PrivilegesView]) -> Markup {
    html! {
        p class="help" {
            (lang.rich("privileges.help", &[("command", html! { code { "health-check --privileges" } })]))
        }
        @for org in views {
            section class="card" {
                h2 { (org.name) span class="muted" { " (" (org.organisation) ")" } }
                @if let Some(error) = &org.error {
                    p class="error" { (lang.t("privileges.unreachable")) " " (english(lang, error)) }
                }
                @if let Some(report) = &org.report {
                    p { (lang.rich("privileges.user", &[("id", html! { code { (report.user_id) } })])) }
                    @if report.missing.is_empty() {
                        p {
                            span class="status healthy" { (lang.t("privileges.ok")) } " "
                            (lang.f("privileges.all_held", &[("needed", &report.needed)]))
                        }
                    } @else {
                        h3 { (lang.t("privileges.missing_heading")) }
                        ul {
                            @for finding in &report.missing {
                                li {
                                    span class="status unhealthy" { (lang.t("privileges.missing")) } " "
                                    code { (finding.privilege) } ": " (english(lang, &finding.message))
                                }
                            }
                        }
                    }
                    @if report.excess.is_empty() {
                        p { (lang.t("privileges.no_excess")) }
                    } @else {
                        h3 { (lang.t("privileges.excess_heading")) }
                        ul {
                            @for finding in &report.excess {
                                li {
                                    span class="status degraded" { (lang.t("privileges.not_needed")) } " "
                                    code { (finding.privilege) } ": " (english(lang, &finding.message))
                                }
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

pub(crate) async fn cache(page: Page, Query(query): Query<ListQuery>) -> Response {
    let frame = page.frame();
    let org = query.org.as_deref();
    let title = page.lang.t("nav.cache");
    page.respond(view::cache(&page.shared, org).await.map(|caches| {
        frame.page(
            title,
            "/cache",
            query.notice.as_deref(),
            cache_body(&frame, org, &caches),
        )
    }))
}

fn certification(lang: Lang, status: &str) -> &str {
    match status {
        "active" => lang.t("certification.active"),
        "expired" => lang.t("certification.expired"),
        "revoked" => lang.t("certification.revoked"),
        "none" => lang.t("certification.none"),
        other => other,
    }
}

fn cache_body(frame: &Frame<'_>, org: Option<&str>, caches: &[CacheView]) -> Markup {
    let (now, lang) = (frame.clock(), frame.lang);
    html! {
        (frame.org_filter("/cache", org))
        p class="help" { (lang.t("cache.help")) }
        @for cache in caches {
            section class="card" {
                h2 { (frame.org_name(&cache.organisation_id)) }
                p {
                    (lang.f("cache.total", &[("total", &cache.total)])) " "
                    strong class=[(cache.stale > 0).then_some("warn")] { (lang.f("cache.stale_count", &[("stale", &cache.stale)])) }
                    " " (lang.f("cache.limit", &[("limit", &lang.span(cache.stale_after_hours * 3600))]))
                    @if let Some(oldest) = cache.oldest_as_of { "; " (lang.t("cache.oldest")) " " (time(oldest, now)) }
                    "."
                }
                @if !cache.entries.is_empty() {
                    div class="scroll" tabindex="0" role="region" aria-label=(lang.t("table.scroll")) {
                        table {
                            thead {
                                tr {
                                    th scope="col" { (lang.t("col.member_number")) }
                                    th scope="col" { (lang.t("cache.col.status")) }
                                    th scope="col" { (lang.t("cache.col.expires")) }
                                    th scope="col" { (lang.t("cache.col.public")) }
                                    th scope="col" { (lang.t("cache.col.as_of")) }
                                    th scope="col" { (lang.t("cache.col.fresh")) }
                                }
                            }
                            tbody {
                                @for e in &cache.entries {
                                    tr class=[e.stale.then_some("stale")] {
                                        td { (e.member_number.as_deref().unwrap_or("—")) }
                                        td { (certification(lang, &e.status)) }
                                        td { (e.expires_on.map(|d| lang.date(d)).unwrap_or_default()) }
                                        td { (if e.show_on_public_site { lang.t("value.yes") } else { lang.t("value.no") }) }
                                        td { (time(e.as_of, now)) }
                                        td {
                                            @if e.stale { span class="state dead" { (lang.t("cache.stale")) } }
                                            @else { (lang.t("cache.fresh")) }
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

// ----- alerts -----

pub(crate) async fn alerts(page: Page, Query(query): Query<ListQuery>) -> Response {
    let frame = page.frame();
    let org = query.org.as_deref();
    let title = page.lang.t("nav.alerts");
    page.respond(view::alerts(&page.shared, org).await.map(|alerts| {
        frame.page(
            title,
            "/alerts",
            query.notice.as_deref(),
            alerts_body(&frame, org, &alerts),
        )
    }))
}

fn alerts_body(frame: &Frame<'_>, org: Option<&str>, alerts: &[AlertView]) -> Markup {
    let (now, lang) = (frame.clock(), frame.lang);
    html! {
        (frame.org_filter("/alerts", org))
        p class="help" { (lang.t("alerts.help")) }
        @if alerts.is_empty() {
            p class="empty" { (lang.t("alerts.none")) }
        } @else {
            div class="scroll" tabindex="0" role="region" aria-label=(lang.t("table.scroll")) {
                table {
                    thead {
                        tr {
                            th scope="col" { (lang.t("col.organisation")) }
                            th scope="col" { (lang.t("alerts.col.severity")) }
                            th scope="col" { (lang.t("alerts.col.cause")) }
                            th scope="col" { (lang.t("alerts.col.message")) }
                            th scope="col" { (lang.t("alerts.col.raised")) }
                            th scope="col" { (lang.t("alerts.col.last_seen")) }
                            th scope="col" { (lang.t("alerts.col.times")) }
                            th scope="col" { (lang.t("col.state")) }
                            th scope="col" { (lang.t("col.action")) }
                        }
                    }
                    tbody {
                        @for a in alerts {
                            tr class={"severity-" (severity_class(a))} {
                                td { (frame.org_name(&a.organisation_id)) }
                                td { strong { (severity(lang, a)) } }
                                td { code { (a.cause) } }
                                td { (english(lang, &a.message)) }
                                td { (time(a.raised_at, now)) }
                                td { (time(a.updated_at, now)) }
                                td class="num" { (a.occurrences) }
                                td { (state_text(lang, a.state)) }
                                td class="actions" {
                                    @if a.state == "open" {
                                        form method="post" action=(frame.base.to(&format!("/alerts/{}/acknowledge", a.id))) {
                                            (frame.csrf_field())
                                            input type="hidden" name="org" value=(a.organisation_id);
                                            button type="submit" class="secondary"
                                                aria-label=(lang.f("alerts.acknowledge_label", &[("cause", &a.cause)])) {
                                                (lang.t("alerts.acknowledge"))
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
}

// ----- CSV export -----

pub(crate) async fn export(page: Page) -> Response {
    let frame = page.frame();
    let title = page.lang.t("nav.export");
    page.respond(
        view::export_offers(&page.shared)
            .await
            .map(|offers| frame.page(title, "/export", None, export_body(&frame, &offers))),
    )
}

fn export_body(frame: &Frame<'_>, offers: &[ExportOffer]) -> Markup {
    let action = frame.base.to("/export");
    let lang = frame.lang;
    html! {
        p class="help" {
            (lang.rich("export.help", &[("guide", html! { code { "docs/csv-fallback.md" } })]))
        }
        @for offer in offers {
            section class="card export" {
                h2 { (offer.name) }
                h3 { (lang.t("export.full")) }
                (export_forms(lang, &action, &frame.csrf_field(), &offer.organisation_id, &offer.full))
                h3 { (lang.t("export.delta")) }
                (export_forms(lang, &action, &frame.csrf_field(), &offer.organisation_id, &offer.delta))
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

fn mentors(lang: Lang, rows: usize) -> String {
    lang.n("export.mentors", rows as u64, &[])
}

/// What one export holds and a form (posting to `action`, carrying `csrf`) whose buttons download each file.
fn export_forms(lang: Lang, action: &str, csrf: &Markup, org: &str, export: &Export) -> Markup {
    let kind = kind_value(export.kind);
    let part_button = |number: usize, file: &CsvFile, label: String| {
        html! {
            button type="submit" name="part" value=(number) class="primary" title=(file.name) { (label) }
        }
    };
    html! {
        p {
            (mentors(lang, export.rows()))
            @if export.kind == ExportKind::Delta {
                " " (lang.f("export.delta_note", &[("unchanged", &mentors(lang, export.mentors_unchanged))]))
            }
            @if export.files.len() > 1 {
                ", " (lang.rich("export.parts", &[("parts", html! { strong { (lang.n("export.part_count", export.files.len() as u64, &[])) } })]))
            }
            "."
            @if !export.problems.is_empty() {
                " " strong class="warn" { (lang.f("export.problems", &[("mentors", &mentors(lang, export.problems.len()))])) }
                " " (lang.t("export.problems_note"))
            }
        }
        @if export.files.is_empty() && export.errors_file.is_none() {
            p class="empty" { (lang.t("export.nothing")) }
        } @else {
            form method="post" action=(action) class="download" {
                (csrf)
                input type="hidden" name="org" value=(org);
                input type="hidden" name="kind" value=(kind);
                @if let [file] = export.files.as_slice() {
                    (part_button(1, file, match export.kind {
                        ExportKind::Full => lang.t("export.download_full").to_owned(),
                        ExportKind::Delta => lang.t("export.download_delta").to_owned(),
                    }))
                } @else {
                    @for (i, file) in export.files.iter().enumerate() {
                        (part_button(i + 1, file, lang.f("export.download_part", &[
                            ("part", &(i + 1)),
                            ("parts", &export.files.len()),
                            ("mentors", &mentors(lang, file.rows)),
                        ])))
                    }
                }
                @if let Some(errors) = &export.errors_file {
                    button type="submit" name="part" value="errors" class="secondary" title=(errors.name) {
                        (lang.t("export.download_errors"))
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
    fn a_time_shows_the_local_time_with_its_zone_how_long_ago_and_the_utc_instant_for_machines() {
        let oslo = chrono_tz::Europe::Oslo;
        let winter = Utc.with_ymd_and_hms(2026, 12, 2, 1, 0, 0).unwrap();
        for (lang, exact, ago) in [
            (Lang::Nb, "2.12.2026 kl. 02:00 CET", "(for 3 timer siden)"),
            (Lang::En, "2 Dec 2026, 02:00 CET", "(3 hours ago)"),
        ] {
            let now = Now {
                at: winter + chrono::Duration::hours(3),
                tz: oslo,
                lang,
            };
            let shown = time(winter, now).into_string();
            assert!(shown.contains("datetime=\"2026-12-02T01:00:00+00:00\""), "{shown}");
            assert!(shown.contains(&format!("title=\"{exact}\"")), "{shown}");
            assert!(shown.contains(exact) && shown.contains(ago), "{shown}");
        }
    }

    #[test]
    fn the_language_switch_comes_back_to_the_same_page_with_its_query() {
        assert_eq!(
            form_encode("/admin/runs?org=hlf&x=1"),
            "/admin/runs%3Forg%3Dhlf%26x%3D1"
        );
        assert_eq!(form_encode("/æ"), "/%C3%A6");
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
            Lang::En,
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

    #[test]
    fn an_export_reads_in_bokmal_too() {
        let page = export_forms(
            Lang::Nb,
            "/admin/export",
            &html! {},
            "hlf",
            &export(
                ExportKind::Full,
                vec![file("a-1.csv", 70_000), file("a-2.csv", 1)],
                None,
            ),
        )
        .into_string();
        assert!(page.contains("<strong>2 deler</strong>"), "{page}");
        assert!(page.contains("Del 2 av 2 (1 mentor)"), "{page}");
    }
}
