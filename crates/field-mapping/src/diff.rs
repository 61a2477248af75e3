//! Three-way comparison of an app record and a Dataverse record against the shadow: the last values both sides
//! agreed on. Ownership decides which way a difference flows; only a shared field changed on both sides conflicts.

use crate::spec::{FieldSpec, Owner, RecordMapping};
use crate::value::{AppRecord, AppValue};

/// What the sync should do with one field of one linked record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Both sides hold this value; the shadow becomes it.
    InSync(AppValue),
    /// Write the app's value to Dynamics.
    WriteDynamics(AppValue),
    /// Write Dynamics' value to the app.
    WriteApp(AppValue),
    /// A shared field changed on both sides to different values; a strategy or an admin decides.
    Conflict {
        /// The last agreed value, if the record was ever in agreement.
        shadow: Option<AppValue>,
        /// The app's current value.
        app: AppValue,
        /// Dynamics' current value.
        dynamics: AppValue,
    },
}

/// The decision for one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff<'m> {
    /// The field the decision is about.
    pub spec: &'m FieldSpec,
    /// What to do.
    pub decision: Decision,
}

impl RecordMapping {
    /// Compares every mapped field present in both records. A field missing from either record is not compared
    /// (the caller reads complete records; a partial one must not be mistaken for a deletion). Values are normalised
    /// first, so a value that merely round-tripped through Dataverse compares equal.
    pub fn diff(&self, shadow: Option<&AppRecord>, app: &AppRecord, dynamics: &AppRecord) -> Vec<FieldDiff<'_>> {
        self.fields()
            .iter()
            .filter_map(|spec| {
                let app_value = spec.normalise(app.get(&spec.field)?);
                let dynamics_value = spec.normalise(dynamics.get(&spec.field)?);
                let shadow_value = shadow.and_then(|s| s.get(&spec.field)).map(|v| spec.normalise(v));
                Some(FieldDiff {
                    spec,
                    decision: decide(spec.owner, shadow_value, app_value, dynamics_value),
                })
            })
            .collect()
    }
}

fn decide(owner: Owner, shadow: Option<AppValue>, app: AppValue, dynamics: AppValue) -> Decision {
    if app == dynamics {
        return Decision::InSync(app);
    }
    match owner {
        Owner::App => Decision::WriteDynamics(app),
        Owner::Dynamics => Decision::WriteApp(dynamics),
        Owner::Shared => {
            let app_changed = shadow.as_ref() != Some(&app);
            let dynamics_changed = shadow.as_ref() != Some(&dynamics);
            match (app_changed, dynamics_changed) {
                (true, false) => Decision::WriteDynamics(app),
                (false, true) => Decision::WriteApp(dynamics),
                // Both differ from the shadow (or there is none): neither side can be preferred without a strategy.
                _ => Decision::Conflict { shadow, app, dynamics },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> AppValue {
        AppValue::Text(s.to_owned())
    }

    #[track_caller]
    fn check(owner: Owner, shadow: Option<&str>, app: &str, dynamics: &str, expected: Decision) {
        let got = decide(owner, shadow.map(text), text(app), text(dynamics));
        assert_eq!(
            got, expected,
            "owner={owner} shadow={shadow:?} app={app} dynamics={dynamics}"
        );
    }

    #[test]
    fn decisions_follow_ownership_and_shadow() {
        use Decision::*;
        check(Owner::App, Some("a"), "a", "a", InSync(text("a")));
        check(Owner::App, Some("a"), "b", "a", WriteDynamics(text("b")));
        // Someone edited an app-owned column in Dynamics: the app's value is restored.
        check(Owner::App, Some("a"), "a", "x", WriteDynamics(text("a")));
        check(Owner::App, None, "a", "x", WriteDynamics(text("a")));
        check(Owner::Dynamics, Some("a"), "a", "b", WriteApp(text("b")));
        // The app row was edited locally: Dynamics owns the field, so its value comes back.
        check(Owner::Dynamics, Some("a"), "x", "a", WriteApp(text("a")));
        check(Owner::Shared, Some("a"), "b", "a", WriteDynamics(text("b")));
        check(Owner::Shared, Some("a"), "a", "b", WriteApp(text("b")));
        check(Owner::Shared, Some("a"), "b", "b", InSync(text("b")));
        check(
            Owner::Shared,
            Some("a"),
            "b",
            "c",
            Conflict {
                shadow: Some(text("a")),
                app: text("b"),
                dynamics: text("c"),
            },
        );
        check(
            Owner::Shared,
            None,
            "b",
            "c",
            Conflict {
                shadow: None,
                app: text("b"),
                dynamics: text("c"),
            },
        );
    }
}
