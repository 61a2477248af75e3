//! Exactly-once export, crash safety, the failed-record queue and the reconciliation.

use accounting_export::{AmountMismatch, ExportSummary, POSTING};
use sync_store::{Direction, FailureState, Posting, PostingStore, RunKind, RunStatus};

use super::{World, at, each};

#[tokio::test]
async fn approved_postings_are_exported_once_with_exact_amounts() {
    each(|db| async move {
        let world = World::new(&db).await;
        world.posting("P-0001", "hlf-1001", "1250.5").await;
        world.posting("P-0002", "hlf-1001", "123456789012345.67").await;
        world.posting("X-0001", "other-9001", "10").await;
        let mut unapproved = world.store.posting("hlf", "P-0001").await.unwrap().unwrap();
        unapproved.id = "P-0003".into();
        unapproved.approved_at = None;
        world.store.upsert_posting(&unapproved).await.unwrap();

        let summary = world.exporter.export().await.unwrap();
        assert_eq!(
            summary,
            ExportSummary {
                exported: 2,
                failed: 0,
                held: 0
            }
        );
        assert_eq!(
            world.rows_in_dynamics(),
            2,
            "{:?}",
            world.sim.state().rows("hlf_postings")
        );
        let row = world.row("P-0002").unwrap();
        // The amount arrives digit for digit: no f64 could hold 17 significant digits.
        assert_eq!(row["hlf_amount"].to_string(), "123456789012345.67");
        let row = world.row("P-0001").unwrap();
        assert_eq!(row["hlf_amount"].to_string(), "1250.50");
        assert_eq!(row["hlf_membernumber"], "1001");
        assert_eq!(row["hlf_account"], "5000");
        // Approved at 00:30 on 1 June in Oslo (22:30 UTC the day before): the local date is the posting date.
        assert_eq!(row["hlf_approvedon"], "2026-06-01");
        assert!(
            world.row("X-0001").is_none(),
            "another organisation's posting never reaches HLF"
        );
        assert!(world.row("P-0003").is_none(), "unapproved postings wait");
        let marked = world.store.posting("hlf", "P-0001").await.unwrap().unwrap();
        assert_eq!(marked.exported_at, Some(at("2026-06-01T00:30:00Z")));

        // The next export has nothing to do.
        assert_eq!(world.exporter.export().await.unwrap(), ExportSummary::default());
        assert_eq!(world.rows_in_dynamics(), 2);
        db
    })
    .await;
}

#[tokio::test]
async fn a_crash_between_write_and_mark_creates_no_duplicate() {
    each(|db| async move {
        let world = World::new(&db).await;
        world.posting("P-0001", "hlf-1001", "500").await;
        world.posting("P-0002", "hlf-1001", "75.25").await;
        world.exporter.export().await.unwrap();
        let first_ids: Vec<_> = ["P-0001", "P-0002"]
            .iter()
            .map(|p| {
                world
                    .sim
                    .state()
                    .find_by_key("hlf_postings", "hlf_postingnumber", p)
                    .unwrap()
            })
            .collect();

        // The state a crash after Dynamics confirmed but before the mark leaves: written there, unmarked here.
        for id in ["P-0001", "P-0002"] {
            let mut posting: Posting = world.store.posting("hlf", id).await.unwrap().unwrap();
            posting.exported_at = None;
            world.store.upsert_posting(&posting).await.unwrap();
        }
        assert_eq!(world.store.postings_to_export("hlf", None, 10).await.unwrap().len(), 2);

        world.clock.set(at("2026-06-02T00:30:00Z"));
        let summary = world.exporter.export().await.unwrap();
        assert_eq!(summary.exported, 2);
        assert_eq!(world.rows_in_dynamics(), 2, "the re-run updated the same rows");
        let second_ids: Vec<_> = ["P-0001", "P-0002"]
            .iter()
            .map(|p| {
                world
                    .sim
                    .state()
                    .find_by_key("hlf_postings", "hlf_postingnumber", p)
                    .unwrap()
            })
            .collect();
        assert_eq!(first_ids, second_ids);
        assert!(
            world
                .store
                .postings_to_export("hlf", None, 10)
                .await
                .unwrap()
                .is_empty()
        );
        db
    })
    .await;
}

#[tokio::test]
async fn an_outage_fails_the_export_without_marking_or_spending_attempts() {
    each(|db| async move {
        let world = World::new(&db).await;
        world.posting("P-0001", "hlf-1001", "500").await;
        // The batch request itself is refused (not retried: a 4xx other than 429).
        world.sim.faults().fail_next(1, 400);
        assert!(world.exporter.export().await.is_err());
        assert_eq!(world.rows_in_dynamics(), 0);
        assert_eq!(world.store.postings_to_export("hlf", None, 10).await.unwrap().len(), 1);
        assert_eq!(
            world
                .store
                .failure("hlf", POSTING, "P-0001", Direction::Push)
                .await
                .unwrap(),
            None
        );
        assert_eq!(world.exporter.export().await.unwrap().exported, 1);
        assert_eq!(world.rows_in_dynamics(), 1);
        db
    })
    .await;
}

#[tokio::test]
async fn a_failed_posting_is_queued_retried_and_dead_after_its_attempts() {
    each(|db| async move {
        let world = World::new(&db).await;
        world.posting("P-0001", "hlf-1001", "500").await;
        world.posting("P-0002", "hlf-1001", "10.005").await;
        world.posting("P/0003", "hlf-1001", "20").await;

        let summary = world.exporter.export().await.unwrap();
        assert_eq!(summary, ExportSummary { exported: 1, failed: 2, held: 0 });
        let too_precise = world.store.failure("hlf", POSTING, "P-0002", Direction::Push).await.unwrap().unwrap();
        assert_eq!(too_precise.attempts, 1);
        assert_eq!(too_precise.state, FailureState::Retrying);
        assert_eq!(
            too_precise.error,
            "field `amount` has more than 2 digits after the decimal point, which column `hlf_amount` cannot keep; correct the amount in the app"
        );
        let bad_key = world.store.failure("hlf", POSTING, "P/0003", Direction::Push).await.unwrap().unwrap();
        assert!(bad_key.error.contains("forbids in keys"), "{}", bad_key.error);

        // Fixed in the app: the next export sends it and clears the failure.
        let mut fixed = world.store.posting("hlf", "P-0002").await.unwrap().unwrap();
        fixed.amount = "10.01".parse().unwrap();
        world.store.upsert_posting(&fixed).await.unwrap();
        let summary = world.exporter.export().await.unwrap();
        assert_eq!(summary, ExportSummary { exported: 1, failed: 1, held: 0 });
        assert_eq!(world.store.failure("hlf", POSTING, "P-0002", Direction::Push).await.unwrap(), None);
        assert_eq!(world.row("P-0002").unwrap()["hlf_amount"].to_string(), "10.01");

        // Not fixed: the third attempt makes it dead; then it is held, still visible, until an admin acts.
        world.exporter.export().await.unwrap();
        let dead = world.store.failure("hlf", POSTING, "P/0003", Direction::Push).await.unwrap().unwrap();
        assert_eq!((dead.attempts, dead.state), (3, FailureState::Dead));
        assert_eq!(world.exporter.export().await.unwrap(), ExportSummary { exported: 0, failed: 0, held: 1 });
        assert_eq!(world.store.posting("hlf", "P/0003").await.unwrap().unwrap().exported_at, None);
        world.store.requeue_failure("hlf", POSTING, "P/0003", Direction::Push).await.unwrap();
        assert_eq!(world.exporter.export().await.unwrap().failed, 1);
        assert_eq!(world.rows_in_dynamics(), 2);
        db
    })
    .await;
}

#[tokio::test]
async fn reconcile_lists_exported_postings_missing_or_different_in_dynamics() {
    each(|db| async move {
        let world = World::new(&db).await;
        for (id, amount) in [("P-0001", "100"), ("P-0002", "200.50"), ("P-0003", "300")] {
            world.posting(id, "hlf-1001", amount).await;
        }
        world.exporter.export().await.unwrap();
        assert_eq!(world.exporter.reconcile().await.unwrap().missing, Vec::<String>::new());

        let state = world.sim.state();
        let deleted = state
            .find_by_key("hlf_postings", "hlf_postingnumber", "P-0002")
            .unwrap();
        state.delete("hlf_postings", deleted).unwrap();
        let edited = state
            .find_by_key("hlf_postings", "hlf_postingnumber", "P-0003")
            .unwrap();
        state
            .update(
                "hlf_postings",
                edited,
                serde_json::from_str(r#"{"hlf_amount": 299.99}"#).unwrap(),
            )
            .unwrap();

        let report = world.exporter.reconcile().await.unwrap();
        assert_eq!(report.checked, 3);
        assert_eq!(report.missing, ["P-0002"]);
        assert_eq!(
            report.differing,
            [AmountMismatch {
                posting_id: "P-0003".into(),
                app: "300".parse().unwrap(),
                dynamics: Some("299.99".parse().unwrap()),
            }]
        );
        db
    })
    .await;
}

#[tokio::test]
async fn a_posting_run_exports_reconciles_and_records_both_in_the_run_log() {
    each(|db| async move {
        let world = World::new(&db).await;
        for (id, amount) in [("P-0001", "100"), ("P-0002", "200.50")] {
            world.posting(id, "hlf-1001", amount).await;
        }
        let run = world.exporter.run().await.unwrap();
        assert_eq!((run.status, run.error.as_deref()), (RunStatus::Succeeded, None));
        assert_eq!(
            (run.metrics.exported, run.metrics.checked, run.metrics.unreconciled()),
            (2, 2, 0)
        );
        let recorded = world
            .store
            .latest_finished_run("hlf", RunKind::Postings)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(recorded.id, run.run_id);
        assert_eq!(recorded.metrics.postings.as_ref(), Some(&run.metrics));
        assert!(
            recorded.metrics.requests >= 2,
            "a batch and a lookup: {:?}",
            recorded.metrics
        );

        // Someone deletes an exported posting in Dynamics: the next run finds it, names it by id only, and still
        // succeeds (the alert, not the run status, reports it).
        world.clock.advance(chrono::Duration::minutes(1));
        let state = world.sim.state();
        let deleted = state
            .find_by_key("hlf_postings", "hlf_postingnumber", "P-0002")
            .unwrap();
        state.delete("hlf_postings", deleted).unwrap();
        let run = world.exporter.run().await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert_eq!((run.metrics.exported, run.metrics.missing), (0, 1));
        assert_eq!(run.metrics.sample, ["P-0002"]);

        // Dynamics refuses the batch: a failed run with the reason, nothing marked. (The run log orders runs by
        // their start, so the test clock moves on as a real one would.)
        world.clock.advance(chrono::Duration::minutes(1));
        world.posting("P-0003", "hlf-1001", "5").await;
        world.sim.faults().fail_next(1, 400);
        let run = world.exporter.run().await.unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        assert!(
            run.error.as_deref().unwrap().starts_with("dynamics request failed: "),
            "{run:?}"
        );
        let recorded = world
            .store
            .latest_finished_run("hlf", RunKind::Postings)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(recorded.status, RunStatus::Failed);
        db
    })
    .await;
}

#[tokio::test]
async fn a_dry_run_plan_lists_what_would_be_sent_and_writes_nothing() {
    each(|db| async move {
        let world = World::new(&db).await;
        world.posting("P-0001", "hlf-1001", "100").await;
        // More decimals than the column keeps (scale 2): refused before sending.
        world.posting("P-0002", "hlf-1001", "1.005").await;
        let plan = world.exporter.plan().await.unwrap();
        assert_eq!(plan.ready, ["P-0001"]);
        assert_eq!(plan.invalid.len(), 1, "{plan:?}");
        assert_eq!(plan.invalid[0].0, "P-0002");
        assert!(!plan.invalid[0].1.contains("1.005"), "no amounts in reasons: {plan:?}");
        assert_eq!(world.rows_in_dynamics(), 0);
        assert_eq!(world.store.postings_to_export("hlf", None, 10).await.unwrap().len(), 2);
        assert_eq!(
            world
                .store
                .failure("hlf", POSTING, "P-0002", Direction::Push)
                .await
                .unwrap(),
            None,
            "a plan queues nothing"
        );
        assert!(
            world.store.recent_runs("hlf", 10).await.unwrap().is_empty(),
            "a plan is not a run"
        );
        db
    })
    .await;
}
