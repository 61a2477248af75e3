//! The clock the client waits on: real time in production, virtual time in tests, so a test can say "Dynamics
//! asked for a 30-second pause" and check it without waiting 30 seconds.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// Monotonic time and sleeping.
#[async_trait]
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
    /// The wall-clock time, for answers that name a date (an HTTP-date `Retry-After`).
    fn utc_now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Real time, through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Virtual time for tests: `sleep` returns at once and moves the clock forward, and every sleep is recorded.
#[derive(Debug)]
pub struct VirtualClock {
    start: Instant,
    start_utc: chrono::DateTime<chrono::Utc>,
    state: Mutex<VirtualState>,
}

#[derive(Debug, Default)]
struct VirtualState {
    elapsed: Duration,
    sleeps: Vec<Duration>,
}

impl VirtualClock {
    /// A clock at an arbitrary start instant.
    pub fn new() -> Self {
        Self::starting_at(chrono::Utc::now())
    }

    /// A clock whose wall-clock time starts at `start_utc`.
    pub fn starting_at(start_utc: chrono::DateTime<chrono::Utc>) -> Self {
        VirtualClock {
            start: Instant::now(),
            start_utc,
            state: Mutex::new(VirtualState::default()),
        }
    }

    /// Moves the clock forward without a sleep being recorded.
    pub fn advance(&self, by: Duration) {
        self.lock().elapsed += by;
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    /// Virtual time passed since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VirtualState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.start + self.lock().elapsed
    }

    fn utc_now(&self) -> chrono::DateTime<chrono::Utc> {
        let elapsed = chrono::Duration::from_std(self.lock().elapsed).unwrap_or(chrono::Duration::MAX);
        self.start_utc.checked_add_signed(elapsed).unwrap_or(self.start_utc)
    }

    async fn sleep(&self, duration: Duration) {
        {
            let mut state = self.lock();
            state.elapsed += duration;
            state.sleeps.push(duration);
        }
        // Let other tasks run, as a real sleep would.
        tokio::task::yield_now().await;
    }
}
