//! Postings for the accounting export, and the staleness rule every cache reader shares.

use std::time::Duration;

use sync_store::{Posting, PostingStore, Staleness};

use super::{at, each, mentor, seed_orgs};

fn posting(id: &str, mentor: &str, amount: &str, approved: Option<&str>) -> Posting {
    Posting {
        id: id.to_owned(),
        mentor_id: mentor.to_owned(),
        member_number: None,
        amount: amount.parse().unwrap(),
        account: "5000".to_owned(),
        description: Some("Honorar".to_owned()),
        approved_at: approved.map(at),
        exported_at: None,
    }
}

#[tokio::test]
async fn only_approved_unexported_postings_of_the_organisation_are_offered_and_marked_once() {
    each(|store| async move {
        seed_orgs(&store).await;
        store
            .upsert_mentor(&mentor("m1", "hlf", "1001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        store
            .upsert_mentor(&mentor("x1", "other", "9001", "2026-01-01T10:00:00Z"))
            .await
            .unwrap();
        for p in [
            posting("p1", "m1", "1250.50", Some("2026-02-01T10:00:00Z")),
            posting("p2", "m1", "99.99", None),
            posting("p3", "m1", "123456789012345.67", Some("2026-02-02T10:00:00Z")),
            posting("x-p1", "x1", "10", Some("2026-02-01T10:00:00Z")),
        ] {
            store.upsert_posting(&p).await.unwrap();
        }

        let offered = store.postings_to_export("hlf", None, 10).await.unwrap();
        let ids: Vec<_> = offered.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["p1", "p3"]);
        assert_eq!(offered[0].member_number.as_deref(), Some("1001"));
        // The amount comes back digit for digit, beyond what an f64 holds.
        assert_eq!(offered[1].amount.to_string(), "123456789012345.67");
        let page = store.postings_to_export("hlf", Some("p1"), 10).await.unwrap();
        assert_eq!(page.len(), 1);

        // Another organisation's posting is never marked through this one.
        let ids = ["p1".to_owned(), "x-p1".to_owned()];
        let marked = store
            .mark_postings_exported("hlf", &ids, at("2026-02-03T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(marked, 1);
        assert_eq!(
            store
                .mark_postings_exported("hlf", &ids, at("2026-02-04T00:00:00Z"))
                .await
                .unwrap(),
            0,
            "a posting is marked once; the first export time stays"
        );
        let p1 = store.posting("hlf", "p1").await.unwrap().unwrap();
        assert_eq!(p1.exported_at, Some(at("2026-02-03T00:00:00Z")));
        assert_eq!(store.posting("other", "x-p1").await.unwrap().unwrap().exported_at, None);
        assert_eq!(
            store.posting("hlf", "x-p1").await.unwrap(),
            None,
            "scoped by organisation"
        );
        assert_eq!(store.posting("other", "p1").await.unwrap(), None);
        let exported: Vec<_> = store
            .exported_postings("hlf", None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(exported, ["p1"]);
    })
    .await;
}

#[track_caller]
fn check_staleness(as_of: &str, now: &str, limit_hours: u64, age_seconds: u64, stale: bool) {
    let got = Staleness::new(at(as_of), at(now), Duration::from_secs(limit_hours * 3600));
    assert_eq!(
        (got.age, got.stale),
        (Duration::from_secs(age_seconds), stale),
        "as of {as_of}, now {now}"
    );
}

#[test]
fn staleness_starts_just_after_the_limit() {
    check_staleness("2026-06-01T02:00:00Z", "2026-06-02T04:00:00Z", 26, 26 * 3600, false);
    check_staleness("2026-06-01T02:00:00Z", "2026-06-02T04:00:01Z", 26, 26 * 3600 + 1, true);
    check_staleness("2026-06-01T02:00:00Z", "2026-06-01T02:00:00Z", 26, 0, false);
    // A value from the future (clock skew between machines) is fresh and zero seconds old.
    check_staleness("2026-06-01T02:00:00Z", "2026-06-01T01:00:00Z", 26, 0, false);
}
