//! What each page shows, read from the store: the same values render as HTML and serialise as the JSON API.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use csv_fallback::{CsvExporter, Export, ExportKind};
use field_mapping::{AppValue, FieldKind};
use health_monitor::{LastSuccess, OrganisationHealth, Probe, Status};
use integration_config::{OrganisationConfig, Schedule};
use serde::Serialize;
use sync_store::{AlertState, ConflictState, Direction, FailureState, RunKind, RunMetrics, RunRecord, RunStatus, Side};

use crate::Shared;
use crate::error::{Error, Result};

/// Runs in the overview's chart.
pub(crate) const CHART_RUNS: u32 = 30;
/// Runs listed per organisation on the runs page.
pub(crate) const RUNS_LISTED: u32 = 200;
/// Cache entries listed per organisation.
pub(crate) const CACHE_LISTED: u32 = 5000;

/// The overview.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub(crate) generated_at: DateTime<Utc>,
    pub(crate) organisations: Vec<OrganisationOverview>,
}

/// One organisation on the overview.
#[derive(Debug, Serialize)]
pub(crate) struct OrganisationOverview {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The health monitor's verdict (no Dynamics call), as `health-check --no-probe` and the metrics give it.
    pub(crate) status: Status,
    /// Why, worst first; the first decided the status. Empty when healthy.
    pub(crate) reasons: Vec<String>,
    /// The same as data, for the pages to word in their language.
    #[serde(skip)]
    pub(crate) findings: Vec<health_monitor::Finding>,
    pub(crate) last_run: Option<RunView>,
    /// The start of the newest run that completed each direction, as the health monitor judges freshness.
    pub(crate) last_success: LastSuccess,
    /// Mentors whose certification differs between the app and Dynamics.
    pub(crate) mismatches: u64,
    /// Active mentors Dynamics has never confirmed (no contact, or every write refused).
    pub(crate) not_in_dynamics: u64,
    /// The newest accounting export and its reconciliation, once one ran.
    pub(crate) postings: Option<health_monitor::PostingHealth>,
    pub(crate) alerts: Vec<AlertView>,
    pub(crate) failed_retrying: usize,
    pub(crate) failed_dead: usize,
    pub(crate) conflicts_open: usize,
    pub(crate) cache_stale: usize,
    /// The last sync runs, oldest first.
    pub(crate) chart: Vec<ChartPoint>,
}

/// One bar pair of the chart.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChartPoint {
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) status: RunStatus,
    /// Records written in both directions.
    pub(crate) synced: u64,
    /// Records that failed in both directions.
    pub(crate) failed: u64,
}

/// A run in the run log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunView {
    pub(crate) id: String,
    pub(crate) organisation_id: String,
    pub(crate) kind: RunKind,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    pub(crate) status: RunStatus,
    pub(crate) error: Option<String>,
    pub(crate) metrics: RunMetrics,
}

/// A failed record.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailureView {
    pub(crate) organisation_id: String,
    pub(crate) record_kind: String,
    /// The key the requeue and dismiss actions take: the mentor's app id (push) or member number (pull).
    pub(crate) record_key: String,
    pub(crate) direction: Direction,
    pub(crate) member_number: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) error: String,
    pub(crate) attempts: u32,
    pub(crate) max_attempts: u32,
    pub(crate) first_failed_at: DateTime<Utc>,
    pub(crate) last_failed_at: DateTime<Utc>,
    /// `retrying`, `dead` or `dismissed`.
    pub(crate) state: &'static str,
}

/// A conflict waiting for an admin, or resolved and waiting for the next run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConflictView {
    pub(crate) id: String,
    pub(crate) organisation_id: String,
    pub(crate) app_id: String,
    pub(crate) member_number: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) field: String,
    pub(crate) column: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) shadow_value: Option<String>,
    pub(crate) app_value: String,
    pub(crate) dynamics_value: String,
    pub(crate) app_changed_at: Option<DateTime<Utc>>,
    pub(crate) dynamics_changed_at: Option<DateTime<Utc>>,
    pub(crate) detected_at: DateTime<Utc>,
    /// `open`, or `resolved` (written by the next run).
    pub(crate) state: &'static str,
    pub(crate) resolution: Option<Side>,
    pub(crate) resolved_by: Option<String>,
    /// The values as data, for the pages to show in their language (the JSON gives the text above).
    #[serde(skip)]
    pub(crate) values: ConflictValues,
}

/// A conflict's values as the engine holds them.
#[derive(Debug, Clone)]
pub(crate) struct ConflictValues {
    pub(crate) shadow: Option<AppValue>,
    pub(crate) app: AppValue,
    pub(crate) dynamics: AppValue,
}

/// An active alert.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlertView {
    pub(crate) id: String,
    pub(crate) organisation_id: String,
    pub(crate) cause: String,
    pub(crate) kind: String,
    pub(crate) severity: sync_store::Severity,
    pub(crate) message: String,
    /// `open` or `acknowledged`.
    pub(crate) state: &'static str,
    pub(crate) raised_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) occurrences: u32,
}

/// The certification cache of one organisation.
#[derive(Debug, Serialize)]
pub(crate) struct CacheView {
    pub(crate) organisation_id: String,
    pub(crate) stale_after_hours: u64,
    pub(crate) total: usize,
    pub(crate) stale: usize,
    pub(crate) oldest_as_of: Option<DateTime<Utc>>,
    pub(crate) entries: Vec<CacheRow>,
}

/// One cached certification status. Member number only: the cache page needs no names.
#[derive(Debug, Serialize)]
pub(crate) struct CacheRow {
    pub(crate) member_number: Option<String>,
    pub(crate) status: String,
    pub(crate) expires_on: Option<NaiveDate>,
    pub(crate) show_on_public_site: bool,
    pub(crate) as_of: DateTime<Utc>,
    pub(crate) stale: bool,
}

/// The effective configuration, without any secret value.
#[derive(Debug, Serialize)]
pub(crate) struct ConfigView {
    pub(crate) organisations: Vec<OrganisationConfigView>,
    /// `nightly at 02:00 Europe/Oslo` or `every 15 minutes`.
    pub(crate) schedule: String,
    pub(crate) next_run_at: DateTime<Utc>,
    /// The schedule as data, for the pages to word in their language.
    #[serde(skip)]
    pub(crate) schedule_kind: Schedule,
    /// Every effective setting as `sync-worker config check` prints it (secrets only as "set" or "missing").
    pub(crate) settings: String,
}

/// One organisation's settings and mapping.
#[derive(Debug, Serialize)]
pub(crate) struct OrganisationConfigView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) instance_url: String,
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    /// Always `set`: loading fails without it.
    pub(crate) client_secret: &'static str,
    pub(crate) client_secret_expires_on: Option<NaiveDate>,
    pub(crate) time_zone: String,
    pub(crate) language: &'static str,
    pub(crate) mapping_source: String,
    pub(crate) filters: BTreeMap<String, String>,
    pub(crate) mapping: Vec<MappingRow>,
}

/// One row of the mapping table.
#[derive(Debug, Serialize)]
pub(crate) struct MappingRow {
    pub(crate) record: String,
    pub(crate) table: String,
    pub(crate) field: String,
    pub(crate) column: String,
    pub(crate) display_name: String,
    pub(crate) owner: String,
    pub(crate) kind: String,
    pub(crate) conflict_strategy: Option<String>,
    pub(crate) alternate_key: bool,
    /// The type as data, for the pages to word in their language.
    #[serde(skip)]
    pub(crate) field_kind: FieldKind,
}

impl From<RunRecord> for RunView {
    fn from(run: RunRecord) -> Self {
        RunView {
            id: run.id,
            organisation_id: run.organisation_id,
            kind: run.kind,
            started_at: run.started_at,
            finished_at: run.finished_at,
            status: run.status,
            error: run.error,
            metrics: run.metrics,
        }
    }
}

/// The organisations a page shows: all, or the one `?org=` names.
pub(crate) fn selected<'a>(shared: &'a Shared, org: Option<&str>) -> Result<Vec<&'a OrganisationConfig>> {
    match org.filter(|o| !o.is_empty()) {
        None => Ok(shared.config.organisations.iter().collect()),
        Some(id) => shared
            .config
            .organisation(id)
            .map(|o| vec![o])
            .ok_or_else(|| Error::NotFound(format!("organisation {id}"))),
    }
}

pub(crate) fn value_text(value: &AppValue) -> String {
    match value {
        AppValue::Null => "(empty)".to_owned(),
        AppValue::Text(text) => text.clone(),
        AppValue::Bool(true) => "yes".to_owned(),
        AppValue::Bool(false) => "no".to_owned(),
        AppValue::Date(date) => date.to_string(),
        AppValue::DateTime(at) => at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        AppValue::Choice(symbol) => symbol.clone(),
        AppValue::Reference(id) => id.to_string(),
        AppValue::Decimal(amount) => amount.to_string(),
    }
}

fn failure_state(state: FailureState) -> &'static str {
    match state {
        FailureState::Retrying => "retrying",
        FailureState::Dead => "dead",
        FailureState::Dismissed => "dismissed",
    }
}

fn alert_view(alert: sync_store::Alert) -> AlertView {
    AlertView {
        state: match alert.state {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        },
        id: alert.id,
        organisation_id: alert.organisation_id,
        cause: alert.cause,
        kind: alert.kind,
        severity: alert.severity,
        message: alert.message,
        raised_at: alert.raised_at,
        updated_at: alert.updated_at,
        occurrences: alert.occurrences,
    }
}

/// Member numbers and names of mentors by app id, for the pages where an admin must find the person.
async fn people(shared: &Shared, org: &str, ids: &[String]) -> Result<BTreeMap<String, (Option<String>, String)>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut out = BTreeMap::new();
    for snapshot in shared.app.mentors(org, ids).await? {
        let m = snapshot.mentor;
        let name = [m.given_name.as_deref(), m.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        out.insert(m.id, (m.member_number, name));
    }
    Ok(out)
}

pub(crate) async fn overview(shared: &Shared) -> Result<Overview> {
    let now = shared.clock.now();
    let mut organisations = Vec::new();
    for org in &shared.config.organisations {
        let runs = shared.store.recent_runs(&org.id, RUNS_LISTED).await?;
        let syncs: Vec<&RunRecord> = runs.iter().filter(|r| r.kind == RunKind::Sync).collect();
        let last_run = syncs.first().copied();
        let alerts = shared.store.active_alerts(&org.id).await?;
        let health = shared.monitor.check(org, Probe::Skip).await?;
        let chart = syncs
            .iter()
            .take(CHART_RUNS as usize)
            .rev()
            .map(|r| ChartPoint {
                started_at: r.started_at,
                status: r.status,
                synced: r.metrics.pull.written + r.metrics.push.written,
                failed: r.metrics.pull.failed + r.metrics.push.failed,
            })
            .collect();
        let cache = shared.store.cache_listing(&org.id, CACHE_LISTED).await?;
        organisations.push(OrganisationOverview {
            id: org.id.clone(),
            name: org.name.clone(),
            status: health.status,
            reasons: health.reasons,
            findings: health.findings,
            last_run: last_run.cloned().map(RunView::from),
            last_success: health.last_success,
            mismatches: health.mismatch_count,
            not_in_dynamics: health.not_in_dynamics,
            postings: health.postings,
            alerts: alerts.into_iter().map(alert_view).collect(),
            failed_retrying: shared.store.failures(&org.id, FailureState::Retrying).await?.len(),
            failed_dead: shared.store.failures(&org.id, FailureState::Dead).await?.len(),
            conflicts_open: shared
                .store
                .pending_conflicts(&org.id)
                .await?
                .iter()
                .filter(|c| c.state == ConflictState::Open)
                .count(),
            cache_stale: cache
                .iter()
                .filter(|e| e.staleness(now, shared.config.cache.stale_after).stale)
                .count(),
            chart,
        });
    }
    Ok(Overview {
        generated_at: now,
        organisations,
    })
}

/// The health monitor's whole model of each selected organisation, judged without a Dynamics call.
pub(crate) async fn health(shared: &Shared, org: Option<&str>) -> Result<Vec<OrganisationHealth>> {
    let mut out = Vec::new();
    for org in selected(shared, org)? {
        out.push(shared.monitor.check(org, Probe::Skip).await?);
    }
    Ok(out)
}

/// The CSV exports an organisation offers, built as a download would build them.
#[derive(Debug)]
pub(crate) struct ExportOffer {
    pub(crate) organisation_id: String,
    pub(crate) name: String,
    pub(crate) full: Export,
    pub(crate) delta: Export,
}

fn exporter(shared: &Shared, org: &OrganisationConfig) -> Result<CsvExporter> {
    Ok(CsvExporter::new(
        org,
        shared.app.clone(),
        shared.store.clone(),
        shared.clock.clone(),
        None,
    )?)
}

/// The full and the delta export of every organisation, so the page can say how many files each has.
pub(crate) async fn export_offers(shared: &Shared) -> Result<Vec<ExportOffer>> {
    let mut out = Vec::new();
    for org in &shared.config.organisations {
        let exporter = exporter(shared, org)?;
        out.push(ExportOffer {
            organisation_id: org.id.clone(),
            name: org.name.clone(),
            full: exporter.build(ExportKind::Full).await?,
            delta: exporter.build(ExportKind::Delta).await?,
        });
    }
    Ok(out)
}

/// One organisation's export of `kind`, built now.
pub(crate) async fn export(shared: &Shared, org: &str, kind: ExportKind) -> Result<Export> {
    let organisation = shared
        .config
        .organisation(org)
        .ok_or_else(|| Error::NotFound(format!("organisation {org}")))?;
    Ok(exporter(shared, organisation)?.build(kind).await?)
}

pub(crate) async fn runs(shared: &Shared, org: Option<&str>) -> Result<Vec<RunView>> {
    let mut out = Vec::new();
    for org in selected(shared, org)? {
        out.extend(
            shared
                .store
                .recent_runs(&org.id, RUNS_LISTED)
                .await?
                .into_iter()
                .map(RunView::from),
        );
    }
    out.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.id.cmp(&a.id)));
    Ok(out)
}

pub(crate) async fn failures(shared: &Shared, org: Option<&str>) -> Result<Vec<FailureView>> {
    let mut out = Vec::new();
    for org in selected(shared, org)? {
        let mut records = Vec::new();
        for state in [FailureState::Dead, FailureState::Retrying, FailureState::Dismissed] {
            records.extend(shared.store.failures(&org.id, state).await?);
        }
        let pushed: Vec<String> = records
            .iter()
            .filter(|r| r.direction == Direction::Push)
            .map(|r| r.record_key.clone())
            .collect();
        let people = people(shared, &org.id, &pushed).await?;
        for record in records {
            let (member_number, name) = match record.direction {
                Direction::Push => people
                    .get(&record.record_key)
                    .map(|(n, name)| (n.clone(), Some(name.clone())))
                    .unwrap_or_default(),
                // A pulled record's key is the member number; the app may not know the person yet.
                Direction::Pull => (Some(record.record_key.clone()), None),
            };
            out.push(FailureView {
                organisation_id: record.organisation_id,
                record_kind: record.record_kind,
                record_key: record.record_key,
                direction: record.direction,
                member_number,
                name,
                error: record.error,
                attempts: record.attempts,
                max_attempts: shared.config.retry.record_max_attempts,
                first_failed_at: record.first_failed_at,
                last_failed_at: record.last_failed_at,
                state: failure_state(record.state),
            });
        }
    }
    Ok(out)
}

pub(crate) async fn conflicts(shared: &Shared, org: Option<&str>) -> Result<Vec<ConflictView>> {
    let mut out = Vec::new();
    for org in selected(shared, org)? {
        let conflicts = shared.store.pending_conflicts(&org.id).await?;
        let ids: Vec<String> = conflicts.iter().map(|c| c.app_id.clone()).collect();
        let people = people(shared, &org.id, &ids).await?;
        for c in conflicts {
            let spec = org
                .mapping
                .record(&c.record_kind)
                .and_then(|r| r.field(&c.field))
                .cloned();
            let (member_number, name) = people.get(&c.app_id).cloned().unzip();
            let (state, resolution) = match c.state {
                ConflictState::Open => ("open", None),
                ConflictState::Resolved(side) => ("resolved", Some(side)),
                ConflictState::Applied => ("applied", None),
                ConflictState::Settled => ("settled", None),
            };
            out.push(ConflictView {
                id: c.id,
                organisation_id: c.organisation_id,
                app_id: c.app_id,
                member_number: member_number.flatten(),
                name,
                column: spec.as_ref().map(|s| s.column.clone()),
                display_name: spec.as_ref().map(|s| s.display_name.clone()),
                field: c.field,
                shadow_value: c.shadow_value.as_ref().map(value_text),
                app_value: value_text(&c.app_value),
                dynamics_value: value_text(&c.dynamics_value),
                app_changed_at: c.app_changed_at,
                dynamics_changed_at: c.dynamics_changed_at,
                detected_at: c.detected_at,
                state,
                resolution,
                resolved_by: c.resolved_by,
                values: ConflictValues {
                    shadow: c.shadow_value,
                    app: c.app_value,
                    dynamics: c.dynamics_value,
                },
            });
        }
    }
    Ok(out)
}

pub(crate) async fn alerts(shared: &Shared, org: Option<&str>) -> Result<Vec<AlertView>> {
    let mut out = Vec::new();
    for org in selected(shared, org)? {
        out.extend(shared.store.active_alerts(&org.id).await?.into_iter().map(alert_view));
    }
    Ok(out)
}

pub(crate) async fn cache(shared: &Shared, org: Option<&str>) -> Result<Vec<CacheView>> {
    let now = shared.clock.now();
    let mut out = Vec::new();
    for org in selected(shared, org)? {
        let entries: Vec<CacheRow> = shared
            .store
            .cache_listing(&org.id, CACHE_LISTED)
            .await?
            .into_iter()
            .map(|e| CacheRow {
                stale: e.staleness(now, shared.config.cache.stale_after).stale,
                member_number: e.member_number,
                status: e.status,
                expires_on: e.expires_on,
                show_on_public_site: e.show_on_public_site,
                as_of: e.as_of,
            })
            .collect();
        out.push(CacheView {
            organisation_id: org.id.clone(),
            stale_after_hours: shared.config.cache.stale_after.as_secs() / 3600,
            total: entries.len(),
            stale: entries.iter().filter(|e| e.stale).count(),
            oldest_as_of: entries.iter().map(|e| e.as_of).min(),
            entries,
        });
    }
    Ok(out)
}

pub(crate) fn config(shared: &Shared) -> ConfigView {
    let config = &shared.config;
    let organisations = config
        .organisations
        .iter()
        .map(|org| {
            let mut mapping = Vec::new();
            for record in org.mapping.records() {
                for spec in record.fields() {
                    let shared_field = spec.owner == field_mapping::Owner::Shared;
                    mapping.push(MappingRow {
                        record: record.kind().to_owned(),
                        table: record.table().to_owned(),
                        field: spec.field.clone(),
                        column: spec.column.clone(),
                        display_name: spec.display_name.clone(),
                        owner: spec.owner.to_string(),
                        kind: kind_text(&spec.kind),
                        conflict_strategy: shared_field.then(|| config.conflicts.strategy_for(&spec.field).to_string()),
                        alternate_key: record.alternate_key().field == spec.field,
                        field_kind: spec.kind.clone(),
                    });
                }
            }
            OrganisationConfigView {
                id: org.id.clone(),
                name: org.name.clone(),
                instance_url: org.credentials.instance_url.to_string(),
                tenant_id: org.credentials.tenant_id.clone(),
                client_id: org.credentials.client_id.clone(),
                client_secret: "set",
                client_secret_expires_on: org.client_secret_expires_on,
                time_zone: org.time_zone.to_string(),
                language: org.language.code(),
                mapping_source: org.mapping_source.clone(),
                filters: org.filters.clone(),
                mapping,
            }
        })
        .collect();
    let schedule = match config.schedule {
        Schedule::Nightly { at, time_zone } => format!("nightly at {} {time_zone}", at.format("%H:%M")),
        Schedule::Every(every) => format!("every {} minutes", every.as_secs() / 60),
    };
    ConfigView {
        organisations,
        schedule,
        next_run_at: config.schedule.next_after(shared.clock.now()),
        schedule_kind: config.schedule,
        settings: config.summary().to_string(),
    }
}

fn kind_text(kind: &FieldKind) -> String {
    match kind {
        FieldKind::String { max_length } => format!("text (max {max_length})"),
        FieldKind::Choice { options } => format!(
            "choice ({})",
            options.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
        ),
        FieldKind::Lookup { target_entity_set, .. } => format!("lookup to {target_entity_set}"),
        other => other.name().to_owned(),
    }
}

/// One organisation's application user against the privileges its sync needs, read live from Dynamics.
#[derive(Debug, Serialize)]
pub(crate) struct PrivilegesView {
    pub(crate) organisation: String,
    pub(crate) name: String,
    /// The comparison, when Dynamics answered.
    pub(crate) report: Option<health_monitor::PrivilegeReport>,
    /// Why Dynamics could not be asked (no secret in it).
    pub(crate) error: Option<String>,
}

/// Asks Dynamics for each organisation's application user privileges (two requests each) and compares them with
/// what its mapping needs.
pub(crate) async fn privileges(shared: &Shared, org: Option<&str>) -> Result<Vec<PrivilegesView>> {
    if let Some(id) = org
        && !shared.services.contains_key(id)
    {
        return Err(Error::NotFound(format!("organisation {id}")));
    }
    let mut views = Vec::new();
    for organisation in shared
        .config
        .organisations
        .iter()
        .filter(|o| org.is_none_or(|id| id == o.id))
    {
        let Some(service) = shared.services.get(&organisation.id) else {
            continue;
        };
        let needs = health_monitor::needs(&organisation.mapping, shared.config.accounting.enabled);
        let (report, error) = match health_monitor::check_privileges(service.client(), &needs).await {
            Ok(report) => (Some(report), None),
            Err(e) => (None, Some(e.to_string())),
        };
        views.push(PrivilegesView {
            organisation: organisation.id.clone(),
            name: organisation.name.clone(),
            report,
            error,
        });
    }
    Ok(views)
}
