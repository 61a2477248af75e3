//! No request per mentor: mentors added after a first sync are looked up in bulk, and retries, admin resolutions
//! and writes whose outcome is unknown read their contacts in bulk. Request counts are the client's own.

use serde_json::json;
use sync_store::{AppStore, Direction, RunStatus};

use super::{DEFAULT_CONFIG, World, day, each, mentor_id};

#[tokio::test]
async fn mentors_added_after_a_first_sync_are_looked_up_in_bulk() {
    each(|db| async move {
        let w = World::new(&db).await;
        for n in 0..600 {
            w.contact(&format!("20{n:03}"), json!({}));
        }
        for n in 0..10 {
            w.mentor("hlf", &format!("20{n:03}"), day(2027, 6, 30)).await;
        }
        w.service.run().await.unwrap();
        // Go-live: 590 more mentors (and 5 whose member number Dynamics does not know).
        for n in 10..600 {
            w.mentor("hlf", &format!("20{n:03}"), day(2027, 6, 30)).await;
        }
        for n in 0..5 {
            w.mentor("hlf", &format!("29{n:03}"), day(2027, 6, 30)).await;
        }
        w.clock.advance(chrono::Duration::hours(1));
        let report = w.service.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Partial, "{report:?}");
        assert_eq!(report.metrics.push.written, 590, "{report:?}");
        // Metadata (4), the delta (1), the look-ups of 595 member numbers (one $batch of `In` queries for both
        // pages of app rows), and the writes in batches of 500 and 1,000: at most nine requests, not one per mentor.
        assert!(report.metrics.requests <= 9, "{:?}", report.metrics);
        let linked = w.store.links_page("hlf", "mentor", None, 1000).await.unwrap();
        assert_eq!(linked.len(), 600);
        let failed = w
            .store
            .failures("hlf", sync_store::FailureState::Retrying)
            .await
            .unwrap();
        assert_eq!(failed.len(), 5);
        db
    })
    .await;
}

#[tokio::test]
async fn retried_records_read_their_contacts_in_bulk() {
    each(|db| async move {
        let w = World::new(&db).await;
        for n in 0..300 {
            let member = format!("21{n:03}");
            w.contact(&member, json!({}));
            w.mentor("hlf", &member, day(2027, 6, 30)).await;
        }
        w.service.run().await.unwrap();
        // 300 records in the failed-record queue (an outage's leftovers).
        for n in 0..300 {
            w.store
                .record_failure(
                    "hlf",
                    "mentor",
                    &mentor_id("hlf", &format!("21{n:03}")),
                    Direction::Push,
                    "an earlier outage",
                    5,
                    super::at("2026-06-01T00:00:00Z"),
                )
                .await
                .unwrap();
        }
        w.clock.advance(chrono::Duration::hours(1));
        let report = w.service.run().await.unwrap();
        assert_eq!(report.status, RunStatus::Succeeded, "{report:?}");
        // Metadata, the delta, and the 300 contacts read again in one $batch.
        assert!(report.metrics.requests <= 7, "{:?}", report.metrics);
        assert!(
            w.store
                .failures("hlf", sync_store::FailureState::Retrying)
                .await
                .unwrap()
                .is_empty()
        );
        let snapshot = w.store.mentors("hlf", &[mentor_id("hlf", "21299")]).await.unwrap();
        assert!(snapshot[0].mentor.dynamics_contact_id.is_some());
        db
    })
    .await;
}

#[tokio::test]
async fn a_run_starts_its_batches_at_the_size_the_last_run_ended_with() {
    each(|db| async move {
        let config = format!("{DEFAULT_CONFIG}[sync]\nbatch_size_initial = 50\n");
        let w = World::with_config(&db, &config, None).await;
        for n in 0..400 {
            let member = format!("22{n:03}");
            w.contact(&member, json!({}));
            w.mentor("hlf", &member, day(2027, 6, 30)).await;
        }
        // The first run climbs from sync.batch_size_initial (50 here): batches of 50, 100, 200 and 50.
        let first = w.service.run().await.unwrap();
        assert_eq!(first.metrics.push.written, 400, "{first:?}");
        assert_eq!(
            first
                .metrics
                .notes
                .get(sync_engine::NOTE_BATCH_SIZE)
                .map(String::as_str),
            Some("800")
        );
        // 300 certifications renewed: the next run writes them in one batch instead of climbing again.
        for n in 0..300 {
            w.mentor("hlf", &format!("22{n:03}"), day(2028, 6, 30)).await;
        }
        w.clock.advance(chrono::Duration::hours(1));
        let second = w.service.run().await.unwrap();
        assert_eq!(second.status, RunStatus::Succeeded, "{second:?}");
        assert_eq!(second.metrics.push.written, 300, "{second:?}");
        // Metadata (4), the delta (1) and one $batch of 300.
        assert_eq!(second.metrics.requests, 6, "{:?}", second.metrics);
        db
    })
    .await;
}
