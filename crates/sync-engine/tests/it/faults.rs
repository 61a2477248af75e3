//! Faults: 412 races, throttling storms, failed records and dead ones, expired delta tokens, schema drift, a run
//! killed mid-batch.

use std::time::Duration;

use serde_json::json;
use sync_store::{AlertState, AppStore, Direction, FailureState, RunStatus};

use super::{DEFAULT_CONFIG, World, day, each, mentor_id};

#[tokio::test]
async fn a_412_race_re_reads_and_keeps_the_concurrent_change() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("9001", json!({}));
        w.mentor("hlf", "9001", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        // The certification is revoked in the app; meanwhile someone edits the contact in Dynamics between our
        // read and our write.
        super::revoke(&w.store, "9001", chrono::Utc::now()).await;
        w.sim.faults().race_next_update("contacts", Some(id));
        w.sim
            .state()
            .update("contacts", id, json!({ "firstname": "Concurrent" }))
            .unwrap();
        let report = w.service.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        assert_eq!(w.row(id)["hlf_peermentorstatus"], 100000002);
        assert_eq!(w.row(id)["firstname"], "Concurrent", "the concurrent edit is kept");
        db
    })
    .await;
}

#[tokio::test]
async fn a_throttling_storm_mid_run_is_waited_out() {
    each(|db| async move {
        let w = World::new(&db).await;
        let mut members = Vec::new();
        for n in 0..30 {
            let member = format!("10{n:03}");
            w.contact(&member, json!({}));
            w.mentor("hlf", &member, day(2027, 6, 30)).await;
            members.push(member);
        }
        w.service.run().await.unwrap();
        // Every certification is revoked; Dynamics throttles the next requests of the run that pushes them.
        for member in &members {
            super::revoke(&w.store, member, chrono::Utc::now()).await;
        }
        w.sim.faults().throttle_next(3, Duration::from_secs(1));
        let report = w.service.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        assert!(report.metrics.throttled >= 1, "{:?}", report.metrics);
        assert_eq!(report.metrics.push.written, 30);
        db
    })
    .await;
}

#[tokio::test]
async fn a_failed_record_is_retried_next_run_and_dead_after_the_limit() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.mentor("hlf", "11001", day(2027, 6, 30)).await;
        for attempt in 1..=3u32 {
            w.service.run().await.unwrap();
            let failure = w
                .store
                .failure("hlf", "mentor", &mentor_id("hlf", "11001"), Direction::Push)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(failure.attempts, attempt);
        }
        assert_eq!(
            w.store.failures("hlf", FailureState::Dead).await.unwrap().len(),
            1,
            "dead after 3 attempts"
        );
        // HLF registers the member; an admin requeues the record; the next run syncs it.
        let id = w.contact("11001", json!({}));
        w.service
            .requeue(&mentor_id("hlf", "11001"), Direction::Push)
            .await
            .unwrap();
        w.service.run().await.unwrap();
        assert_eq!(w.row(id)["hlf_peermentorstatus"], 100000000);
        assert!(
            w.store
                .failure("hlf", "mentor", &mentor_id("hlf", "11001"), Direction::Push)
                .await
                .unwrap()
                .is_none()
        );
        db
    })
    .await;
}

#[tokio::test]
async fn an_expired_delta_token_triggers_a_full_resync() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("12001", json!({}));
        w.mentor("hlf", "12001", day(2027, 6, 30)).await;
        w.service.run().await.unwrap();
        w.sim.faults().expire_delta_tokens();
        w.sim
            .state()
            .update("contacts", id, json!({ "firstname": "Etter" }))
            .unwrap();
        let report = w.service.run().await.unwrap();
        assert_eq!(report.metrics.full_resyncs, 1, "{report:?}");
        assert_eq!(report.status, RunStatus::Succeeded);
        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "12001")])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(snapshot.mentor.given_name.as_deref(), Some("Etter"));
        db
    })
    .await;
}

#[tokio::test]
async fn schema_drift_stops_writes_raises_an_alert_and_still_pulls() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("13001", json!({}));
        w.mentor("hlf", "13001", day(2027, 6, 30)).await;
        w.sim.faults().drop_column("contact", "hlf_showonpublicsite").unwrap();
        w.sim
            .state()
            .update("contacts", id, json!({ "firstname": "Pulled" }))
            .unwrap();
        // A dry run says that writes are held back; it does not claim both sides agree.
        let plan = w.service.plan().await.unwrap();
        assert!(plan.drift.iter().any(|d| d.contains("hlf_showonpublicsite")), "{plan}");
        let shown = plan.to_string();
        assert!(
            shown.contains("held back by schema drift") && !shown.contains("both sides agree"),
            "{shown}"
        );
        let report = w.service.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        assert_eq!(report.metrics.push.written, 0);
        assert_eq!(
            w.row(id)["hlf_peermentorstatus"],
            100000003,
            "nothing written to Dynamics"
        );
        assert!(
            report.drift.iter().any(|d| d.contains("hlf_showonpublicsite")),
            "{:?}",
            report.drift
        );
        let alerts = w.store.active_alerts("hlf").await.unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].cause.as_str(), alerts[0].state),
            ("schema-drift:contact", AlertState::Open)
        );
        assert!(alerts[0].message.contains("hlf_showonpublicsite"));
        let snapshot = w
            .store
            .mentors("hlf", &[mentor_id("hlf", "13001")])
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            snapshot.mentor.given_name.as_deref(),
            Some("Pulled"),
            "what can be read is still pulled"
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_run_that_cannot_authenticate_fails_whole_and_moves_no_watermark() {
    each(|db| async move {
        let w = World::new(&db).await;
        w.contact("14001", json!({}));
        w.mentor("hlf", "14001", day(2027, 6, 30)).await;
        w.sim.faults().expire_secret(dataverse_sim::DEFAULT_CLIENT_ID).unwrap();
        match w.service.run().await {
            Ok(report) => {
                assert_eq!(report.status, RunStatus::Failed);
                assert!(report.error.as_deref().unwrap().contains("AADSTS7000222"), "{report:?}");
            }
            Err(e) => panic!("a failed run is reported, not an error: {e}"),
        }
        assert_eq!(
            w.store.watermark("hlf", Direction::Pull, "contact").await.unwrap(),
            Default::default()
        );
        assert_eq!(
            w.store.watermark("hlf", Direction::Push, "contact").await.unwrap(),
            Default::default()
        );
        let runs = w.store.recent_runs("hlf", 1).await.unwrap();
        assert_eq!(runs[0].status, RunStatus::Failed);
        db
    })
    .await;
}

#[tokio::test]
async fn a_run_killed_mid_batch_converges_on_the_next_run() {
    each(|db| async move {
        let config = format!("{DEFAULT_CONFIG}[sync]\nbatch_size_initial = 5\nbatch_size_max = 5\n");
        let w = World::with_config(&db, &config, None).await;
        let mut ids = Vec::new();
        for n in 0..40 {
            let member = format!("15{n:03}");
            ids.push(w.contact(&member, json!({})));
            w.mentor("hlf", &member, day(2027, 6, 30)).await;
        }
        w.sim.faults().set_latency(Duration::from_millis(100));
        // Kill the worker once two batches have landed, while the third is in flight.
        let (landed, mut two_landed) = tokio::sync::watch::channel(false);
        let service = w
            .service
            .clone()
            .with_progress(std::sync::Arc::new(move |p: &sync_engine::Progress<'_>| {
                if p.pushed >= 10 {
                    landed.send_replace(true);
                }
            }));
        let run = tokio::spawn(async move { service.run().await });
        let written = |w: &World| {
            ids.iter()
                .filter(|id| w.row(**id)["hlf_peermentorstatus"] == 100000000)
                .count()
        };
        tokio::time::timeout(Duration::from_secs(60), two_landed.wait_for(|landed| *landed))
            .await
            .expect("two batches land within a minute")
            .unwrap();
        run.abort();
        let _ = run.await;
        w.sim.faults().clear();
        let written_before = written(&w);
        assert!(
            (10..40).contains(&written_before),
            "the kill should land mid-run ({written_before} of 40 written)"
        );
        // The killed run's SQLite lease outlives it: the restarted worker waits for the lease to lapse. On
        // PostgreSQL the lock goes with the killed run's session, which the server ends a moment after the socket
        // closes: the restarted worker tries again until then.
        w.clock.advance(chrono::Duration::hours(1));
        let report = w.run_after_kill().await;
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        for id in &ids {
            assert_eq!(w.row(*id)["hlf_peermentorstatus"], 100000000);
            assert_eq!(w.row(*id)["hlf_showonpublicsite"], true);
        }
        assert_eq!(w.sim.state().row_count("contacts"), Some(40), "nothing duplicated");
        let links = w.store.links_page("hlf", "mentor", None, 100).await.unwrap();
        assert_eq!(links.len(), 40);
        let divergence = w.service.reconcile().await.unwrap().divergence;
        assert_eq!(divergence.records_differing, 0, "{divergence:?}");
        db
    })
    .await;
}

#[tokio::test]
async fn a_stop_request_ends_the_run_between_pages_and_the_next_run_finishes_the_work() {
    each(|db| async move {
        let w = World::new(&db).await;
        let id = w.contact("18001", json!({}));
        w.mentor("hlf", "18001", day(2027, 6, 30)).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stopping = w.service.clone().with_stop(stop.clone());
        let report = stopping.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        assert!(
            report
                .error
                .as_deref()
                .unwrap()
                .contains("stopped by a shutdown request")
        );
        assert_eq!(
            w.store.watermark("hlf", Direction::Pull, "contact").await.unwrap(),
            Default::default()
        );
        stop.store(false, std::sync::atomic::Ordering::SeqCst);
        let report = stopping.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        assert_eq!(w.row(id)["hlf_showonpublicsite"], true);
        db
    })
    .await;
}

/// What Dynamics does to the run's first batch of writes.
#[derive(Debug, Clone, Copy)]
enum Lost {
    /// Carried out, then the connection dropped.
    ResetAfterCommit,
    /// Carried out, then a gateway's 504.
    GatewayAfterCommit,
    /// Carried out, the answer held past the client's timeout.
    LateAnswer,
    /// The connection dropped before Dynamics carried it out.
    ResetBefore,
}

/// Five linked mentors revoked in the app, and the batch that hides them meets `lost`. The run must confirm by
/// reading the contacts rather than send the batch again, and end with every contact hidden, nothing queued, no
/// conflict and no write pending; the next run has nothing left to write.
async fn revocations_meet(db: sync_store::testing::TestDatabase, lost: Lost) -> sync_store::testing::TestDatabase {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let hooked = std::sync::Mutex::new(None);
    let config = format!("{DEFAULT_CONFIG}request_timeout_seconds = 1\n");
    let w = World::with_app(&db, &config, None, "", |store| {
        let app = super::Hooked::new(store);
        *hooked.lock().unwrap() = Some(app.clone());
        Arc::new(app)
    })
    .await;
    let app = hooked.lock().unwrap().take().unwrap();
    let members: Vec<String> = (1..=5).map(|n| format!("33{}0{n}", lost as u8)).collect();
    let ids: Vec<uuid::Uuid> = members.iter().map(|m| w.contact(m, json!({}))).collect();
    for member in &members {
        w.mentor("hlf", member, day(2027, 6, 30)).await;
    }
    w.service.run().await.unwrap();
    for member in &members {
        super::revoke(&w.store, member, chrono::Utc::now()).await;
    }
    let (faults, armed) = (w.sim.faults(), Arc::new(AtomicBool::new(false)));
    faults.set_hang_duration(Duration::from_secs(3));
    let flag = armed.clone();
    // The pull reads the contacts (the last run's writes changed them) and then the mentors they link to; the
    // request after that is the batch of writes.
    app.on(
        "mentors",
        Box::new(move || {
            if !flag.swap(true, Ordering::SeqCst) {
                match lost {
                    Lost::ResetAfterCommit => faults.reset_after_commit_next(1),
                    Lost::GatewayAfterCommit => faults.fail_after_commit_next(1, 504),
                    Lost::LateAnswer => faults.answer_late_next(1),
                    Lost::ResetBefore => faults.reset_next(1),
                }
            }
            Box::pin(async {})
        }),
    );
    let report = w.service.run().await.unwrap();
    app.clear();
    assert_eq!(
        w.sim.stats().faults_injected,
        1,
        "{lost:?}: the fault struck: {report:?}"
    );
    assert_eq!(
        report.status,
        RunStatus::Succeeded,
        "{lost:?}: {report:?}: {:?}",
        w.store.failures("hlf", FailureState::Retrying).await.unwrap()
    );
    assert_eq!(
        report.metrics.retried, 0,
        "{lost:?}: the unanswered batch was not sent again blindly"
    );
    for id in &ids {
        assert_eq!(w.row(*id)["hlf_showonpublicsite"], false, "{lost:?}: hidden");
    }
    for member in &members {
        let link = w
            .store
            .links("hlf", "mentor", &[mentor_id("hlf", member)])
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert!(link.pending.is_none(), "{lost:?}: no write left pending");
        assert!(!link.visible, "{lost:?}");
    }
    for state in [FailureState::Retrying, FailureState::Dead] {
        assert!(
            w.store.failures("hlf", state).await.unwrap().is_empty(),
            "{lost:?}: nothing queued"
        );
    }
    assert_eq!(
        report.metrics.push.conflicts + report.metrics.pull.conflicts,
        0,
        "{lost:?}"
    );
    let next = w.service.run().await.unwrap();
    assert_eq!(next.metrics.push.written, 0, "{lost:?}: {next:?}");
    db
}

#[tokio::test]
async fn a_write_batch_carried_out_then_cut_off_is_confirmed_by_reading_not_sent_again() {
    each(|db| async move { revocations_meet(db, Lost::ResetAfterCommit).await }).await;
}

#[tokio::test]
async fn a_write_batch_carried_out_then_answered_by_a_gateway_error_is_confirmed_by_reading() {
    each(|db| async move { revocations_meet(db, Lost::GatewayAfterCommit).await }).await;
}

#[tokio::test]
async fn a_write_batch_answered_after_the_client_gave_up_is_confirmed_by_reading() {
    each(|db| async move { revocations_meet(db, Lost::LateAnswer).await }).await;
}

#[tokio::test]
async fn a_write_batch_lost_before_dynamics_ran_it_is_written_after_the_re_read() {
    each(|db| async move { revocations_meet(db, Lost::ResetBefore).await }).await;
}
