//! Every alert rule: raised when its cause appears, deduplicated while it lasts, resolved when it is gone, with the
//! admin notifications that go with it.

use health_monitor::{Authentication, Probe, Status};
use sync_engine::Clock;
use sync_store::{Direction, RunKind, RunMetrics, RunStatus, Severity, Watermark};

use crate::{Fixture, at, config, day, each_database};

const ADMINS: &str = "[notifications]\nadmin_emails = [\"drift@hlf.example\"]\n";

#[tokio::test]
async fn sync_failing_is_raised_after_two_failed_runs_once_and_resolved_by_a_success() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config(ADMINS, "")).await;
        f.succeeded().await;
        f.advance_hours(24);
        f.failed(None).await;
        let first = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert!(f.open_causes().await.is_empty(), "one failed run is not yet an alert");
        assert_eq!(first.health.status, Status::Degraded, "{:?}", first.health.reasons);

        f.advance_hours(24);
        f.failed(None).await;
        let raised = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(raised.raised, vec!["sync-failing"]);
        assert_eq!(raised.health.status, Status::Unhealthy);
        assert_eq!(raised.health.reasons[0], "the last 2 sync runs failed");
        assert_eq!(f.open_causes().await, vec!["sync-failing"]);

        // A third failure and a second evaluation update the one alert and notify nobody again.
        f.advance_hours(24);
        f.failed(None).await;
        let again = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert!(again.raised.is_empty() && again.queued == 0, "{again:?}");
        let alerts = f.store.active_alerts("hlf").await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].occurrences, 2);
        assert!(
            alerts[0].message.contains("The last 3 sync runs failed"),
            "{}",
            alerts[0].message
        );
        assert_eq!(alerts[0].severity, Severity::Critical);

        f.advance_hours(1);
        f.succeeded().await;
        let resolved = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(resolved.resolved, vec!["sync-failing"]);
        assert!(f.open_causes().await.is_empty());
        assert_eq!(resolved.health.status, Status::Healthy, "{:?}", resolved.health.reasons);
        let subjects: Vec<String> = f.notifications().await.into_iter().map(|n| n.subject).collect();
        assert_eq!(
            subjects,
            vec![
                "[KRITISK] Dynamics-integrasjonen for HLF",
                "[Løst] Dynamics-integrasjonen for HLF"
            ],
            "one notification when raised, one when resolved, in Norwegian by default"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn failed_runs_threshold_follows_the_configuration() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("[health]\nfailed_runs_alert = 3\n", "")).await;
        f.failed(None).await;
        f.failed(None).await;
        f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert!(f.open_causes().await.is_empty());
        f.failed(None).await;
        f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(f.open_causes().await, vec!["sync-failing"]);
        db
    })
    .await;
}

#[tokio::test]
async fn expired_secret_raises_auth_expired_and_a_working_run_resolves_it() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        f.succeeded().await;
        f.advance_hours(24);
        f.failed(Some("7000222")).await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert!(
            matches!(
                e.health.authentication,
                Authentication::Failed {
                    aadsts: Some(7_000_222),
                    ..
                }
            ),
            "{:?}",
            e.health.authentication
        );
        assert_eq!(e.health.status, Status::Unhealthy);
        assert_eq!(f.open_causes().await, vec!["auth-expired"]);
        let alert = &f.store.active_alerts("hlf").await.unwrap()[0];
        assert!(alert.message.contains("AADSTS7000222") && alert.message.contains("rotating the client secret"));
        assert_eq!(alert.message.matches("AADSTS7000222").count(), 1, "{}", alert.message);

        // Another code is not an expired secret.
        f.advance_hours(1);
        f.failed(Some("7000215")).await;
        f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(
            f.open_causes().await,
            vec!["sync-failing"],
            "two failures in a row, but the secret is not expired"
        );

        f.advance_hours(1);
        f.succeeded().await;
        f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert!(f.open_causes().await.is_empty());
        db
    })
    .await;
}

#[tokio::test]
async fn secret_expiry_warns_at_30_14_7_and_1_days_once_each_and_resolves_after_rotation() {
    each_database(|db| async move {
        let expiring = "client_secret_expires_on = 2026-07-01\n";
        let f = Fixture::new(&db, config(ADMINS, expiring)).await;
        f.succeeded().await;
        let mut stages = Vec::new();
        // From 40 days before to 2 days after, one evaluation a day (the clock is at 02:00 UTC, 04:00 in Oslo).
        f.clock.set(at("2026-05-22T02:00:00Z"));
        for _ in 0..43 {
            f.succeeded().await;
            let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
            if !e.raised.is_empty() {
                let today = f.clock.now().date_naive();
                let alert = f.store.active_alerts("hlf").await.unwrap().remove(0);
                stages.push((today, alert.severity));
            }
            f.advance_hours(24);
        }
        assert_eq!(
            stages,
            vec![
                (day(2026, 6, 1), Severity::Warning),
                (day(2026, 6, 17), Severity::Warning),
                (day(2026, 6, 24), Severity::Critical),
                (day(2026, 6, 30), Severity::Critical),
                (day(2026, 7, 1), Severity::Critical),
            ],
            "30, 14, 7 and 1 days ahead, then expired"
        );
        let alerts = f.store.active_alerts("hlf").await.unwrap();
        assert_eq!(alerts.len(), 1, "one alert for the cause, whatever the stage");
        assert!(
            alerts[0].message.contains("expired on 2026-07-01"),
            "{}",
            alerts[0].message
        );
        assert_eq!(f.notifications().await.len(), 5, "one email per stage");

        // HLF IT rotates the secret and the configuration gets the new date.
        let rotated = Fixture::new(&db, config(ADMINS, "client_secret_expires_on = 2028-07-01\n")).await;
        rotated.clock.set(f.clock.now());
        let e = rotated
            .monitor
            .evaluate(rotated.organisation(), Probe::Skip)
            .await
            .unwrap();
        assert_eq!(e.resolved, vec!["secret-expiry"]);
        db
    })
    .await;
}

#[tokio::test]
async fn delta_token_alert_warns_past_half_its_life_while_runs_fail() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("[health]\nfailed_runs_alert = 50\n", "")).await;
        f.store
            .set_watermark(
                "hlf",
                Direction::Pull,
                "contact",
                &Watermark {
                    at: None,
                    delta_link: Some("https://hlf.crm4.dynamics.com/api/data/v9.2/contacts?$deltatoken=1".into()),
                    updated_at: Some(f.clock.now()),
                },
                f.clock.now(),
            )
            .await
            .unwrap();
        f.succeeded().await;
        let healthy = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        let token = healthy.health.delta_token.unwrap();
        assert_eq!(token.expires_in_seconds, 7 * 86_400);
        for _ in 0..3 {
            f.advance_hours(24);
            f.failed(None).await;
            f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        }
        assert!(f.open_causes().await.is_empty(), "3 days of 7: not yet");
        f.advance_hours(24);
        f.failed(None).await;
        f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        let alert = f.store.active_alerts("hlf").await.unwrap().remove(0);
        assert_eq!(
            (alert.cause.as_str(), alert.severity),
            ("delta-token-expiring", Severity::Warning)
        );
        f.advance_hours(48);
        f.failed(None).await;
        f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        let alert = f.store.active_alerts("hlf").await.unwrap().remove(0);
        assert_eq!(alert.severity, Severity::Critical, "one day left: {}", alert.message);
        f.advance_hours(1);
        f.succeeded().await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(e.resolved, vec!["delta-token-expiring"]);
        db
    })
    .await;
}

#[tokio::test]
async fn certification_mismatch_flags_mentors_dynamics_shows_wrongly_and_resolves_when_aligned() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        f.mentor("1001", day(2027, 1, 1)).await; // active, Dynamics agrees
        f.mentor("1002", day(2026, 3, 1)).await; // expired in March, Dynamics still shows them
        f.mentor("1003", day(2027, 1, 1)).await; // active, not in Dynamics at all
        f.mentor("1004", day(2026, 3, 1)).await; // expired, Dynamics agrees
        f.confirmed("1001", "active", true).await;
        f.confirmed("1002", "active", true).await;
        f.confirmed("1004", "expired", false).await;
        f.succeeded().await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        // 1003 is not in Dynamics at all: nothing there differs from the app, so it is counted apart, not as a
        // mismatch (its failed record says why it is missing).
        assert_eq!(e.health.mismatch_count, 1);
        assert_eq!(e.health.not_in_dynamics, 1);
        let members: Vec<(&str, bool)> = e
            .health
            .mismatches
            .iter()
            .map(|m| (m.member_number.as_deref().unwrap(), m.shown_wrongly))
            .collect();
        assert_eq!(members, vec![("1002", true)]);
        assert_eq!(e.health.mismatches[0].mentor_id, "hlf-1002");
        let alert = f.store.active_alerts("hlf").await.unwrap().remove(0);
        assert_eq!(alert.cause, "certification-mismatch");
        assert_eq!(
            alert.severity,
            Severity::Critical,
            "an expired mentor on the public site is critical"
        );
        assert!(
            alert
                .message
                .starts_with("1 mentor has a certification status or public-site flag in Dynamics that differs"),
            "{}",
            alert.message
        );
        assert!(alert.message.contains(": app ids hlf-1002."), "{}", alert.message);
        assert!(
            !alert.message.contains("hlf-1003"),
            "not in Dynamics is no mismatch: {}",
            alert.message
        );
        assert!(!alert.message.contains("Nordmann"), "app ids only, no names");
        assert!(!alert.message.contains(" 1002"), "no member numbers: {}", alert.message);

        // The next run aligns 1002 and creates 1003's contact.
        f.advance_hours(24);
        f.confirmed("1002", "expired", false).await;
        f.confirmed("1003", "active", true).await;
        f.succeeded().await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(e.resolved, vec!["certification-mismatch"]);
        assert_eq!((e.health.mismatch_count, e.health.not_in_dynamics), (0, 0));
        db
    })
    .await;
}

#[tokio::test]
async fn mismatch_ignores_app_changes_made_after_the_last_run() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        f.clock.set(at("2026-04-01T02:00:00Z"));
        f.succeeded().await;
        // Changed a month after that run (the fixture's change time is 2026-05-01): the next run handles it.
        f.mentor("1003", day(2027, 1, 1)).await;
        f.clock.set(at("2026-06-01T02:00:00Z"));
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(e.health.mismatch_count, 0);
        db
    })
    .await;
}

#[tokio::test]
async fn freshness_and_cache_staleness_follow_the_clock() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        let never = f.monitor.check(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(never.status, Status::Unhealthy);
        assert_eq!(never.reasons[0], "no sync has completed both directions yet");

        f.mentor("1001", day(2027, 1, 1)).await;
        f.confirmed("1001", "active", true).await;
        f.succeeded().await;
        assert_eq!(
            f.monitor.check(f.organisation(), Probe::Skip).await.unwrap().status,
            Status::Healthy
        );

        // 24 hours is the freshness limit: just inside, then just past.
        f.advance_hours(24);
        let h = f.monitor.check(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(h.status, Status::Healthy, "{:?}", h.reasons);
        f.clock.advance(chrono::Duration::seconds(1));
        let h = f.monitor.check(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(h.status, Status::Unhealthy);
        assert!(
            h.reasons[0].starts_with("no successful sync in both directions since"),
            "{:?}",
            h.reasons
        );
        assert!(!h.cache.stale, "the cache goes stale after 26 hours");
        f.advance_hours(2);
        let h = f.monitor.check(f.organisation(), Probe::Skip).await.unwrap();
        assert!(h.cache.stale);
        assert!(
            h.reasons
                .iter()
                .any(|r| r.starts_with("the certification cache is stale")),
            "{:?}",
            h.reasons
        );
        db
    })
    .await;
}

#[tokio::test]
async fn schema_drift_raised_by_the_engine_is_reported_and_makes_it_unhealthy() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        f.succeeded().await;
        let now = f.clock.now();
        f.store
            .raise_alert(
                "hlf",
                "schema-drift:contact",
                "schema-drift",
                Severity::Critical,
                "column hlf_showonpublicsite is missing",
                now,
            )
            .await
            .unwrap();
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(e.health.schema_drift, vec!["column hlf_showonpublicsite is missing"]);
        assert_eq!(e.health.status, Status::Unhealthy);
        assert!(e.resolved.is_empty(), "the monitor leaves the engine's alerts alone");
        assert_eq!(f.open_causes().await, vec!["schema-drift:contact"]);
        db
    })
    .await;
}

/// Records a finished accounting export run starting now.
async fn posting_run(f: &Fixture, status: RunStatus, postings: sync_store::PostingMetrics) {
    let now = sync_engine::Clock::now(&*f.clock);
    let id = f.store.start_run("hlf", RunKind::Postings, now).await.unwrap();
    let metrics = RunMetrics {
        postings: Some(postings),
        ..RunMetrics::default()
    };
    let error = (status == RunStatus::Failed).then_some("dynamics request failed: 503");
    f.store.finish_run(&id, status, &metrics, error, now).await.unwrap();
}

#[tokio::test]
async fn postings_unreconciled_is_raised_with_ids_only_and_resolved_by_a_clean_export() {
    each_database(|db| async move {
        let f = Fixture::new(&db, config("", "")).await;
        f.succeeded().await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(e.health.postings, None, "no accounting export has run");

        posting_run(
            &f,
            RunStatus::Succeeded,
            sync_store::PostingMetrics {
                exported: 4,
                checked: 10,
                missing: 1,
                differing: 1,
                sample: vec!["P-0002".into(), "P-0003".into()],
                ..Default::default()
            },
        )
        .await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(e.raised, vec!["postings-unreconciled"]);
        let alert = f.store.active_alerts("hlf").await.unwrap().remove(0);
        assert_eq!(alert.severity, Severity::Warning);
        assert!(
            alert.message.contains("2 exported postings") && alert.message.contains("posting ids P-0002, P-0003."),
            "{}",
            alert.message
        );
        assert_eq!(e.health.status, Status::Degraded, "{:?}", e.health.reasons);

        // A failed export is a reason of its own and reconciled nothing: the alert neither resolves nor changes.
        f.advance_hours(24);
        f.succeeded().await;
        posting_run(&f, RunStatus::Failed, sync_store::PostingMetrics::default()).await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert!(e.resolved.is_empty(), "{:?}", e.resolved);
        assert_eq!(f.open_causes().await, ["postings-unreconciled"]);
        assert!(
            e.health
                .reasons
                .contains(&"the last accounting export failed: dynamics request failed: 503".to_owned()),
            "{:?}",
            e.health.reasons
        );

        // An admin restores the rows in Dynamics: the next export finds nothing, and the alert resolves.
        f.advance_hours(24);
        posting_run(
            &f,
            RunStatus::Succeeded,
            sync_store::PostingMetrics {
                checked: 10,
                ..Default::default()
            },
        )
        .await;
        let e = f.monitor.evaluate(f.organisation(), Probe::Skip).await.unwrap();
        assert_eq!(e.resolved, vec!["postings-unreconciled"]);
        db
    })
    .await;
}
