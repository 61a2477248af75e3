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
        // PostgreSQL ends the dead session asynchronously after its connection closes: allow it a moment.
        let mut taken = None;
        for _ in 0..50 {
            taken = store.try_lock("hlf", "worker-b", lease, later).await.unwrap();
            if taken.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(taken.is_some(), "a dead holder's lock must lapse");
    })
    .await;
}

#[tokio::test]
async fn a_sqlite_lease_of_a_dead_local_process_is_reclaimed_at_once() {
    each(|store| async move {
        if store.backend() != Backend::Sqlite {
            return;
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned();
        if host.is_empty() || !cfg!(target_os = "linux") {
            return;
        }
        let now = at("2026-01-01T02:00:00Z");
        let lease = Duration::from_secs(1800);
        // A pid above the kernel's maximum: that process cannot exist.
        let dead = format!("{host}:4194305:nonce");
        let abandoned = store.try_lock("hlf", &dead, lease, now).await.unwrap().expect("lock");
        drop(abandoned);
        let taken = store.try_lock("hlf", "worker-b", lease, now).await.unwrap();
        assert!(
            taken.is_some(),
            "a lease whose local holder died is freed without waiting"
        );

        // A live local holder (this very process) and a holder on another machine keep their lease.
        taken.unwrap().release().await.unwrap();
        let live = format!("{host}:{}:nonce", std::process::id());
        let held = store.try_lock("hlf", &live, lease, now).await.unwrap().expect("lock");
        assert!(store.try_lock("hlf", "worker-c", lease, now).await.unwrap().is_none());
        held.release().await.unwrap();
        let remote = store
            .try_lock("hlf", "other-host:4194305:nonce", lease, now)
            .await
            .unwrap()
            .expect("lock");
        drop(remote);
        assert!(store.try_lock("hlf", "worker-c", lease, now).await.unwrap().is_none());
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
