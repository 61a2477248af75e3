//! The outbox delivered to a real SMTP server on loopback and a wiremock webhook: retries after a temporary
//! failure, permanent refusals given up and kept, a missing channel leaves notifications waiting, and two
//! deliverers at once send each notification once.

use std::sync::Arc;

use health_monitor::{Deliverer, DeliveryReport};
use sync_engine::Clock;
use sync_store::Notification;
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::smtp::SmtpServer;
use crate::{Fixture, WEBHOOK_SECRET, config, each_database};

fn email_config(server: &SmtpServer, extra: &str) -> String {
    format!(
        "[notifications]\nadmin_emails = [\"drift@hlf.example\"]\n{extra}\n[notifications.email]\nsmtp_host = \
         \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"integrasjon@hlf.example\"\n",
        server.addr.port()
    )
}

async fn queue(f: &Fixture, key: &str, channel: &str, recipient: &str) -> String {
    let now = f.clock.now();
    let id = uuid::Uuid::new_v4().to_string();
    let queued = f
        .store
        .enqueue_notification(&Notification {
            id: id.clone(),
            organisation_id: "hlf".into(),
            dedupe_key: key.into(),
            channel: channel.into(),
            recipient: recipient.into(),
            subject: format!("Likepersonsertifisering {key}"),
            body: "Hei,\n\nSertifiseringen ble ikke oppdatert.\n".into(),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            sent_at: None,
            last_error: None,
        })
        .await
        .unwrap();
    assert!(queued);
    id
}

fn deliverer(f: &Fixture) -> Deliverer {
    Deliverer::new(&f.config.notifications, f.store.clone(), f.clock.clone()).unwrap()
}

async fn state_of(f: &Fixture, id: &str) -> Notification {
    f.store
        .notifications("hlf", 1000)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == id)
        .unwrap()
}

#[tokio::test]
async fn email_refused_for_now_is_retried_later_and_sent_once() {
    each_database(|db| async move {
        let smtp = SmtpServer::start().await;
        let f = Fixture::new(&db, config(&email_config(&smtp, ""), "")).await;
        let first = queue(&f, "cert-failed:1002", "email", "koordinator@hlf.example").await;
        let second = queue(&f, "cert-failed:1003", "email", "koordinator@hlf.example").await;
        smtp.refuse_next("451 4.3.0 mailbox busy, try later");
        let d = deliverer(&f);
        let report = d.deliver_due().await.unwrap();
        assert_eq!(
            report,
            DeliveryReport {
                sent: 1,
                retrying: 1,
                ..DeliveryReport::default()
            }
        );
        // Delivery order is by due time, then id: either may have met the refusal.
        let (a, b) = (state_of(&f, &first).await, state_of(&f, &second).await);
        let (failed, sent) = if a.sent_at.is_none() { (a, b) } else { (b, a) };
        assert_eq!((failed.attempts, failed.sent_at), (1, None));
        assert!(
            failed.last_error.as_deref().unwrap().contains("mailbox busy"),
            "{failed:?}"
        );
        assert_eq!(sent.attempts, 1);

        // Not due yet: nothing happens; a minute later it goes.
        assert_eq!(d.deliver_due().await.unwrap(), DeliveryReport::default());
        f.clock.advance(chrono::Duration::seconds(61));
        assert_eq!(d.deliver_due().await.unwrap().sent, 1);
        assert_eq!(
            d.deliver_due().await.unwrap(),
            DeliveryReport::default(),
            "never sent twice"
        );

        let received = smtp.received();
        assert_eq!(received.len(), 2);
        for message in &received {
            assert_eq!(message.from, "<integrasjon@hlf.example>");
            assert_eq!(message.to, vec!["<koordinator@hlf.example>"]);
        }
        for id in [&first, &second] {
            assert!(
                received
                    .iter()
                    .any(|m| m.data.contains(&format!("<{id}@hlf-dynamics-sync>")))
            );
        }
        assert!(
            received
                .iter()
                .any(|m| m.data.contains("Subject: Likepersonsertifisering cert-failed:1003"))
        );
        assert_eq!(state_of(&f, &failed.id).await.attempts, 2);
        db
    })
    .await;
}

#[tokio::test]
async fn permanent_refusal_and_too_many_attempts_are_given_up_and_kept() {
    each_database(|db| async move {
        let smtp = SmtpServer::start().await;
        let f = Fixture::new(&db, config(&email_config(&smtp, "max_delivery_attempts = 2"), "")).await;
        let refused = queue(&f, "a", "email", "koordinator@hlf.example").await;
        smtp.refuse_next("550 5.1.1 no such user");
        let d = deliverer(&f);
        assert_eq!(d.deliver_due().await.unwrap().given_up, 1);
        let kept = state_of(&f, &refused).await;
        assert!(kept.sent_at.is_none() && kept.last_error.as_deref().unwrap().contains("no such user"));
        assert_eq!(
            f.store.notification_counts("hlf").await.unwrap().get("failed"),
            Some(&1)
        );

        let busy = queue(&f, "b", "email", "koordinator@hlf.example").await;
        smtp.refuse_next("451 4.3.0 busy");
        smtp.refuse_next("451 4.3.0 still busy");
        assert_eq!(d.deliver_due().await.unwrap().retrying, 1);
        f.clock.advance(chrono::Duration::minutes(2));
        assert_eq!(d.deliver_due().await.unwrap().given_up, 1, "the second of two attempts");
        assert_eq!(state_of(&f, &busy).await.attempts, 2);

        let invalid = queue(&f, "c", "email", "not an address").await;
        assert_eq!(d.deliver_due().await.unwrap().given_up, 1);
        assert!(
            state_of(&f, &invalid)
                .await
                .last_error
                .unwrap()
                .contains("not a valid email address")
        );
        assert!(smtp.received().is_empty());
        db
    })
    .await;
}

#[tokio::test]
async fn webhook_gets_signed_json_retries_after_503_and_succeeds() {
    each_database(|db| async move {
        let hook = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hooks/hlf"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .expect(1)
            .mount(&hook)
            .await;
        Mock::given(method("POST"))
            .and(path("/hooks/hlf"))
            .and(header_exists("idempotency-key"))
            .and(header_exists("x-hlf-signature"))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&hook)
            .await;
        let text = format!(
            "[notifications.webhook]\nurl = \"{}/hooks/hlf\"\nsecret_env = \"HOOK_SECRET\"\n",
            hook.uri()
        );
        let f = Fixture::new(&db, config(&text, "")).await;
        let id = queue(&f, "alert:x", "webhook", "webhook").await;
        let d = deliverer(&f);
        assert_eq!(d.deliver_due().await.unwrap().retrying, 1);
        f.clock.advance(chrono::Duration::seconds(61));
        assert_eq!(d.deliver_due().await.unwrap().sent, 1);

        let requests = hook.received_requests().await.unwrap();
        let last = requests.last().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["organisation"], "hlf");
        assert_eq!(last.headers.get("idempotency-key").unwrap().to_str().unwrap(), id);
        let signature = last
            .headers
            .get("x-hlf-signature")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let timestamp = last.headers.get("x-hlf-timestamp").unwrap().to_str().unwrap();
        assert_eq!(timestamp, f.clock.now().timestamp().to_string(), "the time of the call");
        assert_eq!(signature, expected_signature(timestamp, &last.body));
        readme_receiver_accepts(timestamp, &signature, &last.body);
        assert!(!String::from_utf8_lossy(&last.body).contains(WEBHOOK_SECRET));
        hook.verify().await;
        db
    })
    .await;
}

#[tokio::test]
async fn a_webhook_secret_from_a_file_signs_with_the_rotated_value_without_a_restart() {
    each_database(|db| async move {
        let hook = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hooks/hlf"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&hook)
            .await;
        let dir = std::env::temp_dir().join(format!("webhook-secret-{}-{}", std::process::id(), db.name));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("webhook-secret");
        std::fs::write(&file, "before-rotation\n").unwrap();
        let text = format!(
            "[notifications.webhook]\nurl = \"{}/hooks/hlf\"\nsecret_env = \"HOOK_SECRET\"\n",
            hook.uri()
        );
        let mut config = config(&text, "");
        config.notifications.webhook.as_mut().unwrap().secret =
            Some(integration_config::SecretSource::file(&file).unwrap());
        let f = Fixture::new(&db, config).await;
        let d = deliverer(&f);
        queue(&f, "alert:one", "webhook", "webhook").await;
        assert_eq!(d.deliver_due().await.unwrap().sent, 1);
        std::fs::write(&file, "after-rotation\n").unwrap();
        queue(&f, "alert:two", "webhook", "webhook").await;
        assert_eq!(d.deliver_due().await.unwrap().sent, 1);

        let requests = hook.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2);
        for (request, secret) in requests.iter().zip(["before-rotation", "after-rotation"]) {
            let signature = request.headers.get("x-hlf-signature").unwrap().to_str().unwrap();
            let timestamp = request.headers.get("x-hlf-timestamp").unwrap().to_str().unwrap();
            assert_eq!(signature, signature_with(secret, timestamp, &request.body));
        }
        std::fs::remove_dir_all(&dir).unwrap();
        db
    })
    .await;
}

/// The README's receiver example (Python) accepts the call as sent, and refuses it with one byte changed.
fn readme_receiver_accepts(timestamp: &str, signature: &str, body: &[u8]) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let example = readme
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README's webhook receiver example");
    let file = std::env::temp_dir().join(format!("webhook-body-{}-{timestamp}", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let script = format!(
        "{example}\nimport sys\nbody = open(sys.argv[1], 'rb').read()\n\
         headers = {{'X-HLF-Timestamp': '{timestamp}', 'X-HLF-Signature': '{signature}'}}\n\
         # The test clock is fixed in the past: no freshness limit here.\n\
         assert verify({secret:?}.encode(), headers, body, tolerance_s=10**12)\n\
         assert not verify({secret:?}.encode(), headers, body + b' ', tolerance_s=10**12)\n",
        secret = WEBHOOK_SECRET
    );
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&file)
        .status()
        .expect("python3 runs the README's receiver example");
    std::fs::remove_file(&file).unwrap();
    assert!(
        status.success(),
        "the README's receiver example refused a real call:\n{script}"
    );
}

/// The signature computed independently of the crate, with the hmac crate directly, as README's receiver example
/// does: HMAC-SHA256 over `<timestamp>.<body>`.
fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    signature_with(WEBHOOK_SECRET, timestamp, body)
}

fn signature_with(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[tokio::test]
async fn a_redirecting_webhook_is_not_followed_and_the_notification_is_given_up_with_why() {
    each_database(|db| async move {
        let hook = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hooks/hlf"))
            .respond_with(ResponseTemplate::new(307).insert_header("location", format!("{}/steal", elsewhere.uri())))
            .expect(1)
            .mount(&hook)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(204))
            .expect(0)
            .mount(&elsewhere)
            .await;
        let text = format!(
            "[notifications.webhook]\nurl = \"{}/hooks/hlf\"\nsecret_env = \"HOOK_SECRET\"\n",
            hook.uri()
        );
        let f = Fixture::new(&db, config(&text, "")).await;
        let id = queue(&f, "alert:redirect", "webhook", "webhook").await;
        assert_eq!(deliverer(&f).deliver_due().await.unwrap().given_up, 1);
        let error = state_of(&f, &id).await.last_error.unwrap();
        assert!(error.contains("307") && error.contains("not followed"), "{error}");
        hook.verify().await;
        elsewhere.verify().await;
        db
    })
    .await;
}

#[tokio::test]
async fn a_notification_without_its_channel_waits_without_using_attempts() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        let id = queue(&f, "cert-failed:1", "email", "koordinator@hlf.example").await;
        let report = deliverer(&f).deliver_due().await.unwrap();
        assert_eq!(report.no_channel, 1);
        let waiting = state_of(&f, &id).await;
        assert_eq!((waiting.attempts, waiting.sent_at), (0, None));
        assert_eq!(
            f.store.notification_counts("hlf").await.unwrap().get("pending"),
            Some(&1)
        );
        db
    })
    .await;
}

#[tokio::test]
async fn two_deliverers_at_once_send_each_notification_once() {
    each_database(|db| async move {
        let smtp = SmtpServer::start().await;
        let f = Fixture::new(&db, config(&email_config(&smtp, ""), "")).await;
        for n in 0..20 {
            queue(&f, &format!("k{n}"), "email", "koordinator@hlf.example").await;
        }
        let (a, b) = (Arc::new(deliverer(&f)), Arc::new(deliverer(&f)));
        let (ra, rb) = tokio::join!(a.deliver_due(), b.deliver_due());
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.sent + rb.sent, 20, "{ra:?} {rb:?}");
        let received = smtp.received();
        assert_eq!(received.len(), 20);
        let mut subjects: Vec<&str> = received
            .iter()
            .map(|m| m.data.lines().find(|l| l.starts_with("Subject:")).unwrap())
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        assert_eq!(subjects.len(), 20, "no notification sent twice");
        db
    })
    .await;
}
