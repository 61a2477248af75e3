//! The mapping parser: `FieldMapping::from_toml` on any text.
//!
//! Beyond "no panic": parsing is deterministic; in a mapping that loads, every record has a string alternate key, the
//! writable columns are exactly those of app-owned and shared fields, no two fields read the same property, and a
//! value of each field's type converts to Dataverse's form and back unchanged.

#![no_main]

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate};
use field_mapping::{AppValue, FieldKind, FieldMapping, FieldSpec, Owner, Row};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let first = FieldMapping::from_toml(text);
    match (&first, &FieldMapping::from_toml(text)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "parsing is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "parsing is not deterministic"),
        _ => panic!("parsing is not deterministic"),
    }
    let Ok(mapping) = first else { return };
    for record in mapping.records() {
        assert!(matches!(record.alternate_key().kind, FieldKind::String { .. }));
        let expected: BTreeSet<String> = record
            .fields()
            .iter()
            .filter(|f| matches!(f.owner, Owner::App | Owner::Shared))
            .map(|f| match &f.kind {
                FieldKind::Lookup {
                    navigation_property, ..
                } => format!("{navigation_property}@odata.bind"),
                _ => f.column.clone(),
            })
            .collect();
        assert_eq!(record.writable_columns(), expected);
        let select = record.select_columns();
        let mut read_keys = BTreeSet::new();
        for field in record.fields() {
            assert!(select.contains(&field.read_key()));
            assert!(
                read_keys.insert(field.read_key()),
                "two fields of `{}` read the property `{}`",
                record.kind(),
                field.read_key()
            );
            assert!(record.field(&field.field).is_some());
            round_trip(field);
        }
    }
});

/// Sample values of the field's type convert to Dataverse's JSON and back unchanged. Lookups are written as
/// `@odata.bind` references and read from `_<column>_value`, two different forms, so they are left out.
fn round_trip(field: &FieldSpec) {
    let samples: Vec<AppValue> = match &field.kind {
        FieldKind::String { .. } => vec![AppValue::Text("x".to_owned()), AppValue::Null],
        FieldKind::Date => vec![AppValue::Date(
            NaiveDate::from_ymd_opt(2026, 3, 29).expect("a valid date"),
        )],
        FieldKind::DateTime => vec![AppValue::DateTime(
            DateTime::from_timestamp(1_774_746_000, 250_000_000).expect("a valid instant"),
        )],
        FieldKind::Bool => vec![AppValue::Bool(true), AppValue::Bool(false)],
        FieldKind::Choice { options } => options.keys().cloned().map(AppValue::Choice).collect(),
        FieldKind::Lookup { .. } => return,
    };
    for value in samples {
        let (key, json) = field
            .to_dataverse(&value)
            .expect("a value of the field's own type converts");
        let mut row = Row::new();
        row.insert(key, json);
        let back = field.from_dataverse(&row).expect("a converted value reads back");
        assert_eq!(back, field.normalise(&value), "`{}` does not round-trip", field.field);
    }
}
