//! What a run did per mentor, in one compact map: a first sync touches every mentor, so this is the part of a run's
//! memory that grows with the number of mentors (about 80 bytes each, against 150 for the two maps it replaced).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Per mentor touched this run: whether it was decided (and at which app change), and how many Dynamics writes were
/// sent for it.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    by_mentor: BTreeMap<Box<str>, Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The app change time the latest decision saw; `None` when the mentor is not decided (never, or the decision
    /// was undone so it is decided again).
    decided_at: Option<DateTime<Utc>>,
    /// Writes sent this run: each gets its own sync stamp, so the stamp tells which of two writes landed.
    writes: u32,
}

impl Touched {
    /// The app change time the mentor's decision saw, if it was decided this run.
    pub(crate) fn decided_at(&self, app_id: &str) -> Option<DateTime<Utc>> {
        self.by_mentor.get(app_id).and_then(|e| e.decided_at)
    }

    /// Whether the mentor was decided this run.
    pub(crate) fn is_decided(&self, app_id: &str) -> bool {
        self.decided_at(app_id).is_some()
    }

    /// Records a decision at the app change time `at`; answers whether the mentor was decided already.
    pub(crate) fn decide(&mut self, app_id: &str, at: DateTime<Utc>) -> bool {
        // Looked up first, so a mentor already here costs no allocation for its key.
        if let Some(entry) = self.by_mentor.get_mut(app_id) {
            return entry.decided_at.replace(at).is_some();
        }
        let entry = Entry {
            decided_at: Some(at),
            writes: 0,
        };
        self.by_mentor.insert(app_id.into(), entry);
        false
    }

    /// Undoes the mentor's decision, so it is decided again (its count of writes stays).
    pub(crate) fn undecide(&mut self, app_id: &str) {
        if let Some(entry) = self.by_mentor.get_mut(app_id) {
            entry.decided_at = None;
        }
    }

    /// Counts a write sent for the mentor; answers how many were sent before it this run.
    pub(crate) fn count_write(&mut self, app_id: &str) -> u32 {
        if let Some(entry) = self.by_mentor.get_mut(app_id) {
            entry.writes += 1;
            return entry.writes - 1;
        }
        let entry = Entry {
            decided_at: None,
            writes: 1,
        };
        self.by_mentor.insert(app_id.into(), entry);
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("a valid time")
    }

    #[test]
    fn a_decision_is_kept_until_undone_and_writes_count_across_it() {
        let mut t = Touched::default();
        assert_eq!(t.decided_at("m1"), None);
        assert!(!t.decide("m1", at(10)));
        assert!(t.is_decided("m1"));
        assert!(t.decide("m1", at(20)), "a second decision knows about the first");
        assert_eq!(t.decided_at("m1"), Some(at(20)));
        assert_eq!(t.count_write("m1"), 0);
        assert_eq!(t.count_write("m1"), 1);
        t.undecide("m1");
        assert!(!t.is_decided("m1"));
        assert_eq!(
            t.count_write("m1"),
            2,
            "undoing a decision keeps the count of writes sent"
        );
        assert!(!t.decide("m1", at(30)), "decided again after being undone");
        t.undecide("m2");
        assert!(!t.is_decided("m2"));
        assert_eq!(t.count_write("m2"), 0, "a mentor only written to starts at 0");
        assert!(!t.is_decided("m2"), "counting a write does not decide");
    }
}
