//! Delivery of the notification outbox: coordinator emails queued by the engine and admin alerts queued by the
//! monitor, by SMTP (lettre) and a JSON webhook, with retries and backoff.
//!
//! Each notification is claimed before it is sent, so two deliverers never send it at the same time. A deliverer
//! that dies between sending and recording the delivery leaves the claim to expire and the notification is sent
//! again: delivery is at least once, and each message carries its notification id (`Message-ID` for email,
//! `Idempotency-Key` for the webhook) so a receiver can recognise a repeat.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use integration_config::{EmailSettings, ExposeSecret, NotificationSettings, SmtpTls, WebhookSettings};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Serialize;
use sha2::Sha256;
use sync_engine::Clock;
use sync_store::{Notification, Store};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Notifications taken per delivery round.
const ROUND: u32 = 100;

/// How long a claim lasts: longer than any one delivery attempt can take.
const CLAIM: Duration = Duration::from_secs(5 * 60);

/// The wait after the first failed attempt; it doubles with each attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(60);

/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// Sends due notifications from the outbox.
#[derive(Clone)]
pub struct Deliverer {
    store: Store,
    email: Option<EmailChannel>,
    webhook: Option<WebhookChannel>,
    max_attempts: u32,
    clock: Arc<dyn Clock>,
}

/// What one delivery round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// Delivered.
    pub sent: u32,
    /// Failed this time; tried again later.
    pub retrying: u32,
    /// Failed for good (a permanent refusal or too many attempts); kept in the outbox as `failed`.
    pub given_up: u32,
    /// Left waiting because their channel is not configured; sent once it is.
    pub no_channel: u32,
}

#[derive(Clone)]
struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    settings: EmailSettings,
}

#[derive(Clone)]
struct WebhookChannel {
    http: reqwest::Client,
    settings: WebhookSettings,
}

/// The webhook's JSON body.
#[derive(Serialize)]
struct WebhookBody<'a> {
    id: &'a str,
    organisation: &'a str,
    subject: &'a str,
    body: &'a str,
    created_at: DateTime<Utc>,
}

/// Why one attempt failed.
enum Failure {
    /// Worth trying again later.
    Transient(String),
    /// Will never work as it is (an invalid address, a permanent SMTP refusal, a 4xx from the webhook).
    Permanent(String),
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("email", &self.email.is_some())
            .field("webhook", &self.webhook.is_some())
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Whether this process has already warned that notifications wait for an unconfigured channel.
static WARNED_NO_CHANNEL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Deliverer {
    /// A deliverer with the channels in `settings`. Fails when the SMTP settings cannot make a transport (the
    /// message says which setting).
    pub fn new(settings: &NotificationSettings, store: Store, clock: Arc<dyn Clock>) -> Result<Self> {
        let email = settings.email.as_ref().map(email_channel).transpose()?;
        let webhook = settings
            .webhook
            .as_ref()
            .map(|webhook| {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    // A redirect would re-send member data to wherever the answer points: not followed.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| Error::Channel {
                        channel: "webhook",
                        reason: e.without_url().to_string(),
                    })?;
                Ok::<_, Error>(WebhookChannel {
                    http,
                    settings: webhook.clone(),
                })
            })
            .transpose()?;
        Ok(Deliverer {
            store,
            email,
            webhook,
            max_attempts: settings.max_delivery_attempts.max(1),
            clock,
        })
    }

    /// Sends every notification that is due now, oldest first, in rounds of 100 until none is left. Notifications
    /// whose channel is not configured stay pending; the process says so once, at WARN.
    pub async fn deliver_due(&self) -> Result<DeliveryReport> {
        let mut report = DeliveryReport::default();
        let mut seen = std::collections::HashSet::new();
        loop {
            let now = self.clock.now();
            let due = self.store.due_notifications(now, ROUND).await?;
            let fresh: Vec<Notification> = due.into_iter().filter(|n| seen.insert(n.id.clone())).collect();
            if fresh.is_empty() {
                if report.no_channel > 0 && !WARNED_NO_CHANNEL.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    // Once per process: a daemon delivers every few minutes, and the cause does not change until
                    // the configuration does (which needs a restart).
                    warn!(
                        waiting = report.no_channel,
                        "notifications wait because their channel is not configured; configure [notifications] \
                         (e-mail or webhook) and restart, and they are sent"
                    );
                }
                return Ok(report);
            }
            for notification in fresh {
                self.deliver_one(&notification, &mut report).await?;
            }
        }
    }

    async fn deliver_one(&self, notification: &Notification, report: &mut DeliveryReport) -> Result<()> {
        let now = self.clock.now();
        let configured = match notification.channel.as_str() {
            "email" => self.email.is_some(),
            "webhook" => self.webhook.is_some(),
            _ => false,
        };
        if !configured {
            // Left pending, not counted as an attempt: it goes out once the channel is configured.
            report.no_channel += 1;
            tracing::debug!(
                notification = %notification.id,
                channel = %notification.channel,
                "notification waits: its channel is not configured (see [notifications] in the configuration)"
            );
            return Ok(());
        }
        if !self
            .store
            .claim_notification(&notification.id, now, now + claim())
            .await?
        {
            // Another deliverer has it.
            return Ok(());
        }
        let outcome = match notification.channel.as_str() {
            "email" => self.send_email(notification).await,
            _ => self.send_webhook(notification).await,
        };
        let now = self.clock.now();
        match outcome {
            Ok(()) => {
                self.store.mark_notification_sent(&notification.id, now).await?;
                info!(notification = %notification.id, channel = %notification.channel, "notification delivered");
                report.sent += 1;
            }
            Err(failure) => {
                let attempts = notification.attempts + 1;
                let (reason, retry_at) = match failure {
                    Failure::Permanent(reason) => (reason, None),
                    Failure::Transient(reason) if attempts >= self.max_attempts => (reason, None),
                    Failure::Transient(reason) => (reason, Some(now + backoff(attempts))),
                };
                self.store
                    .mark_notification_failed(&notification.id, &reason, retry_at)
                    .await?;
                match retry_at {
                    Some(at) => {
                        warn!(notification = %notification.id, channel = %notification.channel, attempts,
                              retry_at = %at, reason = %reason, "notification not delivered; will retry");
                        report.retrying += 1;
                    }
                    None => {
                        warn!(notification = %notification.id, channel = %notification.channel, attempts,
                              reason = %reason, "notification given up; it stays in the outbox as failed");
                        report.given_up += 1;
                    }
                }
            }
        }
        Ok(())
    }

    async fn send_email(&self, notification: &Notification) -> std::result::Result<(), Failure> {
        let Some(channel) = &self.email else {
            return Err(Failure::Transient("no SMTP server configured".to_owned()));
        };
        let to: Mailbox = notification
            .recipient
            .parse()
            .map_err(|_| Failure::Permanent("the recipient is not a valid email address".to_owned()))?;
        let message = lettre::Message::builder()
            .from(channel.from.clone())
            .to(to)
            .subject(notification.subject.clone())
            .message_id(Some(format!("<{}@hlf-dynamics-sync>", notification.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(notification.body.clone())
            .map_err(|e| Failure::Permanent(format!("cannot build the email: {e}")))?;
        // A password from a file is read again for each email, so a rotated one is used without a restart.
        let rotated = match &channel.settings.login {
            Some((user, password)) if password.path().is_some() => {
                let password = password.current().map_err(|e| Failure::Transient(e.to_string()))?;
                let login = Credentials::new(user.clone(), password.expose_secret().to_owned());
                Some(smtp_transport(&channel.settings, Some(login)).map_err(|e| Failure::Transient(e.to_string()))?)
            }
            _ => None,
        };
        match rotated.as_ref().unwrap_or(&channel.transport).send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(format!("the SMTP server refused the email: {e}"))),
            Err(e) => Err(Failure::Transient(format!("SMTP delivery failed: {e}"))),
        }
    }

    async fn send_webhook(&self, notification: &Notification) -> std::result::Result<(), Failure> {
        let Some(channel) = &self.webhook else {
            return Err(Failure::Transient("no webhook configured".to_owned()));
        };
        let body = serde_json::to_vec(&WebhookBody {
            id: &notification.id,
            organisation: &notification.organisation_id,
            subject: &notification.subject,
            body: &notification.body,
            created_at: notification.created_at,
        })
        .map_err(|e| Failure::Permanent(format!("cannot encode the webhook body: {e}")))?;
        let mut request = channel
            .http
            .post(channel.settings.url.clone())
            .header("content-type", "application/json")
            .header("idempotency-key", &notification.id);
        if let Some(secret) = &channel.settings.secret {
            // Read again for each notification when it comes from a file, so a rotated secret signs the next one.
            let secret = secret.current().map_err(|e| Failure::Transient(e.to_string()))?;
            // The time is signed with the body, so a receiver can refuse a replayed call (README: Webhook).
            let timestamp = self.clock.now().timestamp().to_string();
            request = request.header("x-hlf-timestamp", &timestamp).header(
                "x-hlf-signature",
                sign(secret.expose_secret().as_bytes(), &timestamp, &body),
            );
        }
        // Errors drop the URL: a webhook URL may carry a token in its query.
        match request.body(body).send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) if answer.status().is_redirection() => Err(Failure::Permanent(format!(
                "the webhook answered {} (a redirect, not followed); set notifications.webhook.url to the final address",
                answer.status()
            ))),
            Ok(answer) => {
                let status = answer.status();
                let reason = format!("the webhook answered {status}");
                if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                    Err(Failure::Permanent(reason))
                } else {
                    Err(Failure::Transient(reason))
                }
            }
            Err(e) => Err(Failure::Transient(format!(
                "the webhook could not be reached: {}",
                e.without_url()
            ))),
        }
    }
}

fn email_channel(settings: &EmailSettings) -> Result<EmailChannel> {
    let from: Mailbox = settings.from.parse().map_err(|_| Error::Channel {
        channel: "email",
        reason: "`notifications.email.from` is not a valid email address".to_owned(),
    })?;
    let login = settings
        .login
        .as_ref()
        .map(|(user, password)| Credentials::new(user.clone(), password.loaded().expose_secret().to_owned()));
    Ok(EmailChannel {
        transport: smtp_transport(settings, login)?,
        from,
        settings: settings.clone(),
    })
}

/// The SMTP transport for `settings`, logging in with `login` when given.
fn smtp_transport(settings: &EmailSettings, login: Option<Credentials>) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    let invalid = |reason: String| Error::Channel {
        channel: "email",
        reason,
    };
    let host = settings.smtp_host.as_str();
    let builder = match settings.tls {
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| invalid(format!("cannot set up STARTTLS to {host}: {e}")))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| invalid(format!("cannot set up TLS to {host}: {e}")))?,
        // Configuration accepts plain text only for a loopback relay.
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
    };
    let mut builder = builder.port(settings.smtp_port).timeout(Some(Duration::from_secs(30)));
    if let Some(login) = login {
        builder = builder.credentials(login);
    }
    Ok(builder.build())
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as Stripe-style receivers check a shared secret: the
/// timestamp (Unix seconds, also sent as `X-HLF-Timestamp`) is signed with the body, so a captured call cannot be
/// replayed later.
fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn claim() -> chrono::Duration {
    chrono::Duration::from_std(CLAIM).unwrap_or(chrono::Duration::MAX)
}

/// The wait after `attempts` failed attempts: 1 min, 2 min, 4 min ... up to an hour.
fn backoff(attempts: u32) -> chrono::Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    let wait = FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF);
    chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1).num_seconds(), 60);
        assert_eq!(backoff(2).num_seconds(), 120);
        assert_eq!(backoff(3).num_seconds(), 240);
        assert_eq!(backoff(7).num_seconds(), 3600);
        assert_eq!(backoff(40).num_seconds(), 3600);
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        // RFC 4231 test case 7, whose data has a dot to split at: "<timestamp>.<body>".
        let key = [0xaa_u8; 131];
        assert_eq!(
            sign(
                &key,
                "This is a test using a larger than block-size key and a larger than block-size data",
                b" The key needs to be hashed before being used by the HMAC algorithm."
            ),
            "sha256=9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        );
    }
}
