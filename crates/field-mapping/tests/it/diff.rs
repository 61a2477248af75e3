use chrono::{TimeZone, Utc};
use field_mapping::{AppRecord, AppValue, Decision};

fn record(pairs: &[(&str, AppValue)]) -> AppRecord {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
}

fn text(s: &str) -> AppValue {
    AppValue::Text(s.to_owned())
}

#[test]
fn diff_against_shadow_applies_ownership_per_field() {
    let mentor = super::mentor();
    let shadow = record(&[
        ("certification_status", AppValue::Choice("active".into())),
        ("email", text("old@example.org")),
        ("paid_until", AppValue::Null),
    ]);
    let app = record(&[
        ("certification_status", AppValue::Choice("expired".into())),
        ("email", text("old@example.org")),
        ("paid_until", AppValue::Null),
    ]);
    let dynamics = record(&[
        ("certification_status", AppValue::Choice("active".into())),
        ("email", text("new@example.org")),
        ("paid_until", AppValue::Null),
    ]);
    let diffs = mentor.diff(Some(&shadow), &app, &dynamics);
    let got: Vec<_> = diffs
        .iter()
        .map(|d| (d.spec.field.as_str(), d.decision.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "certification_status",
                Decision::WriteDynamics(AppValue::Choice("expired".into()))
            ),
            ("paid_until", Decision::InSync(AppValue::Null)),
            ("email", Decision::WriteApp(text("new@example.org"))),
        ]
    );
}

#[test]
fn values_that_only_round_tripped_compare_equal() {
    let mentor = super::mentor();
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let app = record(&[
        (
            "app_synced_on",
            AppValue::DateTime(at + chrono::Duration::milliseconds(250)),
        ),
        ("phone", text("")),
    ]);
    let dynamics = record(&[("app_synced_on", AppValue::DateTime(at)), ("phone", AppValue::Null)]);
    for diff in mentor.diff(None, &app, &dynamics) {
        assert!(matches!(diff.decision, Decision::InSync(_)), "{diff:?}");
    }
}

#[test]
fn shared_field_changed_on_both_sides_is_a_conflict() {
    let shared = super::mapping_with(
        r#"
[[records.thing.fields]]
field = "phone"
column = "mobilephone"
owner = "shared"
type = "string"
max_length = 50
display_name = "Mobil"
"#,
    );
    let shadow = record(&[("phone", text("1"))]);
    let diffs = shared.diff(
        Some(&shadow),
        &record(&[("phone", text("2"))]),
        &record(&[("phone", text("3"))]),
    );
    assert_eq!(
        diffs[0].decision,
        Decision::Conflict {
            shadow: Some(text("1")),
            app: text("2"),
            dynamics: text("3")
        }
    );
    let diffs = shared.diff(
        Some(&shadow),
        &record(&[("phone", text("2"))]),
        &record(&[("phone", text("1"))]),
    );
    assert_eq!(diffs[0].decision, Decision::WriteDynamics(text("2")));
}

#[test]
fn fields_absent_from_a_record_are_not_compared() {
    let mentor = super::mentor();
    let diffs = mentor.diff(None, &record(&[("email", text("a"))]), &record(&[]));
    assert!(diffs.is_empty(), "{diffs:?}");
}
