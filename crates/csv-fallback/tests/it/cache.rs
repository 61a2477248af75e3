//! Certification status from the cache, with staleness at the boundary.

use std::time::Duration;

use csv_fallback::CertificationReader;
use sync_store::CacheEntry;

use super::{at, clock, config, day, each};

#[tokio::test]
async fn cached_status_turns_stale_one_second_after_the_configured_age() {
    each(|store| async move {
        let stale_after = config().cache.stale_after;
        assert_eq!(stale_after, Duration::from_secs(26 * 3600), "the documented default");
        store
            .save_cache_entry(&CacheEntry {
                organisation_id: "hlf".into(),
                mentor_id: "hlf-kari".into(),
                member_number: Some("1001".into()),
                status: "active".into(),
                expires_on: Some(day(2026, 12, 31)),
                show_on_public_site: true,
                as_of: at("2026-06-01T00:30:00Z"),
            })
            .await
            .unwrap();
        let clock = clock();
        let reader = CertificationReader::new(store.clone(), stale_after, clock.clone());

        clock.set(at("2026-06-02T02:30:00Z"));
        let fresh = reader.status("hlf", "hlf-kari").await.unwrap().unwrap();
        assert_eq!(
            (fresh.status.as_str(), fresh.expires_on, fresh.show_on_public_site),
            ("active", Some(day(2026, 12, 31)), true)
        );
        assert_eq!(fresh.staleness.as_of, at("2026-06-01T00:30:00Z"));
        assert_eq!(fresh.staleness.age, stale_after);
        assert!(!fresh.staleness.stale, "exactly the limit is still fresh");

        clock.set(at("2026-06-02T02:30:01Z"));
        let stale = reader.status("hlf", "hlf-kari").await.unwrap().unwrap();
        assert!(stale.staleness.stale);
        assert_eq!(stale.staleness.age, stale_after + Duration::from_secs(1));

        // Scoped by organisation, and nothing cached is None, not a guess.
        assert_eq!(reader.status("other", "hlf-kari").await.unwrap(), None);
        assert_eq!(reader.status("hlf", "hlf-nobody").await.unwrap(), None);
    })
    .await;
}
