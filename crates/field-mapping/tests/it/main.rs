//! Integration tests of the field-mapping crate: loading, conversion, diff and the schema-drift check.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod convert;
mod diff;
mod load;
mod row;
mod schema;

use field_mapping::{FieldMapping, HLF_DEFAULT_MAPPING, RecordMapping};

/// The default HLF mapping's `mentor` record.
fn mentor() -> RecordMapping {
    FieldMapping::from_toml(HLF_DEFAULT_MAPPING)
        .expect("default mapping loads")
        .record("mentor")
        .expect("mentor record")
        .clone()
}

/// The default HLF mapping's `posting` record.
fn posting() -> RecordMapping {
    FieldMapping::from_toml(HLF_DEFAULT_MAPPING)
        .expect("default mapping loads")
        .record("posting")
        .expect("posting record")
        .clone()
}

/// A one-record mapping with the given field entries, for transform tests.
fn mapping_with(fields: &str) -> RecordMapping {
    let text = format!(
        r#"
version = 1
[records.thing]
table = "contact"
entity_set = "contacts"
primary_id = "contactid"
alternate_key = "key"
[[records.thing.fields]]
field = "key"
column = "hlf_key"
owner = "dynamics"
type = "string"
max_length = 10
display_name = "Key"
{fields}
"#
    );
    match FieldMapping::from_toml(&text) {
        Ok(mapping) => mapping.record("thing").expect("thing").clone(),
        Err(e) => panic!("mapping did not load:\n{e}\n--- document ---\n{text}"),
    }
}
