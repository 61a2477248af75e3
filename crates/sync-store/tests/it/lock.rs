//! One run per organisation at a time.

use std::time::Duration;

use sync_store::Backend;

use super::{at, each};

#[tokio::test]
async fn a_second_holder_is_refused_until_the_first_releases() {
    each(|store| async move {
        let now = at("2026-01-01T02:00:00Z");
        let lease = Duration::from_secs(900);
        let first = store
            .try_lock("hlf", "worker-a", lease, now)
            .await
            .unwrap()
            .expect("first lock");
        assert!(store.try_lock("hlf", "worker-b", lease, now).await.unwrap().is_none());
        // Another organisation is independent.
        let other = store
            .try_lock("other", "worker-b", lease, now)
            .await
            .unwrap()
            .expect("other org");
        if store.backend() == Backend::Sqlite {
            assert_eq!(store.lock_holder("hlf").await.unwrap().as_deref(), Some("worker-a"));
        }
        first.release().await.unwrap();
        let second = store
            .try_lock("hlf", "worker-b", lease, now)
            .await
            .unwrap()
            .expect("after release");
        second.release().await.unwrap();
        other.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_lock_whose_holder_died_does_not_block_forever() {
    each(|store| async move {
        let now = at("2026-01-01T02:00:00Z");
        let lease = Duration::from_secs(60);
        let abandoned = store
            .try_lock("hlf", "killed-worker", lease, now)
            .await
            .unwrap()
            .expect("lock");
        // The holder disappears without releasing (a killed process).
        drop(abandoned);
        let later = match store.backend() {
            // PostgreSQL: the session ended, so the advisory lock is gone at once.
            Backend::Postgres => now,
            // SQLite: the lease row stays until it expires.
            Backend::Sqlite => {
                assert!(store.try_lock("hlf", "worker-b", lease, now).await.unwrap().is_none());
                now + chrono::Duration::seconds(61)
            }
        };
        let taken = store.try_lock("hlf", "worker-b", lease, later).await.unwrap();
        assert!(taken.is_some(), "a dead holder's lock must lapse");
    })
    .await;
}

#[tokio::test]
async fn renewing_keeps_a_sqlite_lease_alive() {
    each(|store| async move {
        if store.backend() != Backend::Sqlite {
            return;
        }
        let lease = Duration::from_secs(60);
        let now = at("2026-01-01T02:00:00Z");
        let lock = store.try_lock("hlf", "a", lease, now).await.unwrap().unwrap();
        lock.renew(lease, now + chrono::Duration::seconds(50)).await.unwrap();
        let at_70 = now + chrono::Duration::seconds(70);
        assert!(store.try_lock("hlf", "b", lease, at_70).await.unwrap().is_none());
        lock.release().await.unwrap();
    })
    .await;
}
