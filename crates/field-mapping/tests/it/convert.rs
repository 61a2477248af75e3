use chrono::{NaiveDate, TimeZone, Utc};
use field_mapping::{AppRecord, AppValue, RecordMapping, Row, ValueError};
use serde_json::{Value, json};
use uuid::Uuid;

fn text(s: &str) -> AppValue {
    AppValue::Text(s.to_owned())
}

/// Converts `value` of `field` to Dataverse and back, checking both the JSON form and the round trip.
#[track_caller]
fn check(record: &RecordMapping, field: &str, value: AppValue, key: &str, json: Value) {
    let spec = record.field(field).unwrap();
    let (got_key, got_json) = spec
        .to_dataverse(&value)
        .unwrap_or_else(|e| panic!("{field}: {value:?} did not convert: {e}"));
    assert_eq!((got_key.as_str(), &got_json), (key, &json), "{field}: sent {value:?}");
    let mut row = Row::new();
    // Dataverse returns lookups as `_<column>_value` holding the bare id.
    let read_json = match (&value, &json) {
        (AppValue::Reference(id), _) => json!(id.to_string()),
        _ => json.clone(),
    };
    row.insert(spec.read_key(), read_json);
    let back = spec.from_dataverse(&row).unwrap();
    assert_eq!(back, spec.normalise(&value), "{field}: read back {row:?}");
}

#[track_caller]
fn check_err(record: &RecordMapping, field: &str, value: AppValue, expected: &str) {
    let spec = record.field(field).unwrap();
    match spec.to_dataverse(&value) {
        Ok(got) => panic!("{field}: {value:?} converted to {got:?}, expected error {expected}"),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

#[test]
fn every_transform_converts_both_ways() {
    let mentor = super::mentor();
    let lookup = super::mapping_with(
        r#"
[[records.thing.fields]]
field = "account"
column = "parentcustomerid"
owner = "app"
type = "lookup"
target_entity_set = "accounts"
navigation_property = "parentcustomerid_account"
display_name = "Company"
"#,
    );
    check(
        &mentor,
        "email",
        text("kari@example.org"),
        "emailaddress1",
        json!("kari@example.org"),
    );
    check(
        &mentor,
        "given_name",
        text("Åse Ødegård"),
        "firstname",
        json!("Åse Ødegård"),
    );
    check(&mentor, "email", AppValue::Null, "emailaddress1", Value::Null);
    check(&mentor, "email", text(""), "emailaddress1", Value::Null);
    let expiry = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
    check(
        &mentor,
        "certification_expiry",
        AppValue::Date(expiry),
        "hlf_certificationexpiry",
        json!("2026-03-29"),
    );
    let at = Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 5).unwrap();
    check(
        &mentor,
        "app_synced_on",
        AppValue::DateTime(at),
        "hlf_appsyncedon",
        json!("2026-10-25T01:30:05Z"),
    );
    let precise = at + chrono::Duration::milliseconds(987);
    check(
        &mentor,
        "app_synced_on",
        AppValue::DateTime(precise),
        "hlf_appsyncedon",
        json!("2026-10-25T01:30:05Z"),
    );
    check(
        &mentor,
        "show_on_public_site",
        AppValue::Bool(false),
        "hlf_showonpublicsite",
        json!(false),
    );
    check(
        &mentor,
        "show_on_public_site",
        AppValue::Bool(true),
        "hlf_showonpublicsite",
        json!(true),
    );
    check(
        &mentor,
        "certification_status",
        AppValue::Choice("expired".into()),
        "hlf_peermentorstatus",
        json!(100000001),
    );
    check(
        &mentor,
        "contact_state",
        AppValue::Choice("inactive".into()),
        "statecode",
        json!(1),
    );
    let id = Uuid::parse_str("7c1c3f2e-5a8b-4e4e-9d0e-4b8f2a1c9e11").unwrap();
    check(
        &lookup,
        "account",
        AppValue::Reference(id),
        "parentcustomerid_account@odata.bind",
        json!("/accounts(7c1c3f2e-5a8b-4e4e-9d0e-4b8f2a1c9e11)"),
    );
    check(
        &lookup,
        "account",
        AppValue::Null,
        "parentcustomerid_account@odata.bind",
        Value::Null,
    );
}

#[test]
fn datetimes_with_offsets_are_read_as_utc() {
    let spec = super::mentor().field("app_synced_on").unwrap().clone();
    let mut row = Row::new();
    row.insert("hlf_appsyncedon".into(), json!("2026-03-29T03:00:00+02:00"));
    let expected = Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap();
    assert_eq!(spec.from_dataverse(&row).unwrap(), AppValue::DateTime(expected));
}

#[test]
fn values_that_cannot_be_written_are_refused_with_a_reason() {
    let mentor = super::mentor();
    check_err(
        &mentor,
        "email",
        text(&"x".repeat(101)),
        "field `email` is 101 characters long; column `emailaddress1` takes at most 100",
    );
    // Characters, not bytes: 100 two-byte letters fit.
    assert!(
        mentor
            .field("email")
            .unwrap()
            .to_dataverse(&text(&"ø".repeat(100)))
            .is_ok()
    );
    check_err(
        &mentor,
        "certification_status",
        AppValue::Choice("suspended".into()),
        "field `certification_status` has app value `suspended`, which the mapping's options do not list; add it to the mapping",
    );
    check_err(
        &mentor,
        "paid_until",
        text("2026-01-01"),
        "field `paid_until` expects a date value, got text",
    );
    check_err(
        &mentor,
        "show_on_public_site",
        text("yes"),
        "field `show_on_public_site` expects a bool value, got text",
    );
}

#[track_caller]
fn check_read_err(field: &str, json: Value, expected: &str) {
    let mentor = super::mentor();
    let spec = mentor.field(field).unwrap();
    let mut row = Row::new();
    row.insert(spec.read_key(), json.clone());
    match spec.from_dataverse(&row) {
        Ok(value) => panic!("{field}: {json} read as {value:?}, expected error {expected}"),
        Err(e) => assert_eq!(e.to_string(), expected, "{field}: {json}"),
    }
}

#[test]
fn malformed_dataverse_values_are_refused_not_guessed() {
    check_read_err(
        "certification_status",
        json!(7),
        "column `hlf_peermentorstatus` has option value 7, which the mapping's options for `certification_status` do not list; add it to the mapping",
    );
    check_read_err(
        "certification_status",
        json!("active"),
        "column `hlf_peermentorstatus` holds a value that is not a valid option value",
    );
    check_read_err(
        "paid_until",
        json!("01.02.2026"),
        "column `hlf_paiduntil` holds a value that is not a valid date (YYYY-MM-DD)",
    );
    check_read_err(
        "paid_until",
        json!("2026-02-01T00:00:00Z"),
        "column `hlf_paiduntil` holds a value that is not a valid date (YYYY-MM-DD)",
    );
    check_read_err(
        "app_synced_on",
        json!("yesterday"),
        "column `hlf_appsyncedon` holds a value that is not a valid date and time (RFC 3339)",
    );
    check_read_err(
        "show_on_public_site",
        json!(1),
        "column `hlf_showonpublicsite` holds a value that is not a valid yes/no",
    );
    check_read_err(
        "email",
        json!(42),
        "column `emailaddress1` holds a value that is not a valid string",
    );
}

#[test]
fn a_row_missing_a_mapped_column_is_an_error_not_a_null() {
    let mentor = super::mentor();
    let row: Row = serde_json::from_value(json!({ "hlf_membernumber": "1001" })).unwrap();
    let errors = mentor.from_dataverse(&row).unwrap_err();
    assert_eq!(errors.len(), mentor.fields().len() - 1);
    assert!(errors.contains(&ValueError::MissingColumn {
        field: "email".into(),
        column: "emailaddress1".into()
    }));
}

#[test]
fn a_whole_record_converts_and_reports_every_bad_field() {
    let mentor = super::mentor();
    let mut record = AppRecord::new();
    record.insert("certification_status".into(), AppValue::Choice("active".into()));
    record.insert("show_on_public_site".into(), AppValue::Bool(true));
    let row = mentor.to_dataverse(&record).unwrap();
    assert_eq!(
        Value::from(row),
        json!({ "hlf_peermentorstatus": 100000000, "hlf_showonpublicsite": true })
    );

    record.insert("email".into(), text(&"x".repeat(200)));
    record.insert("not_a_field".into(), text("x"));
    record.insert("certification_status".into(), AppValue::Choice("unknown".into()));
    let errors = mentor.to_dataverse(&record).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[track_caller]
fn check_key(key: AppValue, expected: Result<&str, &str>) {
    let mentor = super::mentor();
    let mut record = AppRecord::new();
    record.insert("member_number".into(), key.clone());
    let got = mentor.key_value(&record).map_err(|e| e.to_string());
    assert_eq!(got.as_deref().map_err(String::as_str), expected, "key {key:?}");
}

#[test]
fn alternate_key_values_are_checked_for_forbidden_characters() {
    check_key(text("100234"), Ok("100234"));
    check_key(text("NO-77"), Ok("NO-77"));
    let forbidden = "alternate key `member_number` contains a character Dataverse forbids in keys (one of / < > * % & : \\ ? +) or is empty";
    for bad in [
        "12/34", "a<b", "a>b", "1*", "5%", "a&b", "a:b", "a\\b", "a?", "1+1", "", "  ",
    ] {
        check_key(text(bad), Err(forbidden));
    }
    check_key(AppValue::Null, Err("the record has no value for field `member_number`"));
}

#[test]
fn decimal_amounts_keep_their_exact_digits_both_ways() {
    let posting = super::posting();
    let amount = |text: &str| AppValue::Decimal(text.parse().unwrap());
    let wire: Value = serde_json::from_str("1250.50").unwrap();
    check(&posting, "amount", amount("1250.5"), "hlf_amount", wire);
    // Written at the column's scale, digit for digit: no floating-point rounding even past f64's 15-16 digits.
    for (value, wire) in [
        ("1250.5", "1250.50"),
        ("0.1", "0.10"),
        ("-75", "-75.00"),
        ("922337203685477", "922337203685477.00"),
        ("123456789012345.67", "123456789012345.67"),
    ] {
        let (_, json) = posting.field("amount").unwrap().to_dataverse(&amount(value)).unwrap();
        assert_eq!(json.to_string(), wire, "{value}");
    }
    let mut row = Row::new();
    row.insert("hlf_amount".into(), serde_json::from_str("123456789012345.67").unwrap());
    assert_eq!(
        posting.field("amount").unwrap().from_dataverse(&row).unwrap(),
        amount("123456789012345.67")
    );
}

#[test]
fn decimal_amounts_that_do_not_fit_are_refused_not_rounded() {
    let posting = super::posting();
    let amount = |text: &str| AppValue::Decimal(text.parse().unwrap());
    check_err(
        &posting,
        "amount",
        amount("10.005"),
        "field `amount` has more than 2 digits after the decimal point, which column `hlf_amount` cannot keep; correct the amount in the app",
    );
    check_err(
        &posting,
        "amount",
        amount("922337203685478"),
        "field `amount` is beyond the range column `hlf_amount` stores (±922,337,203,685,477); correct the amount in the app",
    );
    check_err(
        &posting,
        "amount",
        AppValue::Text("12.50".into()),
        "field `amount` expects a decimal value, got text",
    );
    // Trailing zeros are not extra precision.
    assert!(
        posting
            .field("amount")
            .unwrap()
            .to_dataverse(&amount("10.5000"))
            .is_ok()
    );
}
