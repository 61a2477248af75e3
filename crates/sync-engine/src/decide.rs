//! The sync's decisions as pure functions: no IO, no clock, nothing async. Everything the engine does to a record is
//! chosen here from what is known about it, so the sync's semantics can be read in one place and tested as tables.
//!
//! - [`decide_field`]: one field, from (owner, strategy, shadow, app value, Dynamics value, per-field change times,
//!   the field's held conflict or admin resolution) to an [`Action`] and what happens to the field's conflict.
//! - [`decide_record`]: every field of one record, with the shadow the record has once the app writes are done
//!   (`agreed`) and once the Dynamics writes succeed (`after_write`), and the per-field change memory to keep.
//! - [`link_status`] and [`claim`]: whether a link still stands (the mentor may have left the app or taken another
//!   member number) and whether a mentor may take a contact another mentor is linked to.
//! - [`pending_landed`]: whether a write whose answer never arrived reached Dynamics.
//!
//! The run (`run/`) reads both sides, calls these, and carries out the result.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use field_mapping::{AppRecord, AppValue, ConflictStrategy, FieldKind, Owner, RecordMapping};
use integration_config::ConflictPolicy;
use sync_store::{FieldSeen, Link, SeenValue, Side};

use crate::record::SYNC_STAMP;

/// A conflict on one field that is not closed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Held for an admin (strategy `manual`): neither side is written while the values differ.
    Held {
        /// The conflict's id.
        id: String,
    },
    /// An admin chose a side; the chosen value is written next.
    Resolved {
        /// The conflict's id.
        id: String,
        /// The side whose value wins.
        side: Side,
    },
}

/// When each side last changed one field, as far as the engine knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldTimes {
    /// The app's edit.
    pub(crate) app: Option<DateTime<Utc>>,
    /// Dynamics' edit.
    pub(crate) dynamics: Option<DateTime<Utc>>,
}

/// What to do with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Both sides hold this value; nothing to write.
    InSync(AppValue),
    /// Write this value to Dynamics.
    WriteDynamics(AppValue),
    /// Write this value into the app.
    WriteApp(AppValue),
    /// Hold the field for an admin with these current values: nothing is written and the shadow stays.
    Hold {
        /// The app's current value.
        app: AppValue,
        /// Dynamics' current value.
        dynamics: AppValue,
    },
}

/// What happens to the field's conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConflictChange {
    /// No conflict is involved.
    None,
    /// Both sides changed the field to different values and the strategy chose one (a conflict, counted).
    Decided,
    /// The field is held: a new conflict opens (counted), or the held one takes the current values.
    Hold,
    /// The held conflict closes by itself: both sides now hold the same value.
    Settle(String),
    /// This decision carries out an admin's resolution; it is closed once its writes succeed.
    Apply(String),
}

/// Everything one field's decision depends on. Values are normalised by the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldInput<'a> {
    /// Which side owns the field.
    pub(crate) owner: Owner,
    /// How a conflict on it is resolved.
    pub(crate) strategy: ConflictStrategy,
    /// The value both sides last agreed on; `None` before the record was ever in agreement.
    pub(crate) shadow: Option<&'a AppValue>,
    /// The app's value.
    pub(crate) app: &'a AppValue,
    /// Dynamics' value.
    pub(crate) dynamics: &'a AppValue,
    /// When each side changed it.
    pub(crate) times: FieldTimes,
    /// Its open or resolved conflict.
    pub(crate) pending: Option<&'a Pending>,
}

/// The decision for one field.
///
/// An admin's resolution decides whatever the values are; a held conflict stays held until both sides hold the same
/// value; otherwise ownership decides, and a shared field changed on both sides to different values is a conflict
/// the strategy resolves (`newest-wins` compares the two edits of this field; Dynamics, the system of record, wins a
/// tie).
pub(crate) fn decide_field(input: FieldInput<'_>) -> (Action, ConflictChange) {
    let FieldInput {
        owner,
        strategy,
        shadow,
        app,
        dynamics,
        times,
        pending,
    } = input;
    match pending {
        Some(Pending::Resolved { id, side }) => {
            let apply = ConflictChange::Apply(id.clone());
            if app == dynamics {
                return (Action::InSync(app.clone()), apply);
            }
            return match side {
                Side::App => (Action::WriteDynamics(app.clone()), apply),
                Side::Dynamics => (Action::WriteApp(dynamics.clone()), apply),
            };
        }
        Some(Pending::Held { id }) => {
            if app == dynamics {
                return (Action::InSync(app.clone()), ConflictChange::Settle(id.clone()));
            }
            return (
                Action::Hold {
                    app: app.clone(),
                    dynamics: dynamics.clone(),
                },
                ConflictChange::Hold,
            );
        }
        None => {}
    }
    if app == dynamics {
        return (Action::InSync(app.clone()), ConflictChange::None);
    }
    match owner {
        Owner::App => (Action::WriteDynamics(app.clone()), ConflictChange::None),
        Owner::Dynamics => (Action::WriteApp(dynamics.clone()), ConflictChange::None),
        Owner::Shared => {
            let app_changed = shadow != Some(app);
            let dynamics_changed = shadow != Some(dynamics);
            match (app_changed, dynamics_changed) {
                (true, false) => (Action::WriteDynamics(app.clone()), ConflictChange::None),
                (false, true) => (Action::WriteApp(dynamics.clone()), ConflictChange::None),
                // Both changed (or there is no shadow yet): a conflict.
                _ => {
                    let winner = match strategy {
                        ConflictStrategy::AppWins => Side::App,
                        ConflictStrategy::DynamicsWins => Side::Dynamics,
                        ConflictStrategy::NewestWins => newest(times),
                        ConflictStrategy::Manual => {
                            return (
                                Action::Hold {
                                    app: app.clone(),
                                    dynamics: dynamics.clone(),
                                },
                                ConflictChange::Hold,
                            );
                        }
                    };
                    match winner {
                        Side::App => (Action::WriteDynamics(app.clone()), ConflictChange::Decided),
                        Side::Dynamics => (Action::WriteApp(dynamics.clone()), ConflictChange::Decided),
                    }
                }
            }
        }
    }
}

/// The side whose edit of the field came last. Dynamics wins a tie and an unknown app time; the app wins when
/// Dynamics gave no time at all.
fn newest(times: FieldTimes) -> Side {
    match (times.app, times.dynamics) {
        (Some(app), Some(dynamics)) if app > dynamics => Side::App,
        (Some(_), None) => Side::App,
        _ => Side::Dynamics,
    }
}

/// Everything one record's decision depends on.
#[derive(Clone, Copy)]
pub(crate) struct RecordInput<'a> {
    /// The record's mapping.
    pub(crate) mapping: &'a RecordMapping,
    /// The conflict strategies.
    pub(crate) policy: &'a ConflictPolicy,
    /// The values both sides last agreed on (already including a write that is known to have landed).
    pub(crate) shadow: Option<&'a AppRecord>,
    /// The app's values.
    pub(crate) app: &'a AppRecord,
    /// Dynamics' values (the shadow when Dynamics was not read: the etag then guards the write).
    pub(crate) dynamics: &'a AppRecord,
    /// What the engine remembers of each side's unsynced change per field.
    pub(crate) seen: &'a BTreeMap<String, FieldSeen>,
    /// When each side's row last changed, per field, for a change the engine had not seen before.
    pub(crate) default_times: &'a dyn Fn(&str) -> FieldTimes,
    /// The record's open or resolved conflicts, by field.
    pub(crate) pending: &'a BTreeMap<String, Pending>,
    /// Fields whose Dynamics value could not be read (a value the mapping does not know): an app-owned one is
    /// written anyway (the app's value wins whatever Dynamics holds), any other keeps its shadow.
    pub(crate) unreadable: &'a BTreeSet<String>,
}

/// A field held for an admin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeldField {
    /// The field.
    pub(crate) field: String,
    /// The last agreed value.
    pub(crate) shadow: Option<AppValue>,
    /// The app's value.
    pub(crate) app: AppValue,
    /// Dynamics' value.
    pub(crate) dynamics: AppValue,
    /// When each side changed it.
    pub(crate) times: FieldTimes,
    /// Whether a conflict was already held for it (its values are updated, nobody is notified again).
    pub(crate) already_held: bool,
}

/// What the sync does with one record.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RecordOutcome {
    /// Values to write into the app.
    pub(crate) to_app: Vec<(String, AppValue)>,
    /// Values to write to Dynamics.
    pub(crate) to_dynamics: Vec<(String, AppValue)>,
    /// The shadow once the app writes are done (pending Dynamics writes not included).
    pub(crate) agreed: AppRecord,
    /// The shadow once the Dynamics writes succeed too.
    pub(crate) after_write: AppRecord,
    /// The per-field change memory to keep with `agreed`.
    pub(crate) seen: BTreeMap<String, FieldSeen>,
    /// Fields held for an admin.
    pub(crate) held: Vec<HeldField>,
    /// Held conflicts that closed because both sides agree.
    pub(crate) settled: Vec<String>,
    /// Admin resolutions carried out once the app writes are done.
    pub(crate) applied_with_app: Vec<String>,
    /// Admin resolutions carried out once the Dynamics writes succeed.
    pub(crate) applied_with_write: Vec<String>,
    /// Conflicts detected (decided by a strategy or newly held).
    pub(crate) conflicts: u64,
}

impl RecordOutcome {
    /// Whether nothing is written to either side.
    pub(crate) fn writes_nothing(&self) -> bool {
        self.to_app.is_empty() && self.to_dynamics.is_empty()
    }
}

/// The decision for one record: every mapped field present on both sides, through [`decide_field`].
pub(crate) fn decide_record(input: RecordInput<'_>) -> RecordOutcome {
    let RecordInput {
        mapping,
        policy,
        shadow,
        app,
        dynamics,
        seen,
        default_times,
        pending,
        unreadable,
    } = input;
    let mut out = RecordOutcome::default();
    for spec in mapping.fields() {
        let field = spec.field.as_str();
        let old = shadow.and_then(|s| s.get(field)).map(|v| spec.normalise(v));
        let keep_old = |out: &mut RecordOutcome| {
            if let Some(old) = &old {
                out.agreed.insert(field.to_owned(), old.clone());
                out.after_write.insert(field.to_owned(), old.clone());
            }
        };
        if field == SYNC_STAMP {
            // The stamp records when the app last wrote; it never causes a write by itself.
            let value = dynamics.get(field).cloned().unwrap_or(AppValue::Null);
            out.agreed.insert(field.to_owned(), value.clone());
            out.after_write.insert(field.to_owned(), value);
            continue;
        }
        if unreadable.contains(field)
            && spec.owner == Owner::App
            && let Some(app_value) = app.get(field)
        {
            let value = spec.normalise(app_value);
            keep_old(&mut out);
            out.after_write.insert(field.to_owned(), value.clone());
            out.to_dynamics.push((field.to_owned(), value));
            continue;
        }
        // A field missing from either side is not compared (the caller reads complete records; a partial one must
        // not be mistaken for a deletion): it keeps what the shadow knew.
        let (Some(app_value), Some(dynamics_value)) = (app.get(field), dynamics.get(field)) else {
            keep_old(&mut out);
            continue;
        };
        let (app_value, dynamics_value) = (spec.normalise(app_value), spec.normalise(dynamics_value));
        let times = field_times(seen.get(field), &app_value, &dynamics_value, default_times(field));
        let field_pending = pending.get(field);
        let (action, change) = decide_field(FieldInput {
            owner: spec.owner,
            strategy: policy.strategy_for(field),
            shadow: old.as_ref(),
            app: &app_value,
            dynamics: &dynamics_value,
            times,
            pending: field_pending,
        });
        match change {
            ConflictChange::None => {}
            ConflictChange::Decided => out.conflicts += 1,
            ConflictChange::Hold => {
                let already_held = matches!(field_pending, Some(Pending::Held { .. }));
                if !already_held {
                    out.conflicts += 1;
                }
                out.held.push(HeldField {
                    field: field.to_owned(),
                    shadow: old.clone(),
                    app: app_value.clone(),
                    dynamics: dynamics_value.clone(),
                    times,
                    already_held,
                });
            }
            ConflictChange::Settle(id) => out.settled.push(id),
            ConflictChange::Apply(id) => match action {
                Action::WriteDynamics(_) => out.applied_with_write.push(id),
                _ => out.applied_with_app.push(id),
            },
        }
        match action {
            Action::InSync(value) | Action::WriteApp(value) => {
                let write = app_value != value;
                out.agreed.insert(field.to_owned(), value.clone());
                out.after_write.insert(field.to_owned(), value.clone());
                if write {
                    out.to_app.push((field.to_owned(), value));
                }
            }
            Action::WriteDynamics(value) => {
                keep_old(&mut out);
                out.after_write.insert(field.to_owned(), value.clone());
                out.to_dynamics.push((field.to_owned(), value));
            }
            Action::Hold { .. } => keep_old(&mut out),
        }
        remember(
            &mut out.seen,
            field,
            seen.get(field),
            &app_value,
            &dynamics_value,
            times,
            &out.agreed,
        );
    }
    out
}

/// The times a field's edits are taken to have happened: what the engine remembered when it first saw the value
/// (while it is still the value), otherwise the time of the row that holds the field.
fn field_times(seen: Option<&FieldSeen>, app: &AppValue, dynamics: &AppValue, default: FieldTimes) -> FieldTimes {
    let remembered = |side: Option<&SeenValue>, value: &AppValue| side.filter(|s| &s.value == value).map(|s| s.at);
    FieldTimes {
        app: remembered(seen.and_then(|s| s.app.as_ref()), app).or(default.app),
        dynamics: remembered(seen.and_then(|s| s.dynamics.as_ref()), dynamics).or(default.dynamics),
    }
}

/// Remembers, per side, a value that differs from the shadow and when it was first seen, so a later decision
/// compares the times of the edits of this field and not of whatever changed the row since.
fn remember(
    into: &mut BTreeMap<String, FieldSeen>,
    field: &str,
    old: Option<&FieldSeen>,
    app: &AppValue,
    dynamics: &AppValue,
    times: FieldTimes,
    shadow: &AppRecord,
) {
    let agreed = shadow.get(field);
    let side = |value: &AppValue, at: Option<DateTime<Utc>>, before: Option<&SeenValue>| -> Option<SeenValue> {
        if agreed == Some(value) {
            return None;
        }
        match before {
            Some(before) if &before.value == value => Some(before.clone()),
            _ => at.map(|at| SeenValue {
                value: value.clone(),
                at,
            }),
        }
    };
    let entry = FieldSeen {
        app: side(app, times.app, old.and_then(|o| o.app.as_ref())),
        dynamics: side(dynamics, times.dynamics, old.and_then(|o| o.dynamics.as_ref())),
    };
    if entry.app.is_some() || entry.dynamics.is_some() {
        into.insert(field.to_owned(), entry);
    }
}

/// Drops remembered changes that a new shadow has caught up with.
pub(crate) fn forget_settled(seen: &BTreeMap<String, FieldSeen>, shadow: &AppRecord) -> BTreeMap<String, FieldSeen> {
    seen.iter()
        .filter_map(|(field, entry)| {
            let agreed = shadow.get(field);
            let keep = |side: &Option<SeenValue>| side.clone().filter(|s| Some(&s.value) != agreed);
            let entry = FieldSeen {
                app: keep(&entry.app),
                dynamics: keep(&entry.dynamics),
            };
            (entry.app.is_some() || entry.dynamics.is_some()).then(|| (field.clone(), entry))
        })
        .collect()
}

/// Whether a write recorded as pending (sent, answer never confirmed) reached Dynamics. The write's sync stamp is
/// its receipt: every write carries the run's own stamp, so Dynamics holding that stamp means it landed, whatever
/// anyone changed since. Without a mapped stamp, every written value must still be there.
pub(crate) fn pending_landed(mapping: &RecordMapping, pending: &AppRecord, dynamics: &AppRecord) -> bool {
    let same = |field: &str, value: &AppValue| {
        let normalise = |v: &AppValue| mapping.field(field).map_or_else(|| v.clone(), |spec| spec.normalise(v));
        dynamics.get(field).map(normalise) == Some(normalise(value))
    };
    match pending.get(SYNC_STAMP) {
        Some(stamp) if mapping.field(SYNC_STAMP).is_some() && !matches!(stamp, AppValue::Null) => {
            same(SYNC_STAMP, stamp)
        }
        _ => !pending.is_empty() && pending.iter().all(|(field, value)| same(field, value)),
    }
}

/// The shadow to decide against: the stored one, with a pending write's values once it is known to have landed.
pub(crate) fn effective_shadow(mapping: &RecordMapping, link: &Link, dynamics: Option<&AppRecord>) -> AppRecord {
    let mut shadow = link.shadow.clone();
    if let (Some(pending), Some(dynamics)) = (&link.pending, dynamics)
        && pending_landed(mapping, pending, dynamics)
    {
        for (field, value) in pending {
            shadow.insert(field.clone(), value.clone());
        }
    }
    shadow
}

/// Whether a link still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkStatus {
    /// The mentor is in the app with the member number the link was made by.
    Stands,
    /// The mentor is no longer in the app (deleted, or moved to another organisation).
    MentorGone,
    /// The app gave the mentor another member number: they are another member now, and the contact is released.
    Renumbered,
}

/// Whether `link` still stands, given the mentor's current member number (`None` when the mentor is gone). A
/// member number Dynamics changed keeps the link (the contact is the same person, whose new number flows to the
/// app); one the app changed moves the mentor to the contact with that number.
pub(crate) fn link_status(link: &Link, mentor: Option<Option<&str>>) -> LinkStatus {
    match mentor {
        None => LinkStatus::MentorGone,
        Some(number) if number.map(str::trim) == Some(link.alternate_key.trim()) => LinkStatus::Stands,
        Some(_) => LinkStatus::Renumbered,
    }
}

/// What a mentor looking for its contact may do with a contact that is already linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Nobody holds the contact: link it.
    Free,
    /// Its link no longer stands (the other mentor left or took another number): end that link, then link it.
    TakeOver,
    /// Another mentor still holds the contact by the same member number: two mentors cannot share one member.
    Taken,
}

/// Whether a mentor may take a contact, given the status of the link already on it.
pub(crate) fn claim(existing: Option<LinkStatus>) -> Claim {
    match existing {
        None => Claim::Free,
        Some(LinkStatus::Stands) => Claim::Taken,
        Some(LinkStatus::MentorGone | LinkStatus::Renumbered) => Claim::TakeOver,
    }
}

/// Whether a contact takes part in the sync: it matches the organisation's entity filter (when one is set and the
/// answer is known) and is not deactivated (when the mapping reads the contact's state). A linked contact that
/// leaves the scope is released: its membership ends in the app, as if it were deleted.
pub(crate) fn in_scope(mapping: &RecordMapping, dynamics: &AppRecord, matches_filter: Option<bool>) -> bool {
    matches_filter != Some(false) && contact_active(mapping, dynamics)
}

/// Whether the mapping's `contact_state` (Dataverse `statecode`) says the contact is active. The active option is
/// the one with value 0, whatever the mapping calls it; without the field every contact counts as active.
pub(crate) fn contact_active(mapping: &RecordMapping, dynamics: &AppRecord) -> bool {
    let Some(spec) = mapping.field("contact_state") else {
        return true;
    };
    let FieldKind::Choice { options } = &spec.kind else {
        return true;
    };
    match dynamics.get("contact_state") {
        Some(AppValue::Choice(name)) => options.get(name).is_none_or(|value| *value == 0),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use field_mapping::HLF_DEFAULT_MAPPING;

    use super::*;

    fn v(s: &str) -> AppValue {
        AppValue::Text(s.to_owned())
    }

    /// Who changed the field since the shadow "s".
    #[derive(Debug, Clone, Copy)]
    enum Who {
        Nobody,
        App,
        Dynamics,
        BothSame,
        BothDifferent,
    }

    impl Who {
        const ALL: [Who; 5] = [Who::Nobody, Who::App, Who::Dynamics, Who::BothSame, Who::BothDifferent];

        /// (app, dynamics) values.
        fn values(self) -> (AppValue, AppValue) {
            match self {
                Who::Nobody => (v("s"), v("s")),
                Who::App => (v("a"), v("s")),
                Who::Dynamics => (v("s"), v("d")),
                Who::BothSame => (v("x"), v("x")),
                Who::BothDifferent => (v("a"), v("d")),
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Conflict {
        None,
        Held,
        ResolvedApp,
        ResolvedDynamics,
    }

    const STRATEGIES: [ConflictStrategy; 4] = [
        ConflictStrategy::NewestWins,
        ConflictStrategy::AppWins,
        ConflictStrategy::DynamicsWins,
        ConflictStrategy::Manual,
    ];

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, hour, 0, 0).unwrap()
    }

    /// The expected action, written out: `in(x)`, `app(x)` (write into the app), `dyn(x)` (write to Dynamics),
    /// `hold(a,d)`; and the conflict change: `-`, `decided`, `hold`, `settle`, `apply`.
    #[track_caller]
    fn check(
        owner: Owner,
        strategy: ConflictStrategy,
        who: Who,
        conflict: Conflict,
        times: FieldTimes,
        expected: &str,
    ) {
        let (app, dynamics) = who.values();
        let shadow = v("s");
        let pending = match conflict {
            Conflict::None => None,
            Conflict::Held => Some(Pending::Held { id: "c".into() }),
            Conflict::ResolvedApp => Some(Pending::Resolved {
                id: "c".into(),
                side: Side::App,
            }),
            Conflict::ResolvedDynamics => Some(Pending::Resolved {
                id: "c".into(),
                side: Side::Dynamics,
            }),
        };
        let (action, change) = decide_field(FieldInput {
            owner,
            strategy,
            shadow: Some(&shadow),
            app: &app,
            dynamics: &dynamics,
            times,
            pending: pending.as_ref(),
        });
        let text = |value: &AppValue| match value {
            AppValue::Text(t) => t.clone(),
            other => format!("{other:?}"),
        };
        let action = match action {
            Action::InSync(x) => format!("in({})", text(&x)),
            Action::WriteApp(x) => format!("app({})", text(&x)),
            Action::WriteDynamics(x) => format!("dyn({})", text(&x)),
            Action::Hold { app, dynamics } => format!("hold({},{})", text(&app), text(&dynamics)),
        };
        let change = match change {
            ConflictChange::None => "-",
            ConflictChange::Decided => "decided",
            ConflictChange::Hold => "hold",
            ConflictChange::Settle(_) => "settle",
            ConflictChange::Apply(_) => "apply",
        };
        assert_eq!(
            format!("{action} {change}"),
            expected,
            "owner={owner:?} strategy={strategy:?} who={who:?} conflict={conflict:?} times={times:?}"
        );
    }

    /// Rows that hold for every strategy: (owner, who changed, conflict, expected).
    const TABLE: &[(Owner, usize, Conflict, &str)] = &[
        // App-owned: the app's value always ends up in Dynamics; an edit made in Dynamics is undone.
        (Owner::App, 0, Conflict::None, "in(s) -"),
        (Owner::App, 1, Conflict::None, "dyn(a) -"),
        (Owner::App, 2, Conflict::None, "dyn(s) -"),
        (Owner::App, 3, Conflict::None, "in(x) -"),
        (Owner::App, 4, Conflict::None, "dyn(a) -"),
        // Dynamics-owned: Dynamics' value always ends up in the app; an edit made in the app is undone.
        (Owner::Dynamics, 0, Conflict::None, "in(s) -"),
        (Owner::Dynamics, 1, Conflict::None, "app(s) -"),
        (Owner::Dynamics, 2, Conflict::None, "app(d) -"),
        (Owner::Dynamics, 3, Conflict::None, "in(x) -"),
        (Owner::Dynamics, 4, Conflict::None, "app(d) -"),
        // Shared: the one side that changed wins; the same change on both sides is no conflict.
        (Owner::Shared, 0, Conflict::None, "in(s) -"),
        (Owner::Shared, 1, Conflict::None, "dyn(a) -"),
        (Owner::Shared, 2, Conflict::None, "app(d) -"),
        (Owner::Shared, 3, Conflict::None, "in(x) -"),
        // A held conflict stays held while the values differ, with the current values, and closes by itself as
        // soon as both sides hold the same value.
        (Owner::Shared, 0, Conflict::Held, "in(s) settle"),
        (Owner::Shared, 1, Conflict::Held, "hold(a,s) hold"),
        (Owner::Shared, 2, Conflict::Held, "hold(s,d) hold"),
        (Owner::Shared, 3, Conflict::Held, "in(x) settle"),
        (Owner::Shared, 4, Conflict::Held, "hold(a,d) hold"),
        // An admin's resolution writes the chosen side's current value, or closes when both already agree.
        (Owner::Shared, 0, Conflict::ResolvedApp, "in(s) apply"),
        (Owner::Shared, 1, Conflict::ResolvedApp, "dyn(a) apply"),
        (Owner::Shared, 2, Conflict::ResolvedApp, "dyn(s) apply"),
        (Owner::Shared, 3, Conflict::ResolvedApp, "in(x) apply"),
        (Owner::Shared, 4, Conflict::ResolvedApp, "dyn(a) apply"),
        (Owner::Shared, 0, Conflict::ResolvedDynamics, "in(s) apply"),
        (Owner::Shared, 1, Conflict::ResolvedDynamics, "app(s) apply"),
        (Owner::Shared, 2, Conflict::ResolvedDynamics, "app(d) apply"),
        (Owner::Shared, 3, Conflict::ResolvedDynamics, "in(x) apply"),
        (Owner::Shared, 4, Conflict::ResolvedDynamics, "app(d) apply"),
    ];

    #[test]
    fn every_owner_change_and_conflict_state_decides_as_the_table_says() {
        let times = FieldTimes {
            app: Some(at(9)),
            dynamics: Some(at(10)),
        };
        for (owner, who, conflict, expected) in TABLE {
            for strategy in STRATEGIES {
                check(*owner, strategy, Who::ALL[*who], *conflict, times, expected);
            }
        }
        // Conflicts (held or resolved) exist only for shared fields, but a stray one decides the same way whatever
        // the owner says: the admin's word and a hold outrank ownership.
        for owner in [Owner::App, Owner::Dynamics] {
            for strategy in STRATEGIES {
                check(
                    owner,
                    strategy,
                    Who::BothDifferent,
                    Conflict::Held,
                    times,
                    "hold(a,d) hold",
                );
                check(
                    owner,
                    strategy,
                    Who::BothDifferent,
                    Conflict::ResolvedApp,
                    times,
                    "dyn(a) apply",
                );
                check(owner, strategy, Who::BothSame, Conflict::Held, times, "in(x) settle");
            }
        }
    }

    #[test]
    fn a_shared_field_changed_on_both_sides_is_decided_by_the_strategy_and_the_times_of_its_edits() {
        use ConflictStrategy::*;
        let app_first = FieldTimes {
            app: Some(at(9)),
            dynamics: Some(at(10)),
        };
        let app_last = FieldTimes {
            app: Some(at(11)),
            dynamics: Some(at(10)),
        };
        let tie = FieldTimes {
            app: Some(at(10)),
            dynamics: Some(at(10)),
        };
        let no_dynamics_time = FieldTimes {
            app: Some(at(9)),
            dynamics: None,
        };
        let no_app_time = FieldTimes {
            app: None,
            dynamics: Some(at(9)),
        };
        let c = Conflict::None;
        let both = Who::BothDifferent;
        check(Owner::Shared, AppWins, both, c, app_first, "dyn(a) decided");
        check(Owner::Shared, DynamicsWins, both, c, app_last, "app(d) decided");
        check(Owner::Shared, Manual, both, c, app_last, "hold(a,d) hold");
        check(Owner::Shared, NewestWins, both, c, app_first, "app(d) decided");
        check(Owner::Shared, NewestWins, both, c, app_last, "dyn(a) decided");
        check(Owner::Shared, NewestWins, both, c, tie, "app(d) decided");
        check(Owner::Shared, NewestWins, both, c, no_dynamics_time, "dyn(a) decided");
        check(Owner::Shared, NewestWins, both, c, no_app_time, "app(d) decided");
    }

    #[test]
    fn a_shared_field_without_a_shadow_is_a_conflict_unless_both_sides_agree() {
        let times = FieldTimes::default();
        for strategy in STRATEGIES {
            let (same, _) = decide_field(FieldInput {
                owner: Owner::Shared,
                strategy,
                shadow: None,
                app: &v("x"),
                dynamics: &v("x"),
                times,
                pending: None,
            });
            assert_eq!(same, Action::InSync(v("x")));
            let (_, change) = decide_field(FieldInput {
                owner: Owner::Shared,
                strategy,
                shadow: None,
                app: &v("a"),
                dynamics: &v("d"),
                times,
                pending: None,
            });
            let expected = if strategy == ConflictStrategy::Manual {
                ConflictChange::Hold
            } else {
                ConflictChange::Decided
            };
            assert_eq!(change, expected, "{strategy:?}");
        }
    }

    fn mapping_with_shared_phone() -> RecordMapping {
        let text = HLF_DEFAULT_MAPPING.replace(
            "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"dynamics\"",
            "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"shared\"",
        );
        field_mapping::FieldMapping::from_toml(&text)
            .unwrap()
            .record("mentor")
            .unwrap()
            .clone()
    }

    fn record(pairs: &[(&str, AppValue)]) -> AppRecord {
        pairs.iter().map(|(f, v)| ((*f).to_owned(), v.clone())).collect()
    }

    #[test]
    fn newest_wins_remembers_when_a_change_was_first_seen_not_when_the_row_last_changed() {
        let mapping = mapping_with_shared_phone();
        let policy = ConflictPolicy {
            default: ConflictStrategy::NewestWins,
            ..ConflictPolicy::default()
        };
        let shadow = record(&[("phone", v("1"))]);
        // A run at 09:30 saw the app's phone change of 09:00 but could not write it.
        let mut seen = BTreeMap::new();
        seen.insert(
            "phone".to_owned(),
            FieldSeen {
                app: Some(SeenValue {
                    value: v("app"),
                    at: at(9),
                }),
                dynamics: None,
            },
        );
        // Since then Dynamics changed the phone at 10:00 and the app its e-mail at 11:00 (the row's time).
        let row_times = |_: &str| FieldTimes {
            app: Some(at(11)),
            dynamics: Some(at(10)),
        };
        let app = record(&[("phone", v("app"))]);
        let dynamics = record(&[("phone", v("dyn"))]);
        let outcome = decide_record(RecordInput {
            mapping: &mapping,
            policy: &policy,
            shadow: Some(&shadow),
            app: &app,
            dynamics: &dynamics,
            seen: &seen,
            default_times: &row_times,
            pending: &BTreeMap::new(),
            unreadable: &BTreeSet::new(),
        });
        assert_eq!(outcome.to_app, vec![("phone".to_owned(), v("dyn"))], "{outcome:?}");
        assert_eq!(outcome.conflicts, 1);
        // Without the memory, the row's time decides.
        let outcome = decide_record(RecordInput {
            mapping: &mapping,
            policy: &policy,
            shadow: Some(&shadow),
            app: &app,
            dynamics: &dynamics,
            seen: &BTreeMap::new(),
            default_times: &row_times,
            pending: &BTreeMap::new(),
            unreadable: &BTreeSet::new(),
        });
        assert_eq!(outcome.to_dynamics, vec![("phone".to_owned(), v("app"))]);
    }

    #[test]
    fn a_change_that_cannot_be_written_is_remembered_until_the_shadow_catches_up() {
        let mapping = mapping_with_shared_phone();
        let policy = ConflictPolicy {
            default: ConflictStrategy::Manual,
            ..ConflictPolicy::default()
        };
        let shadow = record(&[("phone", v("1"))]);
        let times = |_: &str| FieldTimes {
            app: Some(at(9)),
            dynamics: Some(at(10)),
        };
        let outcome = decide_record(RecordInput {
            mapping: &mapping,
            policy: &policy,
            shadow: Some(&shadow),
            app: &record(&[("phone", v("app"))]),
            dynamics: &record(&[("phone", v("dyn"))]),
            seen: &BTreeMap::new(),
            default_times: &times,
            pending: &BTreeMap::new(),
            unreadable: &BTreeSet::new(),
        });
        assert_eq!(outcome.held.len(), 1);
        let seen = &outcome.seen["phone"];
        assert_eq!(seen.app.as_ref().map(|s| s.at), Some(at(9)));
        assert_eq!(seen.dynamics.as_ref().map(|s| s.at), Some(at(10)));
        assert_eq!(outcome.agreed["phone"], v("1"), "the shadow stays while held");
        // Once both sides hold "app", nothing is left to remember.
        let caught_up = forget_settled(&outcome.seen, &record(&[("phone", v("app"))]));
        assert!(caught_up["phone"].app.is_none());
        assert!(caught_up["phone"].dynamics.is_some());
    }

    #[test]
    fn an_unreadable_dynamics_value_still_gets_the_apps_value_when_the_app_owns_the_field() {
        let mapping = mapping_with_shared_phone();
        let policy = ConflictPolicy::default();
        let shadow = record(&[
            ("certification_status", AppValue::Choice("active".into())),
            ("membership_type", AppValue::Choice("ordinary".into())),
        ]);
        let app = record(&[
            ("certification_status", AppValue::Choice("revoked".into())),
            ("membership_type", AppValue::Choice("ordinary".into())),
        ]);
        // Neither Dynamics value could be read.
        let unreadable: BTreeSet<String> = ["certification_status", "membership_type"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let times = |_: &str| FieldTimes::default();
        let outcome = decide_record(RecordInput {
            mapping: &mapping,
            policy: &policy,
            shadow: Some(&shadow),
            app: &app,
            dynamics: &AppRecord::new(),
            seen: &BTreeMap::new(),
            default_times: &times,
            pending: &BTreeMap::new(),
            unreadable: &unreadable,
        });
        assert_eq!(
            outcome.to_dynamics,
            vec![("certification_status".to_owned(), AppValue::Choice("revoked".into()))]
        );
        assert!(
            outcome.to_app.is_empty(),
            "a Dynamics-owned field it cannot read is left alone"
        );
        assert_eq!(outcome.agreed["membership_type"], AppValue::Choice("ordinary".into()));
    }

    #[test]
    fn a_pending_write_landed_when_dynamics_holds_its_stamp() {
        let mapping = mapping_with_shared_phone();
        let stamp = AppValue::DateTime(at(2));
        let pending = record(&[("phone", v("a")), (SYNC_STAMP, stamp.clone())]);
        // Landed, then someone changed the phone again: still landed.
        assert!(pending_landed(
            &mapping,
            &pending,
            &record(&[("phone", v("d")), (SYNC_STAMP, stamp.clone())])
        ));
        // Never arrived: the stamp is an older one.
        assert!(!pending_landed(
            &mapping,
            &pending,
            &record(&[("phone", v("a")), (SYNC_STAMP, AppValue::DateTime(at(1)))])
        ));
        // Without a stamp in the pending write, every value must be there.
        let unstamped = record(&[("phone", v("a"))]);
        assert!(pending_landed(&mapping, &unstamped, &record(&[("phone", v("a"))])));
        assert!(!pending_landed(&mapping, &unstamped, &record(&[("phone", v("d"))])));
    }

    fn link(key: &str) -> Link {
        Link {
            organisation_id: "hlf".into(),
            record_kind: "mentor".into(),
            app_id: "m".into(),
            dynamics_id: uuid::Uuid::nil(),
            alternate_key: key.into(),
            etag: None,
            shadow: AppRecord::new(),
            visible: true,
            expires_on: None,
            dynamics_modified_on: None,
            synced_at: at(0),
            pending: None,
            seen: BTreeMap::new(),
            app_changed_at: None,
        }
    }

    #[test]
    fn a_link_stands_while_the_mentor_keeps_its_member_number() {
        let l = link("7101");
        assert_eq!(link_status(&l, Some(Some("7101"))), LinkStatus::Stands);
        assert_eq!(link_status(&l, Some(Some(" 7101 "))), LinkStatus::Stands);
        assert_eq!(link_status(&l, Some(Some("7102"))), LinkStatus::Renumbered);
        assert_eq!(link_status(&l, Some(None)), LinkStatus::Renumbered);
        assert_eq!(link_status(&l, None), LinkStatus::MentorGone);
        assert_eq!(claim(None), Claim::Free);
        assert_eq!(claim(Some(LinkStatus::Stands)), Claim::Taken);
        assert_eq!(claim(Some(LinkStatus::MentorGone)), Claim::TakeOver);
        assert_eq!(claim(Some(LinkStatus::Renumbered)), Claim::TakeOver);
    }

    #[test]
    fn a_contact_is_in_scope_when_active_and_matching_the_filter() {
        let mapping = mapping_with_shared_phone();
        let active = record(&[("contact_state", AppValue::Choice("active".into()))]);
        let inactive = record(&[("contact_state", AppValue::Choice("inactive".into()))]);
        assert!(in_scope(&mapping, &active, None));
        assert!(in_scope(&mapping, &active, Some(true)));
        assert!(!in_scope(&mapping, &active, Some(false)));
        assert!(!in_scope(&mapping, &inactive, None));
        assert!(!in_scope(&mapping, &inactive, Some(true)));
        assert!(in_scope(&mapping, &AppRecord::new(), None));
    }
}
