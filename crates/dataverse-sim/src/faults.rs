//! Fault injection: latency, 5xx errors, timeouts, connection resets and throttling storms, decided per request
//! from scripted queues first and then from seeded random rates, so a run with the same seed and the same request
//! sequence injects the same faults.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Faults to apply at start (from a TOML or JSON file or the CLI) or at any time through
/// [`crate::Faults::apply`]. Every field is optional.
///
/// ```toml
/// seed = 7
/// latency_ms = 20
/// reset_rate = 0.01
/// [error_rates]
/// 503 = 0.05
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed for the random fault decisions.
    pub seed: Option<u64>,
    /// Latency added to every request, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Probability per request of answering with a status, by status (500, 502, 503 or 504).
    pub error_rates: BTreeMap<String, f64>,
    /// Probability per request of dropping the connection without an answer.
    pub reset_rate: Option<f64>,
    /// Probability per request of holding the request for `hang_ms` and then dropping the connection.
    pub timeout_rate: Option<f64>,
    /// How long a timed-out request is held, in milliseconds (default 30,000).
    pub hang_ms: Option<u64>,
    /// Answer the next N Dataverse requests with 429.
    pub throttle_next: Option<u32>,
    /// Answer every Dataverse request with 429 for this many seconds from now.
    pub throttle_for_s: Option<u64>,
    /// The `Retry-After` of injected 429s, in seconds (default 1).
    pub throttle_retry_after_s: Option<u64>,
    /// Expire every delta token issued so far.
    pub expire_delta_tokens: bool,
    /// Client ids whose secrets expire now.
    pub expired_secrets: Vec<String>,
    /// Columns removed from metadata, as `table.column` (e.g. `contact.hlf_showonpublicsite`).
    pub dropped_columns: Vec<String>,
    /// Columns dropped earlier to bring back, as `table.column`.
    pub restored_columns: Vec<String>,
    /// The application user's security role, as privilege names with an optional depth (`prvReadContact`,
    /// `prvWriteContact:Basic`; organisation depth when omitted). Once set, `RetrieveUserPrivileges` answers it and
    /// every table request needs its privilege (403, 0x80040220, when missing).
    pub role: Option<Vec<String>>,
    /// Faults after the request was carried out: the change is made, then the answer is lost.
    pub after_commit: AfterCommitConfig,
}

/// Faults that strike after a request was carried out (its change committed): what a client sees when Dynamics
/// finishes a request but the answer never arrives or arrives as an error.
///
/// ```toml
/// [after_commit]
/// reset_rate = 0.01    # applied, then the connection is dropped
/// timeout_rate = 0.01  # applied, the answer held for `hang_ms`, then dropped
/// [after_commit.error_rates]
/// 504 = 0.01           # applied, then answered with the status
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AfterCommitConfig {
    /// Probability per request of answering with a status (500, 502, 503 or 504) after carrying it out.
    pub error_rates: BTreeMap<String, f64>,
    /// Probability per request of dropping the connection after carrying it out.
    pub reset_rate: Option<f64>,
    /// Probability per request of holding the answer for `hang_ms` after carrying it out, then dropping it.
    pub timeout_rate: Option<f64>,
    /// Strike the next N requests with a reset after carrying them out.
    pub reset_next: Option<u32>,
    /// Strike the next N requests with a held answer after carrying them out.
    pub timeout_next: Option<u32>,
}

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Answer with this status.
    Status(u16),
    /// Drop the connection.
    Reset,
    /// Hold the request, then drop the connection.
    Hang(Duration),
    /// Answer 429 with this `Retry-After`.
    Throttle(u64),
    /// Carry the request out, then hold the answer this long and drop the connection: Dynamics finishing a request
    /// the client gave up on.
    LateAnswer(Duration),
    /// Carry the request out, then drop the connection without an answer.
    ResetAfterCommit,
    /// Carry the request out, then answer with this status instead of its result.
    StatusAfterCommit(u16),
}

impl Action {
    /// Whether the request is carried out before the fault strikes.
    pub(crate) fn after_commit(self) -> bool {
        matches!(
            self,
            Action::LateAnswer(_) | Action::ResetAfterCommit | Action::StatusAfterCommit(_)
        )
    }
}

/// A pending etag race: the next update of a matching row first gets a server-side modification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Race {
    pub(crate) entity_set: String,
    pub(crate) row: Option<Uuid>,
}

/// The mutable fault settings.
#[derive(Debug)]
pub(crate) struct FaultState {
    rng: StdRng,
    latency: Duration,
    error_rates: Vec<(u16, f64)>,
    reset_rate: f64,
    timeout_rate: f64,
    after_error_rates: Vec<(u16, f64)>,
    after_reset_rate: f64,
    after_timeout_rate: f64,
    pub(crate) hang: Duration,
    scripted: VecDeque<Action>,
    throttle_until: Option<DateTime<Utc>>,
    retry_after: u64,
    pub(crate) races: Vec<Race>,
    /// Entity sets the app may read but not write (403, privilege missing).
    pub(crate) denied: Vec<String>,
    /// The application user's security role.
    pub(crate) role: crate::role::Role,
}

impl FaultState {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            latency: Duration::ZERO,
            error_rates: Vec::new(),
            reset_rate: 0.0,
            timeout_rate: 0.0,
            after_error_rates: Vec::new(),
            after_reset_rate: 0.0,
            after_timeout_rate: 0.0,
            hang: Duration::from_secs(30),
            scripted: VecDeque::new(),
            throttle_until: None,
            retry_after: 1,
            races: Vec::new(),
            denied: Vec::new(),
            role: crate::role::Role::default(),
        }
    }

    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    pub(crate) fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    pub(crate) fn set_error_rate(&mut self, status: u16, rate: f64) {
        set_rate(&mut self.error_rates, status, rate);
    }

    pub(crate) fn set_after_commit_error_rate(&mut self, status: u16, rate: f64) {
        set_rate(&mut self.after_error_rates, status, rate);
    }

    pub(crate) fn set_after_commit_reset_rate(&mut self, rate: f64) {
        self.after_reset_rate = rate.clamp(0.0, 1.0);
    }

    pub(crate) fn set_after_commit_timeout_rate(&mut self, rate: f64) {
        self.after_timeout_rate = rate.clamp(0.0, 1.0);
    }

    pub(crate) fn set_reset_rate(&mut self, rate: f64) {
        self.reset_rate = rate.clamp(0.0, 1.0);
    }

    pub(crate) fn set_timeout_rate(&mut self, rate: f64) {
        self.timeout_rate = rate.clamp(0.0, 1.0);
    }

    pub(crate) fn push(&mut self, action: Action, times: u32) {
        for _ in 0..times {
            self.scripted.push_back(action);
        }
    }

    pub(crate) fn throttle_until(&mut self, until: DateTime<Utc>, retry_after: u64) {
        self.throttle_until = Some(until);
        self.retry_after = retry_after;
    }

    pub(crate) fn retry_after(&self) -> u64 {
        self.retry_after
    }

    pub(crate) fn set_retry_after(&mut self, secs: u64) {
        self.retry_after = secs;
    }

    /// Clears every fault (the seed's sequence continues).
    pub(crate) fn clear(&mut self) {
        self.latency = Duration::ZERO;
        self.error_rates.clear();
        self.reset_rate = 0.0;
        self.timeout_rate = 0.0;
        self.after_error_rates.clear();
        self.after_reset_rate = 0.0;
        self.after_timeout_rate = 0.0;
        self.scripted.clear();
        self.throttle_until = None;
        self.races.clear();
        self.denied.clear();
        self.role = crate::role::Role::default();
    }

    /// Decides the latency and the fault (if any) for one request.
    pub(crate) fn decide(&mut self, now: DateTime<Utc>) -> (Duration, Option<Action>) {
        if let Some(a) = self.scripted.pop_front() {
            return (self.latency, Some(a));
        }
        if self.throttle_until.is_some_and(|until| now < until) {
            return (self.latency, Some(Action::Throttle(self.retry_after)));
        }
        let roll: f64 = if self.error_rates.is_empty()
            && self.reset_rate == 0.0
            && self.timeout_rate == 0.0
            && self.after_error_rates.is_empty()
            && self.after_reset_rate == 0.0
            && self.after_timeout_rate == 0.0
        {
            return (self.latency, None);
        } else {
            self.rng.random()
        };
        let mut acc = 0.0;
        for (status, rate) in &self.error_rates {
            acc += rate;
            if roll < acc {
                return (self.latency, Some(Action::Status(*status)));
            }
        }
        acc += self.reset_rate;
        if roll < acc {
            return (self.latency, Some(Action::Reset));
        }
        acc += self.timeout_rate;
        if roll < acc {
            return (self.latency, Some(Action::Hang(self.hang)));
        }
        for (status, rate) in &self.after_error_rates {
            acc += rate;
            if roll < acc {
                return (self.latency, Some(Action::StatusAfterCommit(*status)));
            }
        }
        acc += self.after_reset_rate;
        if roll < acc {
            return (self.latency, Some(Action::ResetAfterCommit));
        }
        acc += self.after_timeout_rate;
        if roll < acc {
            return (self.latency, Some(Action::LateAnswer(self.hang)));
        }
        (self.latency, None)
    }

    /// Takes the pending race matching this row, if any.
    pub(crate) fn take_race(&mut self, entity_set: &str, row: Uuid) -> bool {
        let pos = self
            .races
            .iter()
            .position(|r| r.entity_set == entity_set && r.row.is_none_or(|id| id == row));
        pos.map(|i| self.races.remove(i)).is_some()
    }
}

fn set_rate(rates: &mut Vec<(u16, f64)>, status: u16, rate: f64) {
    rates.retain(|(s, _)| *s != status);
    if rate > 0.0 {
        rates.push((status, rate.min(1.0)));
        rates.sort_by_key(|(s, _)| *s);
    }
}
