//! The status of an organisation on the overview. The health monitor will give the full health model; until then
//! this one function decides, from the last run and the active alerts only, so it can be swapped in one place.

use serde::Serialize;
use sync_store::{Alert, AlertState, RunRecord, RunStatus, Severity};

/// How an organisation's sync is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthLevel {
    /// Working.
    Healthy,
    /// Working, with something to look at.
    Degraded,
    /// Not working; someone must act.
    Unhealthy,
}

/// The status shown for one organisation, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrganisationStatus {
    /// Healthy, degraded or unhealthy.
    pub level: HealthLevel,
    /// Why, in a sentence an admin can act on.
    pub reason: String,
}

impl HealthLevel {
    /// The lower-case name (`healthy`, `degraded`, `unhealthy`).
    pub fn as_str(self) -> &'static str {
        match self {
            HealthLevel::Healthy => "healthy",
            HealthLevel::Degraded => "degraded",
            HealthLevel::Unhealthy => "unhealthy",
        }
    }
}

/// The status from the latest sync run (`None` when none has run) and the organisation's active alerts. The worst
/// finding wins: a failed run or an open critical alert is unhealthy; a run with failed records, a run that has not
/// finished, no run at all, or any other active alert is degraded.
pub fn organisation_status(last_run: Option<&RunRecord>, alerts: &[Alert]) -> OrganisationStatus {
    let mut findings: Vec<(HealthLevel, String)> = Vec::new();
    match last_run {
        None => findings.push((HealthLevel::Degraded, "no sync has run yet".to_owned())),
        Some(run) => match run.status {
            RunStatus::Succeeded => findings.push((HealthLevel::Healthy, "the last run succeeded".to_owned())),
            RunStatus::Partial => findings.push((
                HealthLevel::Degraded,
                match &run.error {
                    Some(error) => format!("the last run completed with problems: {error}"),
                    None => format!(
                        "the last run completed with {} failed records",
                        run.metrics.pull.failed + run.metrics.push.failed
                    ),
                },
            )),
            RunStatus::Running => {
                findings.push((HealthLevel::Degraded, "a run is in progress or was killed".to_owned()))
            }
            RunStatus::Failed => findings.push((
                HealthLevel::Unhealthy,
                format!(
                    "the last run failed: {}",
                    run.error.as_deref().unwrap_or("no reason recorded")
                ),
            )),
        },
    }
    for alert in alerts.iter().filter(|a| a.state != AlertState::Resolved) {
        let level = match (alert.severity, alert.state) {
            (Severity::Critical, AlertState::Open) => HealthLevel::Unhealthy,
            _ => HealthLevel::Degraded,
        };
        findings.push((level, format!("alert {}: {}", alert.cause, alert.message)));
    }
    // The first of the worst findings: the run comes before alerts of the same level.
    let worst = findings
        .iter()
        .map(|(level, _)| *level)
        .max()
        .unwrap_or(HealthLevel::Healthy);
    let reason = findings
        .into_iter()
        .find(|(level, _)| *level == worst)
        .map(|(_, reason)| reason)
        .unwrap_or_default();
    OrganisationStatus { level: worst, reason }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use sync_store::{RunKind, RunMetrics};

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
    }

    fn run(status: RunStatus, error: Option<&str>, failed: u64) -> RunRecord {
        let mut metrics = RunMetrics::default();
        metrics.push.failed = failed;
        RunRecord {
            id: "r".into(),
            organisation_id: "hlf".into(),
            kind: RunKind::Sync,
            started_at: at(),
            finished_at: Some(at()),
            status,
            error: error.map(str::to_owned),
            metrics,
        }
    }

    fn alert(severity: Severity, state: AlertState) -> Alert {
        Alert {
            id: "a".into(),
            organisation_id: "hlf".into(),
            cause: "schema-drift:contact".into(),
            kind: "schema-drift".into(),
            severity,
            message: "a mapped column is missing".into(),
            state,
            raised_at: at(),
            updated_at: at(),
            resolved_at: None,
            occurrences: 1,
        }
    }

    #[track_caller]
    fn check(last_run: Option<RunRecord>, alerts: &[Alert], level: HealthLevel, reason: &str) {
        let status = organisation_status(last_run.as_ref(), alerts);
        assert_eq!((status.level, status.reason.as_str()), (level, reason));
    }

    #[test]
    fn the_worst_of_the_last_run_and_the_active_alerts_wins() {
        use HealthLevel::*;
        check(None, &[], Degraded, "no sync has run yet");
        check(
            Some(run(RunStatus::Succeeded, None, 0)),
            &[],
            Healthy,
            "the last run succeeded",
        );
        check(
            Some(run(RunStatus::Partial, None, 2)),
            &[],
            Degraded,
            "the last run completed with 2 failed records",
        );
        check(
            Some(run(RunStatus::Failed, Some("authentication failed"), 0)),
            &[alert(Severity::Warning, AlertState::Open)],
            Unhealthy,
            "the last run failed: authentication failed",
        );
        check(
            Some(run(RunStatus::Succeeded, None, 0)),
            &[alert(Severity::Critical, AlertState::Open)],
            Unhealthy,
            "alert schema-drift:contact: a mapped column is missing",
        );
        check(
            Some(run(RunStatus::Succeeded, None, 0)),
            &[alert(Severity::Critical, AlertState::Acknowledged)],
            Degraded,
            "alert schema-drift:contact: a mapped column is missing",
        );
        check(
            Some(run(RunStatus::Succeeded, None, 0)),
            &[alert(Severity::Critical, AlertState::Resolved)],
            Healthy,
            "the last run succeeded",
        );
    }
}
