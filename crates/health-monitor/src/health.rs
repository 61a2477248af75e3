//! The health model of one organisation, gathered by reading only, and the rule that turns it into
//! healthy / degraded / unhealthy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use dynamics_client::DynamicsClient;
use integration_config::{HealthSettings, IntegrationConfig, OrganisationConfig};
use serde::Serialize;
use sync_engine::{Clock, NOTE_AADSTS, certification_view, changed_at, local_today};
use sync_store::{
    Alert, AlertState, AppStore, CacheEntry, Direction, LastSuccess, PostingMetrics, RunKind, RunRecord, RunStatus,
    Severity, Store,
};

use crate::error::Result;

/// Runs looked at for consecutive failures and the failure rate.
pub(crate) const RUN_WINDOW: u32 = 30;

/// At most this many mismatching member numbers are kept in the health model and named in the alert.
const MISMATCH_SAMPLE: usize = 20;

/// App mentors read per page by the mismatch check.
const PAGE: u32 = 500;

/// The record kind whose certification the monitor checks.
const MENTOR: &str = "mentor";

/// IntegrationHealthMonitor: judges each organisation's sync from the sync store (and, when asked, a WhoAmI call)
/// and keeps the alerts in line with what it finds.
#[derive(Clone)]
pub struct HealthMonitor {
    pub(crate) store: Store,
    pub(crate) app: Arc<dyn AppStore>,
    pub(crate) settings: HealthSettings,
    pub(crate) stale_after: Duration,
    pub(crate) admin_emails: Vec<String>,
    pub(crate) webhook: bool,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Whether and how to ask Dynamics during a check. Either way nothing is written to Dynamics.
#[derive(Debug, Clone, Copy)]
pub enum Probe<'a> {
    /// Judge from the sync store only (authentication from the last run).
    Skip,
    /// Also call WhoAmI with this organisation's client: connectivity, latency and the token.
    Dynamics(&'a DynamicsClient),
}

/// Overall health, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything as it should be.
    Healthy,
    /// Working, with something to look at.
    Degraded,
    /// Not doing its job: someone must act.
    Unhealthy,
}

/// Whether Dynamics answered the probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Connectivity {
    /// No probe was made (or no token could be had to make one).
    NotChecked,
    /// WhoAmI answered.
    Ok {
        /// How long it took, in milliseconds.
        latency_ms: u64,
    },
    /// WhoAmI failed.
    Failed {
        /// What went wrong (no secrets: the client's errors never carry them).
        error: String,
    },
}

/// Whether the organisation's credentials work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Authentication {
    /// Not known: no probe and no finished run.
    NotChecked,
    /// A token was obtained (by the probe, or by the last run).
    Ok,
    /// Azure AD or Dynamics refused the credentials.
    Failed {
        /// The AADSTS code, when Azure AD gave one (7000222: the client secret has expired).
        aadsts: Option<u32>,
        /// What happened and what HLF IT must do.
        message: String,
    },
}

/// How the last runs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct FailureRate {
    /// Finished sync runs looked at (at most the last 30).
    pub runs: u32,
    /// How many of them failed as a whole.
    pub failed: u32,
}

/// The certification cache's freshness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheHealth {
    /// Cached mentors.
    pub entries: u64,
    /// The oldest confirmation: what a backend read may be as old as.
    pub as_of: Option<DateTime<Utc>>,
    /// Seconds since `as_of`.
    pub age_seconds: Option<u64>,
    /// Whether `as_of` is older than the configured `cache.stale_after`.
    pub stale: bool,
}

/// How long the change-tracking delta token has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeltaTokenHealth {
    /// Seconds since the token was last renewed (the last completed pull).
    pub age_seconds: u64,
    /// Seconds until Dynamics forgets it (0 when past); after that the next run does a full resync.
    pub expires_in_seconds: u64,
}

/// A mentor whose certification status or public-site flag differs between the app and Dynamics after the last
/// run that should have aligned them. The alert and every log line name it by its app id; the member number is for
/// the people who read the health report (the dashboard, `health-check --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The mentor's id in the app.
    pub mentor_id: String,
    /// The mentor's member number, if it has one.
    pub member_number: Option<String>,
    /// The status in the app (`active`, `expired`, `revoked`, `none`).
    pub app_status: String,
    /// The status Dynamics last confirmed (always known: a mentor Dynamics never confirmed is counted in
    /// [`OrganisationHealth::not_in_dynamics`] instead).
    pub dynamics_status: Option<String>,
    /// Whether Dynamics shows the mentor on the public site although the app says it must not.
    pub shown_wrongly: bool,
}

/// An alert as shown by health checks and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertView {
    /// The alert's id (for acknowledging it).
    pub id: String,
    /// The deduplication cause, e.g. `sync-failing`.
    pub cause: String,
    /// The kind, for grouping.
    pub kind: String,
    /// `warning` or `critical`.
    pub severity: Severity,
    /// `open` or `acknowledged`.
    pub state: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// When first raised.
    pub raised_at: DateTime<Utc>,
    /// How often the cause was seen while the alert was active.
    pub occurrences: u32,
}

/// Everything known about one organisation's sync, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrganisationHealth {
    /// The organisation's id.
    pub organisation: String,
    /// Its display name.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// Why, worst first; the first is the rule that decided the status. Empty when healthy.
    pub reasons: Vec<String>,
    /// The same reasons as data, for wording them in another language. Not serialised: `reasons` is the text.
    #[serde(skip)]
    pub findings: Vec<Finding>,
    /// When this was checked.
    pub checked_at: DateTime<Utc>,
    /// WhoAmI.
    pub connectivity: Connectivity,
    /// The credentials.
    pub authentication: Authentication,
    /// The last completed pull and push.
    pub last_success: LastSuccess,
    /// The newest finished sync run: id, status and error.
    pub last_run: Option<RunSummary>,
    /// Sync runs that failed in a row, newest first.
    pub consecutive_failed_runs: u32,
    /// Failures among the last runs.
    pub failure_rate: FailureRate,
    /// The certification cache.
    pub cache: CacheHealth,
    /// Schema drift reported by the engine (the messages of open `schema-drift:*` alerts).
    pub schema_drift: Vec<String>,
    /// The configured client-secret expiry date, if any.
    pub secret_expires_on: Option<NaiveDate>,
    /// Days from the organisation's local today to that date (negative once expired).
    pub secret_days_left: Option<i64>,
    /// The change-tracking delta token, when the pull uses one.
    pub delta_token: Option<DeltaTokenHealth>,
    /// Mentors whose certification differs between the app and Dynamics (a sample of at most 20).
    pub mismatches: Vec<Mismatch>,
    /// How many mentors differ in all.
    pub mismatch_count: u64,
    /// Active mentors of the app that Dynamics has never confirmed (no contact with their member number, or every
    /// write refused): not a mismatch, since Dynamics cannot show them anywhere, but each waits in the failed-record
    /// queue with its reason.
    pub not_in_dynamics: u64,
    /// Failed records by state (`retrying`, `dead`, `dismissed`).
    pub failed_records: BTreeMap<String, u64>,
    /// The newest finished accounting export, when postings are exported (`[accounting] enabled`).
    pub postings: Option<PostingHealth>,
    /// Open and acknowledged alerts, most severe first.
    pub open_alerts: Vec<AlertView>,
}

/// The newest finished accounting export and what its reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostingHealth {
    /// The run's id.
    pub run_id: String,
    /// `succeeded`, `partial` (postings queued as failed) or `failed` (the export could not finish).
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Its figures: exported, failed, held, and the reconciliation's missing and differing postings.
    pub metrics: PostingMetrics,
    /// The figures of the newest export that finished its reconciliation (this one, unless it failed): what the
    /// `postings-unreconciled` alert follows, so a failed export neither raises nor resolves it.
    pub reconciled: Option<PostingMetrics>,
}

/// The newest finished sync run, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// The run's id.
    pub id: String,
    /// `succeeded`, `partial` or `failed`.
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl std::fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl HealthMonitor {
    /// A monitor over `store` (the sync state) and `app` (the app's mentors, for the mismatch check), with the
    /// thresholds, cache limit and admin recipients from `config`, judging time by `clock`.
    pub fn new(config: &IntegrationConfig, store: Store, app: Arc<dyn AppStore>, clock: Arc<dyn Clock>) -> Self {
        HealthMonitor {
            store,
            app,
            settings: config.health.clone(),
            stale_after: config.cache.stale_after,
            admin_emails: config.notifications.admin_emails.clone(),
            webhook: config.notifications.webhook.is_some(),
            clock,
        }
    }

    /// Judges one organisation. Reads the sync store and, with [`Probe::Dynamics`], calls WhoAmI; writes nothing
    /// anywhere.
    pub async fn check(&self, organisation: &OrganisationConfig, probe: Probe<'_>) -> Result<OrganisationHealth> {
        let now = self.clock.now();
        let org = organisation.id.as_str();
        let runs: Vec<RunRecord> = self
            .store
            .recent_runs(org, RUN_WINDOW)
            .await?
            .into_iter()
            .filter(|r| r.kind == RunKind::Sync && r.status != RunStatus::Running)
            .collect();
        let consecutive_failed_runs = runs.iter().take_while(|r| r.status == RunStatus::Failed).count();
        let failure_rate = FailureRate {
            runs: count(runs.len()),
            failed: count(runs.iter().filter(|r| r.status == RunStatus::Failed).count()),
        };
        let last_run = runs.first().map(|r| RunSummary {
            id: r.id.clone(),
            status: r.status,
            started_at: r.started_at,
            error: r.error.clone(),
        });
        let (connectivity, authentication) = match probe {
            Probe::Skip => (Connectivity::NotChecked, authentication_from_runs(&runs)),
            Probe::Dynamics(client) => probe_dynamics(client).await,
        };
        let last_success = self.store.last_success(org).await?;
        let today = local_today(now, organisation.time_zone);
        let secret_days_left = organisation
            .client_secret_expires_on
            .map(|expires| (expires - today).num_days());
        let summary = self.store.cache_summary(org).await?;
        let age = summary.oldest_as_of.map(|as_of| seconds(now - as_of));
        let cache = CacheHealth {
            entries: summary.entries,
            as_of: summary.oldest_as_of,
            age_seconds: age,
            stale: age.is_some_and(|age| age > self.stale_after.as_secs()),
        };
        let delta_token = self.delta_token(organisation, &last_success, now).await?;
        let alerts = self.store.active_alerts(org).await?;
        let schema_drift = alerts
            .iter()
            .filter(|a| a.cause.starts_with("schema-drift"))
            .map(|a| a.message.clone())
            .collect();
        let comparison = match runs.iter().find(|r| pushed(r)) {
            Some(reference) => self.mismatches(organisation, reference.started_at).await?,
            None => Comparison::default(),
        };
        let mut health = OrganisationHealth {
            organisation: organisation.id.clone(),
            name: organisation.name.clone(),
            status: Status::Healthy,
            reasons: Vec::new(),
            findings: Vec::new(),
            checked_at: now,
            connectivity,
            authentication,
            last_success,
            last_run,
            consecutive_failed_runs: count(consecutive_failed_runs),
            failure_rate,
            cache,
            schema_drift,
            secret_expires_on: organisation.client_secret_expires_on,
            secret_days_left,
            delta_token,
            mismatches: comparison.mismatches,
            mismatch_count: comparison.mismatch_count,
            not_in_dynamics: comparison.not_in_dynamics,
            failed_records: self.store.failure_counts(org).await?,
            postings: self.postings(org).await?,
            open_alerts: alerts.iter().map(alert_view).collect(),
        };
        apply_verdict(&mut health, &self.settings, self.stale_after);
        Ok(health)
    }

    /// The newest accounting export, and the figures of the newest one that reconciled.
    async fn postings(&self, org: &str) -> Result<Option<PostingHealth>> {
        let Some(run) = self.store.latest_finished_run(org, RunKind::Postings).await? else {
            return Ok(None);
        };
        let reconciled = if run.status == RunStatus::Failed {
            self.store
                .latest_completed_run(org, RunKind::Postings)
                .await?
                .map(|r| r.metrics.postings.unwrap_or_default())
        } else {
            run.metrics.postings.clone()
        };
        Ok(Some(PostingHealth {
            run_id: run.id,
            status: run.status,
            started_at: run.started_at,
            error: run.error,
            metrics: run.metrics.postings.unwrap_or_default(),
            reconciled,
        }))
    }

    /// The delta token's age and remaining life, when the pull of the mentor table uses change tracking.
    async fn delta_token(
        &self,
        organisation: &OrganisationConfig,
        last_success: &LastSuccess,
        now: DateTime<Utc>,
    ) -> Result<Option<DeltaTokenHealth>> {
        let Some(mapping) = organisation.mapping.record(MENTOR) else {
            return Ok(None);
        };
        let watermark = self
            .store
            .watermark(&organisation.id, Direction::Pull, mapping.table())
            .await?;
        // Each completed pull renews the token; without a completed pull the watermark's own time is the best
        // evidence of when it was issued.
        let issued = last_success.pull.or(watermark.updated_at);
        Ok(match (watermark.delta_link, issued) {
            (Some(_), Some(issued)) => {
                let age = seconds(now - issued);
                Some(DeltaTokenHealth {
                    age_seconds: age,
                    expires_in_seconds: self.settings.delta_token_lifetime.as_secs().saturating_sub(age),
                })
            }
            _ => None,
        })
    }

    /// Mentors whose certification status or public-site flag in the app (as of `reference`, the start of the
    /// last run that completed its push) differs from what Dynamics last confirmed (the certification cache).
    /// Mentors the app changed after `reference` are left to the next run.
    async fn mismatches(&self, organisation: &OrganisationConfig, reference: DateTime<Utc>) -> Result<Comparison> {
        let org = organisation.id.as_str();
        let today = local_today(reference, organisation.time_zone);
        let mut found = Comparison::default();
        let mut after: Option<String> = None;
        loop {
            let mentors = self.app.all_mentors(org, after.as_deref(), PAGE).await?;
            let Some(last) = mentors.last() else { break };
            let cache: BTreeMap<String, CacheEntry> = self
                .store
                .cache_entries(org, after.as_deref(), &last.mentor.id)
                .await?
                .into_iter()
                .map(|entry| (entry.mentor_id.clone(), entry))
                .collect();
            after = Some(last.mentor.id.clone());
            for snapshot in &mentors {
                if changed_at(snapshot) > reference {
                    continue;
                }
                let view = certification_view(&snapshot.certifications, today);
                let app_visible = view.status == "active";
                let Some(entry) = cache.get(&snapshot.mentor.id) else {
                    // Never confirmed by Dynamics: it cannot show them anywhere, so nothing differs there; an
                    // active mentor it should hold is counted apart (the failed-record queue says why).
                    found.not_in_dynamics += u64::from(app_visible);
                    continue;
                };
                if entry.status != view.status || entry.show_on_public_site != app_visible {
                    found.mismatch_count += 1;
                    if found.mismatches.len() < MISMATCH_SAMPLE {
                        found.mismatches.push(Mismatch {
                            mentor_id: snapshot.mentor.id.clone(),
                            member_number: snapshot.mentor.member_number.clone(),
                            app_status: view.status.to_owned(),
                            dynamics_status: Some(entry.status.clone()),
                            shown_wrongly: entry.show_on_public_site && !app_visible,
                        });
                    }
                }
            }
            if mentors.len() < PAGE as usize {
                break;
            }
        }
        Ok(found)
    }
}

/// What comparing the app's mentors with the certification cache found.
#[derive(Debug, Default)]
struct Comparison {
    mismatches: Vec<Mismatch>,
    mismatch_count: u64,
    not_in_dynamics: u64,
}

/// Whether a finished run completed its push (records queued as failed do not count against it).
fn pushed(run: &RunRecord) -> bool {
    run.status == RunStatus::Succeeded || (run.status == RunStatus::Partial && run.error.is_none())
}

/// Authentication as the newest finished run saw it.
fn authentication_from_runs(runs: &[RunRecord]) -> Authentication {
    match runs.first() {
        None => Authentication::NotChecked,
        Some(run) if run.status == RunStatus::Failed => match run.metrics.notes.get(NOTE_AADSTS) {
            Some(code) => Authentication::Failed {
                aadsts: code.parse().ok(),
                message: run.error.clone().unwrap_or_default(),
            },
            // The run failed for another reason after (or before) obtaining a token: nothing is known.
            None => Authentication::NotChecked,
        },
        Some(_) => Authentication::Ok,
    }
}

/// WhoAmI with the organisation's client: a read, never a write.
async fn probe_dynamics(client: &DynamicsClient) -> (Connectivity, Authentication) {
    let started = Instant::now();
    match client.who_am_i().await {
        Ok(_) => (
            Connectivity::Ok {
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
            Authentication::Ok,
        ),
        Err(dynamics_client::Error::Auth(auth)) => (
            Connectivity::NotChecked,
            Authentication::Failed {
                aadsts: auth.aadsts_code(),
                message: auth.to_string(),
            },
        ),
        Err(e @ dynamics_client::Error::Unauthorized { .. }) => (
            Connectivity::Ok {
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
            Authentication::Failed {
                aadsts: None,
                message: e.to_string(),
            },
        ),
        Err(e) => (
            Connectivity::Failed { error: e.to_string() },
            Authentication::NotChecked,
        ),
    }
}

/// The verdict: every rule that applies, worst first. Unhealthy: credentials refused, Dynamics unreachable,
/// `health.failed_runs_alert` runs failed in a row, no successful sync within `health.freshness`, or a critical
/// alert. Degraded: the last run failed, a warning alert, a stale certification cache, mismatching mentors, or
/// records that failed for good.
pub(crate) fn judge(
    health: &OrganisationHealth,
    settings: &HealthSettings,
    stale_after: Duration,
) -> (Status, Vec<Finding>) {
    let mut found: Vec<(Status, Finding)> = Vec::new();
    let mut add = |status: Status, finding: Finding| found.push((status, finding));
    if let Authentication::Failed { message, .. } = &health.authentication {
        add(
            Status::Unhealthy,
            Finding::AuthenticationFailed {
                message: message.clone(),
            },
        );
    }
    if let Connectivity::Failed { error } = &health.connectivity {
        add(Status::Unhealthy, Finding::Unreachable { error: error.clone() });
    }
    if health.consecutive_failed_runs >= settings.failed_runs_alert.max(1) {
        add(
            Status::Unhealthy,
            Finding::RunsFailed {
                runs: health.consecutive_failed_runs,
            },
        );
    } else if health.consecutive_failed_runs > 0 {
        add(Status::Degraded, Finding::LastRunFailed);
    }
    let freshness = settings.freshness.as_secs();
    let newest = match (health.last_success.pull, health.last_success.push) {
        (Some(pull), Some(push)) => Some(pull.min(push)),
        _ => None,
    };
    match newest {
        None => add(Status::Unhealthy, Finding::NeverSynced),
        Some(at) if seconds(health.checked_at - at) > freshness => add(
            Status::Unhealthy,
            Finding::NotFresh {
                since: at,
                limit_seconds: freshness,
            },
        ),
        Some(_) => {}
    }
    for alert in &health.open_alerts {
        let status = match alert.severity {
            Severity::Critical => Status::Unhealthy,
            Severity::Warning => Status::Degraded,
        };
        add(
            status,
            Finding::Alert {
                cause: alert.cause.clone(),
                message: alert.message.clone(),
            },
        );
    }
    if let Some(postings) = &health.postings
        && postings.status == RunStatus::Failed
    {
        add(
            Status::Degraded,
            Finding::PostingsFailed {
                error: postings.error.clone(),
            },
        );
    }
    if health.cache.stale {
        add(
            Status::Degraded,
            Finding::CacheStale {
                age_seconds: health.cache.age_seconds.unwrap_or(0),
                limit_seconds: stale_after.as_secs(),
            },
        );
    }
    if health.mismatch_count > 0 {
        add(
            Status::Degraded,
            Finding::Mismatches {
                mentors: health.mismatch_count,
            },
        );
    }
    if let Some(&dead) = health.failed_records.get("dead")
        && dead > 0
    {
        add(Status::Degraded, Finding::DeadRecords { records: dead });
    }
    // Stable: rules keep their order within a status.
    found.sort_by_key(|(status, _)| std::cmp::Reverse(*status));
    let status = found.first().map_or(Status::Healthy, |(status, _)| *status);
    (status, found.into_iter().map(|(_, finding)| finding).collect())
}

/// Sets the verdict of `health`: its status, its findings and their English text.
pub(crate) fn apply_verdict(health: &mut OrganisationHealth, settings: &HealthSettings, stale_after: Duration) {
    let (status, findings) = judge(health, settings, stale_after);
    health.status = status;
    health.reasons = findings.iter().map(ToString::to_string).collect();
    health.findings = findings;
}

/// One reason an organisation is not healthy, as data, so that a page can word it in its reader's language.
/// [`OrganisationHealth::reasons`] holds the English text of each (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// Azure AD refused the credentials.
    AuthenticationFailed {
        /// Azure AD's or the client's message (no secret in it).
        message: String,
    },
    /// WhoAmI failed.
    Unreachable {
        /// Why.
        error: String,
    },
    /// At least `failed_runs_alert` sync runs failed in a row.
    RunsFailed {
        /// How many.
        runs: u32,
    },
    /// The newest sync run failed (fewer in a row than the alert needs).
    LastRunFailed,
    /// No run has completed both directions yet.
    NeverSynced,
    /// The older of the two directions' last success is older than the freshness limit.
    NotFresh {
        /// That success.
        since: DateTime<Utc>,
        /// The limit, in seconds.
        limit_seconds: u64,
    },
    /// An open or acknowledged alert.
    Alert {
        /// Its cause code.
        cause: String,
        /// Its message, in English as stored.
        message: String,
    },
    /// The newest accounting export failed.
    PostingsFailed {
        /// Its error, if one was recorded.
        error: Option<String>,
    },
    /// The certification cache's oldest entry is older than the staleness limit.
    CacheStale {
        /// Its age, in seconds.
        age_seconds: u64,
        /// The limit, in seconds.
        limit_seconds: u64,
    },
    /// Mentors whose certification differs between the app and Dynamics.
    Mismatches {
        /// How many.
        mentors: u64,
    },
    /// Records that failed for good.
    DeadRecords {
        /// How many.
        records: u64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::AuthenticationFailed { message } => write!(f, "authentication failed: {message}"),
            Finding::Unreachable { error } => write!(f, "Dynamics cannot be reached: {error}"),
            Finding::RunsFailed { runs } => write!(f, "the last {runs} sync runs failed"),
            Finding::LastRunFailed => f.write_str("the last sync run failed"),
            Finding::NeverSynced => f.write_str("no sync has completed both directions yet"),
            Finding::NotFresh { since, limit_seconds } => write!(
                f,
                "no successful sync in both directions since {} (limit {})",
                since.format("%Y-%m-%d %H:%M UTC"),
                human(*limit_seconds)
            ),
            Finding::Alert { cause, message } => write!(f, "alert {cause}: {message}"),
            Finding::PostingsFailed { error } => write!(
                f,
                "the last accounting export failed: {}",
                error.as_deref().unwrap_or("unknown")
            ),
            Finding::CacheStale {
                age_seconds,
                limit_seconds,
            } => write!(
                f,
                "the certification cache is stale: oldest entry confirmed {} ago (limit {})",
                human(*age_seconds),
                human(*limit_seconds)
            ),
            Finding::Mismatches { mentors: 1 } => f.write_str("1 mentor differs between the app and Dynamics"),
            Finding::Mismatches { mentors } => write!(f, "{mentors} mentors differ between the app and Dynamics"),
            Finding::DeadRecords { records: 1 } => f.write_str("1 record failed for good and needs an admin"),
            Finding::DeadRecords { records } => write!(f, "{records} records failed for good and need an admin"),
        }
    }
}

pub(crate) fn alert_view(alert: &Alert) -> AlertView {
    AlertView {
        id: alert.id.clone(),
        cause: alert.cause.clone(),
        kind: alert.kind.clone(),
        severity: alert.severity,
        state: match alert.state {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        },
        message: alert.message.clone(),
        raised_at: alert.raised_at,
        occurrences: alert.occurrences,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn seconds(d: chrono::Duration) -> u64 {
    u64::try_from(d.num_seconds()).unwrap_or(0)
}

/// A duration for people: "3 days 4 h", "5 h 10 min", "42 s".
pub(crate) fn human(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, h, _) => format!("1 day {h} h"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}
