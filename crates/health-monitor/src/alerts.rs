//! The alert rules: from a health model to the alerts that should be open, then persisting them (one per cause,
//! raised once, resolved when the cause is gone) and queueing the admin notifications.

use chrono::{DateTime, Utc};
use integration_config::{HealthSettings, Language, OrganisationConfig};
use sync_store::{Notification, Severity};
use tracing::{info, warn};

use crate::error::Result;
use crate::health::{Authentication, HealthMonitor, OrganisationHealth, Probe, human};
use crate::texts;

/// The causes the monitor owns: it raises and resolves these. `schema-drift:<table>` is raised and resolved by the
/// engine, which sees the metadata; the monitor reports it.
pub const MANAGED_CAUSES: [&str; 6] = [
    "sync-failing",
    "auth-expired",
    "secret-expiry",
    "delta-token-expiring",
    "certification-mismatch",
    "postings-unreconciled",
];

/// An alert that should be open now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The deduplication cause, one of [`MANAGED_CAUSES`].
    pub cause: &'static str,
    /// How serious.
    pub severity: Severity,
    /// What happened and what to do.
    pub message: String,
    /// Notify again when this changes while the alert stays open (the secret-expiry threshold: 30, 14, 7, 1).
    pub stage: Option<String>,
}

/// What an evaluation found and changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The health model.
    pub health: OrganisationHealth,
    /// Causes raised now (new alerts, or a new stage of an open one).
    pub raised: Vec<String>,
    /// Causes resolved now.
    pub resolved: Vec<String>,
    /// Notifications queued.
    pub queued: u32,
}

impl HealthMonitor {
    /// Checks an organisation (as [`HealthMonitor::check`]), then opens, updates or resolves its alerts to match
    /// and queues admin notifications for what is new. Run after every sync run and on a timer; running it twice
    /// changes nothing the second time. Writes only to the sync store, never to Dynamics.
    pub async fn evaluate(&self, organisation: &OrganisationConfig, probe: Probe<'_>) -> Result<Evaluation> {
        let health = self.check(organisation, probe).await?;
        let now = health.checked_at;
        let org = organisation.id.as_str();
        let wanted = conditions(&health, &self.settings);
        let mut raised = Vec::new();
        let mut resolved = Vec::new();
        let mut queued = 0;
        for condition in &wanted {
            let kind = condition.cause;
            let (alert, new) = self
                .store
                .raise_alert(org, condition.cause, kind, condition.severity, &condition.message, now)
                .await?;
            let stage = condition.stage.as_deref().unwrap_or("raised");
            let key = format!("alert:{}:{stage}", alert.id);
            let fresh = self
                .notify_admins(organisation, &key, now, |language| {
                    texts::alert_raised(language, &organisation.name, condition.severity, &condition.message)
                })
                .await?;
            if new {
                warn!(org = %org, cause = condition.cause, severity = ?condition.severity, "alert raised");
            }
            if new || fresh > 0 {
                raised.push(condition.cause.to_owned());
            }
            queued += fresh;
        }
        let open = self.store.active_alerts(org).await?;
        for cause in MANAGED_CAUSES {
            if wanted.iter().any(|c| c.cause == cause) {
                continue;
            }
            let Some(alert) = open.iter().find(|a| a.cause == cause) else {
                continue;
            };
            if self.store.resolve_alert(org, cause, now).await? {
                info!(org = %org, cause, "alert resolved: its cause is gone");
                resolved.push(cause.to_owned());
                let key = format!("alert:{}:resolved", alert.id);
                queued += self
                    .notify_admins(organisation, &key, now, |language| {
                        texts::alert_resolved(language, &organisation.name, &alert.message)
                    })
                    .await?;
            }
        }
        // The health model shows the alerts as they are now.
        let mut health = health;
        health.open_alerts = self
            .store
            .active_alerts(org)
            .await?
            .iter()
            .map(crate::health::alert_view)
            .collect();
        crate::health::apply_verdict(&mut health, &self.settings, self.stale_after);
        Ok(Evaluation {
            health,
            raised,
            resolved,
            queued,
        })
    }

    /// Queues one notification per admin email and one for the webhook, each deduplicated by `key`. Returns how
    /// many were new.
    async fn notify_admins(
        &self,
        organisation: &OrganisationConfig,
        key: &str,
        now: DateTime<Utc>,
        message: impl Fn(Language) -> texts::Message,
    ) -> Result<u32> {
        let text = message(organisation.language);
        let mut recipients: Vec<(&str, &str)> = self.admin_emails.iter().map(|e| ("email", e.as_str())).collect();
        if self.webhook {
            recipients.push(("webhook", "webhook"));
        }
        let mut queued = 0;
        for (channel, recipient) in recipients {
            let notification = Notification {
                id: uuid::Uuid::new_v4().to_string(),
                organisation_id: organisation.id.clone(),
                dedupe_key: format!("{key}:{channel}:{recipient}"),
                channel: channel.to_owned(),
                recipient: recipient.to_owned(),
                subject: text.subject.clone(),
                body: text.body.clone(),
                created_at: now,
                attempts: 0,
                next_attempt_at: now,
                sent_at: None,
                last_error: None,
            };
            if self.store.enqueue_notification(&notification).await? {
                queued += 1;
            }
        }
        Ok(queued)
    }
}

/// The alerts a health model calls for. Pure, so every rule is tested with plain values.
pub(crate) fn conditions(health: &OrganisationHealth, settings: &HealthSettings) -> Vec<Condition> {
    let mut wanted = Vec::new();
    let failing = health.consecutive_failed_runs;
    if failing >= settings.failed_runs_alert.max(1) {
        let error = health
            .last_run
            .as_ref()
            .and_then(|r| r.error.as_deref())
            .unwrap_or("unknown");
        wanted.push(Condition {
            cause: "sync-failing",
            severity: Severity::Critical,
            message: format!(
                "The last {failing} sync runs failed. Latest error: {error}. Nothing is lost: the next successful \
                 run continues from where the last one stopped. See the runbook, \"sync failing\"."
            ),
            stage: None,
        });
    }
    if let Authentication::Failed {
        aadsts: Some(7_000_222),
        message,
    } = &health.authentication
    {
        // The code once: the message usually names it already.
        let code = if message.contains("AADSTS7000222") {
            ""
        } else {
            " (AADSTS7000222, expired)"
        };
        wanted.push(Condition {
            cause: "auth-expired",
            severity: Severity::Critical,
            message: format!(
                "Azure AD refuses the client secret{code}: {message}. Until a new secret is set no sync runs. See \
                 the runbook, \"rotating the client secret\"."
            ),
            stage: None,
        });
    }
    if let (Some(days), Some(date)) = (health.secret_days_left, health.secret_expires_on)
        && let Some(stage) = secret_stage(days, &settings.secret_expiry_warn_days)
    {
        let (severity, when) = if days <= 0 {
            (Severity::Critical, format!("expired on {date}"))
        } else if days <= 7 {
            (Severity::Critical, format!("expires on {date}, in {days} days"))
        } else {
            (Severity::Warning, format!("expires on {date}, in {days} days"))
        };
        wanted.push(Condition {
            cause: "secret-expiry",
            severity,
            message: format!(
                "The Dynamics client secret {when}. Ask HLF IT for a new secret, set it in the credential \
                 variables and update `client_secret_expires_on`. See the runbook, \"rotating the client secret\"."
            ),
            stage: Some(stage),
        });
    }
    // Past half its life while runs fail: time to act before a full resync becomes necessary.
    if let Some(token) = health.delta_token
        && failing > 0
        && token.expires_in_seconds <= token.age_seconds
    {
        let severity = if token.expires_in_seconds <= 86_400 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        wanted.push(Condition {
            cause: "delta-token-expiring",
            severity,
            message: format!(
                "Runs keep failing and the change-tracking token was last renewed {} ago; Dynamics forgets it in {}. \
                 After that the next run reads the whole contact table again (slower, nothing is lost). Fix the \
                 failing runs first; see the runbook, \"a week of failed runs\".",
                human(token.age_seconds),
                human(token.expires_in_seconds)
            ),
            stage: None,
        });
    }
    if health.mismatch_count > 0 {
        let shown = health.mismatches.iter().filter(|m| m.shown_wrongly).count();
        // Named by app id: the alert is printed and logged, and member numbers are personal data.
        let members: Vec<&str> = health.mismatches.iter().map(|m| m.mentor_id.as_str()).collect();
        let more = health.mismatch_count.saturating_sub(members.len() as u64);
        wanted.push(Condition {
            cause: "certification-mismatch",
            severity: if shown > 0 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            message: format!(
                "{} a certification status or public-site flag in Dynamics that differs from the app after the last \
                 run{}: app ids {}{}. Each is in the failed-record queue or waits for the next run; see the \
                 dashboard's failed records.",
                if health.mismatch_count == 1 {
                    "1 mentor has".to_owned()
                } else {
                    format!("{} mentors have", health.mismatch_count)
                },
                match shown {
                    0 => String::new(),
                    1 if health.mismatch_count == 1 => {
                        " (shown on the public site although they must not be)".to_owned()
                    }
                    n => format!(" ({n} of them shown on the public site although they must not be)"),
                },
                members.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            stage: None,
        });
    }
    if let Some(m) = health.postings.as_ref().and_then(|p| p.reconciled.as_ref())
        && m.unreconciled() > 0
    {
        let more = m.unreconciled().saturating_sub(m.sample.len() as u64);
        wanted.push(Condition {
            cause: "postings-unreconciled",
            severity: Severity::Warning,
            message: format!(
                "The last accounting export found {} exported postings that Dynamics no longer holds as the app \
                 does ({} missing, {} with another amount): posting ids {}{}. Someone deleted or edited them in \
                 Dynamics; the app keeps them as exported. See the runbook, \"postings unreconciled\".",
                m.unreconciled(),
                m.missing,
                m.differing,
                m.sample.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            stage: None,
        });
    }
    wanted
}

/// The threshold reached with `days` left: the smallest configured warning day at or above `days`, or `expired`.
/// `None` while no threshold is reached.
pub(crate) fn secret_stage(days: i64, warn_days: &[u32]) -> Option<String> {
    if days <= 0 {
        return Some("expired".to_owned());
    }
    warn_days
        .iter()
        .copied()
        .filter(|&d| i64::from(d) >= days)
        .min()
        .map(|d| format!("{d}-days"))
}
