//! After the runs: judge each organisation's health, bring its alerts in line, and send due notifications. A
//! problem here is logged and never fails the run that preceded it.

use std::sync::Arc;

use health_monitor::{Deliverer, HealthMonitor, Probe, Status};
use integration_config::{ExposeSecret, IntegrationConfig};
use sync_engine::SystemClock;
use sync_store::Store;

/// Evaluates the health of `organisations` (ids; all when empty), prints one line each, then delivers the outbox.
pub(crate) async fn after_runs(config: &IntegrationConfig, organisations: &[String]) {
    let store = match Store::connect(config.store.url.expose_secret()).await {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(error = %e, "health evaluation skipped: the sync store cannot be opened");
            return;
        }
    };
    let monitor = HealthMonitor::new(config, store.clone(), Arc::new(store.clone()), Arc::new(SystemClock));
    for organisation in &config.organisations {
        if !organisations.is_empty() && !organisations.contains(&organisation.id) {
            continue;
        }
        // The run itself proved (or disproved) connectivity: no extra WhoAmI.
        match monitor.evaluate(organisation, Probe::Skip).await {
            Ok(evaluation) => {
                let health = &evaluation.health;
                let status = match health.status {
                    Status::Healthy => "healthy",
                    Status::Degraded => "degraded",
                    Status::Unhealthy => "unhealthy",
                };
                match health.reasons.first() {
                    Some(reason) => println!("health of organisation {}: {status} ({reason})", organisation.id),
                    None => println!("health of organisation {}: {status}", organisation.id),
                }
                for cause in &evaluation.raised {
                    println!("  alert raised: {cause}");
                }
                for cause in &evaluation.resolved {
                    println!("  alert resolved: {cause}");
                }
            }
            Err(e) => tracing::warn!(org = %organisation.id, error = %e, "health evaluation failed"),
        }
    }
    deliver(config, &store).await;
    purge(config, &store).await;
}

/// Retention: deletes what is older than `retention.days` (every kind of row `sync_store::RETENTION_RULES` lists).
/// After every `run` and daemon round; a failure is logged and tried again next time.
pub(crate) async fn purge(config: &IntegrationConfig, store: &Store) {
    let Some(cutoff) = retention_cutoff(config) else {
        return;
    };
    match store.purge(cutoff).await {
        Ok(report) if report.total() > 0 => tracing::info!(
            purged = report.total(),
            older_than = %cutoff.format("%Y-%m-%d %H:%M UTC"),
            "retention: deleted {report}"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "retention purge failed; it is tried again after the next run"),
    }
}

/// The moment before which rows are old enough to go.
pub(crate) fn retention_cutoff(config: &IntegrationConfig) -> Option<chrono::DateTime<chrono::Utc>> {
    let period = chrono::Duration::from_std(config.retention.period).ok()?;
    chrono::Utc::now().checked_sub_signed(period)
}

/// Sends the notifications that are due now.
pub(crate) async fn deliver(config: &IntegrationConfig, store: &Store) {
    let deliverer = match Deliverer::new(&config.notifications, store.clone(), Arc::new(SystemClock)) {
        Ok(deliverer) => deliverer,
        Err(e) => {
            tracing::error!(error = %e, "notifications cannot be sent; they stay queued");
            return;
        }
    };
    match deliverer.deliver_due().await {
        Ok(report) if report.sent + report.retrying + report.given_up > 0 => tracing::info!(
            sent = report.sent,
            retrying = report.retrying,
            given_up = report.given_up,
            "notifications delivered"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "notification delivery failed; it is retried on the next round"),
    }
}
