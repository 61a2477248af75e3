//! Prometheus metrics, computed from the run log and the health model at scrape time, in the text exposition
//! format (version 0.0.4). Every series carries an `organisation` label (its id from the configuration).
//!
//! The values come from the database, not from in-process counters, so every worker, the dashboard and a probe
//! report the same figures, and a restart loses nothing. The `_total` series count the runs still in the run log:
//! they drop when the retention purge removes old runs, which Prometheus reads as a counter reset.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use integration_config::OrganisationConfig;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use sync_store::{RunKind, RunRecord, RunStatus, Severity};
use tracing::warn;

use crate::error::{Error, Result};
use crate::health::{HealthMonitor, Probe, RUN_WINDOW, Status};

/// The content type of the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// All gauges and counters of one scrape.
struct Families {
    registry: Registry,
    last_run_records: IntGaugeVec,
    last_run_conflicts: IntGaugeVec,
    last_run_api_requests: IntGaugeVec,
    last_run_throttled: IntGaugeVec,
    last_run_duration: GaugeVec,
    last_run_timestamp: GaugeVec,
    last_success: GaugeVec,
    runs_total: IntCounterVec,
    failure_ratio: GaugeVec,
    consecutive_failed: IntGaugeVec,
    divergence_records: IntGaugeVec,
    divergence_fields: IntGaugeVec,
    health_status: IntGaugeVec,
    alerts_open: IntGaugeVec,
    cache_age: GaugeVec,
    cache_entries: IntGaugeVec,
    failed_records: IntGaugeVec,
    notifications: IntGaugeVec,
    mismatches: IntGaugeVec,
    postings_last_run: IntGaugeVec,
    postings_unreconciled: IntGaugeVec,
    postings_last_run_timestamp: GaugeVec,
    postings_last_run_failed: IntGaugeVec,
}

/// Renders the metrics of `organisations` in the Prometheus text format. Reads the sync store only.
pub async fn render_metrics(monitor: &HealthMonitor, organisations: &[OrganisationConfig]) -> Result<String> {
    let families = Families::new()?;
    for organisation in organisations {
        families.record(monitor, organisation).await?;
    }
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&families.registry.gather(), &mut buffer)
        .map_err(|e| Error::Metrics(e.to_string()))?;
    String::from_utf8(buffer).map_err(|e| Error::Metrics(e.to_string()))
}

/// A router with `GET /metrics` for `organisations`, for the dashboard and the worker to mount (behind their own
/// authentication).
pub fn metrics_router(monitor: HealthMonitor, organisations: Vec<OrganisationConfig>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new((monitor, organisations)))
}

async fn scrape(State(state): State<Arc<(HealthMonitor, Vec<OrganisationConfig>)>>) -> Response {
    match render_metrics(&state.0, &state.1).await {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            warn!(error = %e, "metrics scrape failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics unavailable: the sync store cannot be read\n",
            )
                .into_response()
        }
    }
}

impl Families {
    fn new() -> Result<Self> {
        let registry = Registry::new();
        let org = &["organisation"];
        let families = Families {
            last_run_records: int_gauge(
                "hlf_sync_last_run_records",
                "Records handled by the newest finished sync run, by direction (pull: Dynamics to app, push: app to \
                 Dynamics) and outcome (read, written, skipped, failed).",
                &["organisation", "direction", "outcome"],
            )?,
            last_run_conflicts: int_gauge(
                "hlf_sync_last_run_conflicts",
                "Conflicts found by the newest finished sync run.",
                org,
            )?,
            last_run_api_requests: int_gauge(
                "hlf_sync_last_run_api_requests",
                "Dynamics Web API requests sent by the newest finished sync run.",
                org,
            )?,
            last_run_throttled: int_gauge(
                "hlf_sync_last_run_throttled_responses",
                "Throttled (429) responses seen by the newest finished sync run.",
                org,
            )?,
            last_run_duration: gauge(
                "hlf_sync_last_run_duration_seconds",
                "Wall time of the newest finished sync run.",
                org,
            )?,
            last_run_timestamp: gauge(
                "hlf_sync_last_run_timestamp_seconds",
                "Start of the newest finished sync run, in Unix time.",
                org,
            )?,
            last_success: gauge(
                "hlf_sync_last_success_timestamp_seconds",
                "Start of the newest run that completed the direction, in Unix time.",
                &["organisation", "direction"],
            )?,
            runs_total: IntCounterVec::new(
                Opts::new(
                    "hlf_sync_runs_total",
                    "Sync runs in the run log by status (succeeded, partial, failed).",
                ),
                &["organisation", "status"],
            )
            .map_err(metrics_error)?,
            failure_ratio: gauge(
                "hlf_sync_run_failure_ratio",
                "Share of the last 30 finished sync runs that failed as a whole (0 to 1).",
                org,
            )?,
            consecutive_failed: int_gauge(
                "hlf_sync_consecutive_failed_runs",
                "Sync runs that failed in a row, newest first.",
                org,
            )?,
            divergence_records: int_gauge(
                "hlf_sync_divergence_records",
                "Linked records that differed between the app and Dynamics at the last reconcile.",
                org,
            )?,
            divergence_fields: int_gauge(
                "hlf_sync_divergence_fields",
                "Fields that differed between the app and Dynamics at the last reconcile.",
                org,
            )?,
            health_status: int_gauge(
                "hlf_sync_health_status",
                "Overall health: 0 healthy, 1 degraded, 2 unhealthy.",
                org,
            )?,
            alerts_open: int_gauge(
                "hlf_sync_alerts_open",
                "Open or acknowledged alerts by severity.",
                &["organisation", "severity"],
            )?,
            cache_age: gauge(
                "hlf_sync_certification_cache_age_seconds",
                "Age of the oldest certification cache entry (how stale a cached read can be).",
                org,
            )?,
            cache_entries: int_gauge(
                "hlf_sync_certification_cache_entries",
                "Mentors in the certification cache.",
                org,
            )?,
            failed_records: int_gauge(
                "hlf_sync_failed_records",
                "Records in the failed-record queue by state (retrying, dead, dismissed).",
                &["organisation", "state"],
            )?,
            notifications: int_gauge(
                "hlf_sync_notifications",
                "Notifications in the outbox by state (pending, sent, failed).",
                &["organisation", "state"],
            )?,
            mismatches: int_gauge(
                "hlf_sync_certification_mismatches",
                "Mentors whose certification status or public-site flag differs between the app and Dynamics.",
                org,
            )?,
            postings_last_run: int_gauge(
                "hlf_sync_postings_last_run",
                "Postings handled by the newest finished accounting export, by outcome (exported, failed, held).",
                &["organisation", "outcome"],
            )?,
            postings_unreconciled: int_gauge(
                "hlf_sync_postings_unreconciled",
                "Exported postings the newest accounting export found changed in Dynamics, by kind (missing: \
                 deleted there; differing: another amount).",
                &["organisation", "kind"],
            )?,
            postings_last_run_timestamp: gauge(
                "hlf_sync_postings_last_run_timestamp_seconds",
                "Start of the newest finished accounting export, in Unix time.",
                org,
            )?,
            postings_last_run_failed: int_gauge(
                "hlf_sync_postings_last_run_failed",
                "1 when the newest accounting export could not finish (Dynamics unreachable, credentials), else 0.",
                org,
            )?,
            registry,
        };
        families.register()?;
        Ok(families)
    }

    fn register(&self) -> Result<()> {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.last_run_records.clone()),
            Box::new(self.last_run_conflicts.clone()),
            Box::new(self.last_run_api_requests.clone()),
            Box::new(self.last_run_throttled.clone()),
            Box::new(self.last_run_duration.clone()),
            Box::new(self.last_run_timestamp.clone()),
            Box::new(self.last_success.clone()),
            Box::new(self.runs_total.clone()),
            Box::new(self.failure_ratio.clone()),
            Box::new(self.consecutive_failed.clone()),
            Box::new(self.divergence_records.clone()),
            Box::new(self.divergence_fields.clone()),
            Box::new(self.health_status.clone()),
            Box::new(self.alerts_open.clone()),
            Box::new(self.cache_age.clone()),
            Box::new(self.cache_entries.clone()),
            Box::new(self.failed_records.clone()),
            Box::new(self.notifications.clone()),
            Box::new(self.mismatches.clone()),
            Box::new(self.postings_last_run.clone()),
            Box::new(self.postings_unreconciled.clone()),
            Box::new(self.postings_last_run_timestamp.clone()),
            Box::new(self.postings_last_run_failed.clone()),
        ];
        for collector in collectors {
            self.registry.register(collector).map_err(metrics_error)?;
        }
        Ok(())
    }

    async fn record(&self, monitor: &HealthMonitor, organisation: &OrganisationConfig) -> Result<()> {
        let org = organisation.id.as_str();
        let store = &monitor.store;
        let health = monitor.check(organisation, Probe::Skip).await?;
        let runs: Vec<RunRecord> = store
            .recent_runs(org, RUN_WINDOW)
            .await?
            .into_iter()
            .filter(|r| r.kind == RunKind::Sync && r.status != RunStatus::Running)
            .collect();
        if let Some(last) = runs.first() {
            let m = &last.metrics;
            for (direction, d) in [("pull", &m.pull), ("push", &m.push)] {
                for (outcome, value) in [
                    ("read", d.read),
                    ("written", d.written),
                    ("skipped", d.skipped),
                    ("failed", d.failed),
                ] {
                    self.last_run_records
                        .with_label_values(&[org, direction, outcome])
                        .set(int(value));
                }
            }
            self.last_run_conflicts
                .with_label_values(&[org])
                .set(int(m.pull.conflicts + m.push.conflicts));
            self.last_run_api_requests
                .with_label_values(&[org])
                .set(int(m.requests));
            self.last_run_throttled.with_label_values(&[org]).set(int(m.throttled));
            self.last_run_duration
                .with_label_values(&[org])
                .set(m.duration_ms as f64 / 1000.0);
            self.last_run_timestamp
                .with_label_values(&[org])
                .set(unix(last.started_at));
        }
        for (direction, at) in [("pull", health.last_success.pull), ("push", health.last_success.push)] {
            if let Some(at) = at {
                self.last_success.with_label_values(&[org, direction]).set(unix(at));
            }
        }
        for status in [RunStatus::Succeeded, RunStatus::Partial, RunStatus::Failed] {
            let label = match status {
                RunStatus::Succeeded => "succeeded",
                RunStatus::Partial => "partial",
                _ => "failed",
            };
            let n = runs.iter().filter(|r| r.status == status).count();
            self.runs_total
                .with_label_values(&[org, label])
                .inc_by(u64::try_from(n).unwrap_or(0));
        }
        let rate = health.failure_rate;
        self.failure_ratio.with_label_values(&[org]).set(if rate.runs == 0 {
            0.0
        } else {
            f64::from(rate.failed) / f64::from(rate.runs)
        });
        self.consecutive_failed
            .with_label_values(&[org])
            .set(i64::from(health.consecutive_failed_runs));
        if let Some(reconcile) = store.latest_finished_run(org, RunKind::Reconcile).await?
            && let Some(divergence) = reconcile.metrics.divergence
        {
            self.divergence_records
                .with_label_values(&[org])
                .set(int(divergence.records_differing));
            self.divergence_fields
                .with_label_values(&[org])
                .set(int(divergence.fields_differing));
        }
        self.health_status.with_label_values(&[org]).set(match health.status {
            Status::Healthy => 0,
            Status::Degraded => 1,
            Status::Unhealthy => 2,
        });
        for (severity, label) in [(Severity::Warning, "warning"), (Severity::Critical, "critical")] {
            let n = health.open_alerts.iter().filter(|a| a.severity == severity).count();
            self.alerts_open.with_label_values(&[org, label]).set(int(n as u64));
        }
        self.cache_entries
            .with_label_values(&[org])
            .set(int(health.cache.entries));
        if let Some(age) = health.cache.age_seconds {
            self.cache_age.with_label_values(&[org]).set(age as f64);
        }
        for state in ["retrying", "dead", "dismissed"] {
            let n = health.failed_records.get(state).copied().unwrap_or(0);
            self.failed_records.with_label_values(&[org, state]).set(int(n));
        }
        let notifications = store.notification_counts(org).await?;
        for state in ["pending", "sent", "failed"] {
            let n = notifications.get(state).copied().unwrap_or(0);
            self.notifications.with_label_values(&[org, state]).set(int(n));
        }
        self.mismatches
            .with_label_values(&[org])
            .set(int(health.mismatch_count));
        // Only when postings are exported: an organisation without the accounting export has no such series.
        if let Some(postings) = &health.postings {
            let m = &postings.metrics;
            for (outcome, n) in [("exported", m.exported), ("failed", m.failed), ("held", m.held)] {
                self.postings_last_run.with_label_values(&[org, outcome]).set(int(n));
            }
            for (kind, n) in [("missing", m.missing), ("differing", m.differing)] {
                self.postings_unreconciled.with_label_values(&[org, kind]).set(int(n));
            }
            self.postings_last_run_timestamp
                .with_label_values(&[org])
                .set(unix(postings.started_at));
            self.postings_last_run_failed
                .with_label_values(&[org])
                .set(i64::from(postings.status == RunStatus::Failed));
        }
        Ok(())
    }
}

fn int_gauge(name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels).map_err(metrics_error)
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
    GaugeVec::new(Opts::new(name, help), labels).map_err(metrics_error)
}

fn metrics_error(e: prometheus::Error) -> Error {
    Error::Metrics(e.to_string())
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unix(at: chrono::DateTime<chrono::Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}
