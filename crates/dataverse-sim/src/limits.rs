//! Service protection as Dataverse documents it: per user, a sliding window of requests, of combined execution
//! time, and a cap on concurrent requests; throttled requests get 429 with `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::StatusCode;
use uuid::Uuid;

use crate::dverror::{self, DvError};

/// The service-protection limits. The defaults are Dataverse's documented values; tests make them small.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// The sliding window (5 minutes in Dataverse).
    pub window: Duration,
    /// Requests per user per window (6,000); a `$batch` counts once.
    pub max_requests: u32,
    /// Combined execution time per user per window (1,200 s).
    pub max_execution_time: Duration,
    /// Concurrent requests per user (52).
    pub max_concurrent: u32,
    /// The execution time charged per operation; a `$batch` of N operations is charged N times this.
    pub cost_per_operation: Duration,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            max_requests: 6000,
            max_execution_time: Duration::from_secs(1200),
            max_concurrent: 52,
            cost_per_operation: Duration::from_millis(10),
        }
    }
}

#[derive(Debug, Default)]
struct UserWindow {
    requests: VecDeque<DateTime<Utc>>,
    executions: VecDeque<(DateTime<Utc>, u64)>,
    in_flight: u32,
}

/// The per-user accounting.
#[derive(Debug)]
pub(crate) struct Limiter {
    limits: Mutex<ServiceLimits>,
    users: Mutex<HashMap<Uuid, UserWindow>>,
}

/// A request admitted under the limits; dropping it ends the request's concurrency slot.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    user: Uuid,
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The execution time charged in a user's window; saturating, since costs are configurable without bound.
fn spent_ms(w: &UserWindow) -> u64 {
    w.executions.iter().fold(0u64, |sum, (_, ms)| sum.saturating_add(*ms))
}

fn throttled(code: &'static str, message: String, retry_after: u64) -> DvError {
    let mut e = DvError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
    e.retry_after = Some(retry_after.max(1));
    e
}

impl Limiter {
    pub(crate) fn new(limits: ServiceLimits) -> Arc<Self> {
        Arc::new(Self {
            limits: Mutex::new(limits),
            users: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn set_limits(&self, limits: ServiceLimits) {
        *self.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    }

    pub(crate) fn limits(&self) -> ServiceLimits {
        self.limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Forgets all accounting (a fresh window for everyone).
    pub(crate) fn reset(&self) {
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Admits a request or answers why not.
    pub(crate) fn admit(self: &Arc<Self>, user: Uuid, now: DateTime<Utc>) -> Result<Permit, DvError> {
        let limits = self.limits();
        let window = chrono::Duration::from_std(limits.window).unwrap_or(chrono::Duration::seconds(300));
        let mut users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = users.entry(user).or_default();
        // Limits can be replaced at run time with any window: a window end past the calendar's end never comes.
        let window_end = |t: DateTime<Utc>| t.checked_add_signed(window).unwrap_or(DateTime::<Utc>::MAX_UTC);
        while w.requests.front().is_some_and(|t| window_end(*t) <= now) {
            w.requests.pop_front();
        }
        while w.executions.front().is_some_and(|(t, _)| window_end(*t) <= now) {
            w.executions.pop_front();
        }
        let until = |t: DateTime<Utc>| {
            u64::try_from(window_end(t).signed_duration_since(now).num_seconds())
                .unwrap_or(0)
                .saturating_add(1)
        };
        if w.in_flight >= limits.max_concurrent {
            return Err(throttled(
                dverror::THROTTLE_CONCURRENCY,
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    limits.max_concurrent
                ),
                1,
            ));
        }
        if w.requests.len() >= limits.max_requests as usize {
            let retry = w.requests.front().map_or(1, |t| until(*t));
            return Err(throttled(
                dverror::THROTTLE_REQUESTS,
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    limits.max_requests,
                    limits.window.as_secs()
                ),
                retry,
            ));
        }
        let spent = spent_ms(w);
        let max_ms = u64::try_from(limits.max_execution_time.as_millis()).unwrap_or(u64::MAX);
        if spent >= max_ms {
            let retry = w.executions.front().map_or(1, |(t, _)| until(*t));
            return Err(throttled(
                dverror::THROTTLE_TIME,
                format!(
                    "Combined execution time of incoming requests exceeded limit of {} milliseconds over time window of {} seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later.",
                    thousands(max_ms),
                    limits.window.as_secs()
                ),
                retry,
            ));
        }
        w.requests.push_back(now);
        w.in_flight += 1;
        Ok(Permit {
            limiter: Arc::clone(self),
            user,
        })
    }

    /// The remaining requests and execution time (ms) in a user's window, for the debugging headers.
    pub(crate) fn remaining(&self, user: Uuid) -> (u64, u64) {
        let limits = self.limits();
        let users = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = users.get(&user);
        let used = w.map_or(0, |w| w.requests.len() as u64);
        let spent = w.map_or(0, spent_ms);
        let max_ms = u64::try_from(limits.max_execution_time.as_millis()).unwrap_or(u64::MAX);
        (
            u64::from(limits.max_requests).saturating_sub(used),
            max_ms.saturating_sub(spent),
        )
    }
}

impl Permit {
    /// Charges `operations` times the configured cost to the user's execution-time window.
    pub(crate) fn charge(&self, operations: u64, now: DateTime<Utc>) {
        let cost = u64::try_from(self.limiter.limits().cost_per_operation.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(operations);
        let mut users = self
            .limiter
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = users.get_mut(&self.user) {
            w.executions.push_back((now, cost));
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut users = self
            .limiter
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = users.get_mut(&self.user) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits_like_the_documented_message() {
        assert_eq!(thousands(1_200_000), "1,200,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
    }
}
