//! The client-side rate budget: Dynamics' service-protection limits (requests and execution time per sliding
//! window, concurrent requests), less a headroom, shared by every call of one client so that a run never provokes a
//! 429 on its own. When Dynamics throttles anyway, the whole client pauses for the `Retry-After` it was given.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_config::RateLimitSettings;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Clock;

/// The shared budget. Cloning shares it.
#[derive(Debug, Clone)]
pub(crate) struct RateBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_requests: usize,
    max_execution: Duration,
    window: Duration,
    clock: Arc<dyn Clock>,
    concurrency: Arc<Semaphore>,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// When each request in the window was sent.
    requests: VecDeque<Instant>,
    /// When each finished request ended and how long it ran.
    executions: VecDeque<(Instant, Duration)>,
    execution_total: Duration,
    paused_until: Option<Instant>,
}

/// A slot for one request: holds a concurrency permit until the request ends.
#[derive(Debug)]
pub(crate) struct Slot {
    budget: RateBudget,
    _permit: OwnedSemaphorePermit,
}

impl RateBudget {
    /// The budget for `limits` less their headroom.
    pub(crate) fn new(limits: &RateLimitSettings, clock: Arc<dyn Clock>) -> Self {
        let keep = |n: u64| (n * u64::from(100 - limits.headroom_percent.min(90)) / 100).max(1);
        let max_requests = usize::try_from(keep(u64::from(limits.requests_per_window))).unwrap_or(usize::MAX);
        let max_execution = Duration::from_millis(keep(
            u64::try_from(limits.execution_time_per_window.as_millis()).unwrap_or(u64::MAX),
        ));
        let concurrency = usize::try_from(keep(u64::from(limits.max_concurrent_requests))).unwrap_or(1);
        RateBudget {
            inner: Arc::new(Inner {
                max_requests,
                max_execution,
                window: limits.window,
                clock,
                concurrency: Arc::new(Semaphore::new(concurrency)),
                state: Mutex::new(Window::default()),
            }),
        }
    }

    /// Waits until a request may be sent under every limit, then reserves it. Returns the slot and how long it
    /// waited.
    pub(crate) async fn acquire(&self) -> (Slot, Duration) {
        let inner = &self.inner;
        let started = inner.clock.now();
        let permit = match inner.concurrency.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed; should it be, waiting is pointless.
            Err(_) => unreachable!("the concurrency semaphore is never closed"),
        };
        loop {
            let wait = {
                let mut window = self.lock();
                let now = inner.clock.now();
                window.prune(now, inner.window);
                match window.wait_needed(now, inner) {
                    None => {
                        window.requests.push_back(now);
                        break;
                    }
                    Some(wait) => wait,
                }
            };
            inner.clock.sleep(wait).await;
        }
        let waited = inner.clock.now().saturating_duration_since(started);
        (
            Slot {
                budget: self.clone(),
                _permit: permit,
            },
            waited,
        )
    }

    /// Stops every caller until `duration` from now: Dynamics said to wait.
    pub(crate) fn pause_for(&self, duration: Duration) {
        let until = self.inner.clock.now() + duration;
        let mut window = self.lock();
        if window.paused_until.is_none_or(|current| current < until) {
            window.paused_until = Some(until);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn limits(&self) -> (usize, Duration) {
        (self.inner.max_requests, self.inner.max_execution)
    }
}

impl Slot {
    /// Records how long the request ran: Dynamics counts execution time against the window too.
    pub(crate) fn finish(self, ran: Duration) {
        let inner = &self.budget.inner;
        let now = inner.clock.now();
        let mut window = self.budget.lock();
        window.executions.push_back((now, ran));
        window.execution_total += ran;
    }
}

impl Window {
    fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .requests
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.requests.pop_front();
        }
        while let Some((t, ran)) = self.executions.front().copied() {
            if now.saturating_duration_since(t) < window {
                break;
            }
            self.execution_total = self.execution_total.saturating_sub(ran);
            self.executions.pop_front();
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
    }

    /// How long to wait before the next request fits, or `None` when it fits now.
    fn wait_needed(&self, now: Instant, inner: &Inner) -> Option<Duration> {
        if let Some(until) = self.paused_until {
            return Some(until - now);
        }
        if self.requests.len() >= inner.max_requests {
            let oldest = self.requests.front().copied().unwrap_or(now);
            return Some(
                (oldest + inner.window)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        if self.execution_total >= inner.max_execution {
            let oldest = self.executions.front().map_or(now, |(t, _)| *t);
            return Some(
                (oldest + inner.window)
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;

    fn defaults() -> RateLimitSettings {
        RateLimitSettings::default()
    }

    #[test]
    fn headroom_is_taken_off_every_limit() {
        let budget = RateBudget::new(&defaults(), Arc::new(VirtualClock::new()));
        assert_eq!(budget.limits(), (5400, Duration::from_secs(1080)));
    }

    /// The largest number of request start times inside any window-long interval.
    fn max_in_any_window(times: &[Instant], window: Duration) -> usize {
        let mut max = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= window {
                start += 1;
            }
            max = max.max(end - start + 1);
        }
        max
    }

    #[tokio::test]
    async fn a_burst_of_ten_thousand_requests_stays_under_the_window_limit() {
        let clock = Arc::new(VirtualClock::new());
        let budget = RateBudget::new(&defaults(), clock.clone());
        let mut sent = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            let (slot, _) = budget.acquire().await;
            sent.push(clock.now());
            slot.finish(Duration::from_millis(20));
        }
        let most = max_in_any_window(&sent, Duration::from_secs(300));
        assert!(most <= 5400, "{most} requests fell inside one 5-minute window");
        assert_eq!(most, 5400, "the budget should use what it is allowed");
        // 10,000 requests at 5,400 per window need two windows' worth of waiting, not more.
        assert!(clock.elapsed() >= Duration::from_secs(300) && clock.elapsed() < Duration::from_secs(601));
    }

    #[tokio::test]
    async fn execution_time_is_budgeted_too() {
        let clock = Arc::new(VirtualClock::new());
        let limits = RateLimitSettings {
            execution_time_per_window: Duration::from_secs(10),
            headroom_percent: 0,
            ..defaults()
        };
        let budget = RateBudget::new(&limits, clock.clone());
        for _ in 0..5 {
            let (slot, _) = budget.acquire().await;
            slot.finish(Duration::from_secs(4));
        }
        // 3 requests of 4 s exhaust 10 s; the 4th and 5th had to wait for the window to slide.
        assert!(clock.elapsed() >= Duration::from_secs(300), "{:?}", clock.elapsed());
    }

    #[tokio::test]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let clock = Arc::new(VirtualClock::new());
        let budget = RateBudget::new(&defaults(), clock.clone());
        budget.pause_for(Duration::from_secs(30));
        let (slot, waited) = budget.acquire().await;
        slot.finish(Duration::ZERO);
        assert_eq!(waited, Duration::from_secs(30));
        let (_, waited) = budget.acquire().await;
        assert_eq!(waited, Duration::ZERO);
    }

    #[tokio::test]
    async fn concurrency_is_capped() {
        let limits = RateLimitSettings {
            max_concurrent_requests: 2,
            headroom_percent: 0,
            ..defaults()
        };
        let budget = RateBudget::new(&limits, Arc::new(VirtualClock::new()));
        let (a, _) = budget.acquire().await;
        let (_b, _) = budget.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), budget.acquire()).await;
        assert!(third.is_err(), "a third concurrent request must wait");
        a.finish(Duration::ZERO);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), budget.acquire())
                .await
                .is_ok()
        );
    }
}
