//! Near-real-time pushes: a revoked or renewed certification is queued durably in the backend's database and
//! pushed at once with [`SyncService::sync_mentor_now`]. When Dynamics is unreachable or the organisation's run lock
//! is held, the push waits in the queue and is retried with exponential backoff; nothing is lost on a restart, and
//! the nightly run remains the safety net.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sync_engine::SyncService;
use tokio::sync::Notify;

use crate::store::BackendStore;

/// How long a failed push waits before its next attempt: `base` doubled per failure, at most `max`.
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX))
        .min(max)
}

/// Drains the push queue.
#[derive(Clone)]
pub struct Pusher {
    store: BackendStore,
    services: Arc<BTreeMap<String, SyncService>>,
    wake: Arc<Notify>,
    base: Duration,
    max: Duration,
}

impl Pusher {
    /// A pusher over the queue in `store`, pushing through each organisation's service. A failed push waits
    /// `base`, doubled per failure, at most `max`.
    pub fn new(
        store: BackendStore,
        services: Arc<BTreeMap<String, SyncService>>,
        base: Duration,
        max: Duration,
    ) -> Self {
        Self {
            store,
            services,
            wake: Arc::new(Notify::new()),
            base,
            max,
        }
    }

    /// Queues a mentor and wakes the pusher.
    pub async fn push(&self, org: &str, user_id: &str) -> sync_store::Result<()> {
        self.store.enqueue_push(org, user_id, Utc::now()).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Pushes every due entry once; answers how many went through.
    pub async fn drain_once(&self) -> sync_store::Result<usize> {
        let mut pushed = 0;
        for entry in self.store.due_pushes(Utc::now(), 100).await? {
            let Some(service) = self.services.get(&entry.org) else {
                // An organisation no longer configured: nothing can push it.
                self.store.push_done(&entry.user_id).await?;
                continue;
            };
            match service.sync_mentor_now(&entry.user_id).await {
                Ok(_) => {
                    self.store.push_done(&entry.user_id).await?;
                    pushed += 1;
                }
                Err(e) => {
                    let wait = backoff(entry.attempts, self.base, self.max);
                    let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(5));
                    tracing::warn!(user = %entry.user_id, attempts = entry.attempts + 1, error = %e, "push failed; retried later");
                    self.store.push_failed(&entry.user_id, next, &e.to_string()).await?;
                }
            }
        }
        Ok(pushed)
    }

    /// Runs until the task is dropped: drains what is due, then sleeps until the next entry is due or a new event.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.drain_once().await {
                tracing::error!(error = %e, "the push queue could not be read");
            }
            let sleep = match self.store.next_push_due().await {
                Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(self.max),
                _ => self.max,
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep.max(Duration::from_millis(5))) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let waits: Vec<u64> = (0..12).map(|n| backoff(n, base, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX, base, max), max);
    }
}
