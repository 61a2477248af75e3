use expect_test::expect;
use field_mapping::{FieldKind, FieldMapping, HLF_DEFAULT_MAPPING, OnDelete, Owner};

#[test]
fn default_mapping_loads_with_the_design_columns() {
    let mentor = super::mentor();
    assert_eq!(mentor.table(), "contact");
    assert_eq!(mentor.entity_set(), "contacts");
    assert_eq!(mentor.alternate_key().column, "hlf_membernumber");
    assert_eq!(mentor.on_delete(), OnDelete::EndMembership);
    let columns: Vec<_> = mentor.fields().iter().map(|f| f.column.as_str()).collect();
    for column in [
        "hlf_membernumber",
        "hlf_peermentorstatus",
        "hlf_certificationexpiry",
        "hlf_showonpublicsite",
        "hlf_appsyncedon",
        "hlf_membershipstatus",
        "hlf_membershiptype",
        "hlf_paiduntil",
        "firstname",
        "lastname",
        "emailaddress1",
        "mobilephone",
        "statecode",
    ] {
        assert!(columns.contains(&column), "default mapping lacks {column}: {columns:?}");
    }
}

#[test]
fn default_mapping_writes_only_the_app_owned_columns() {
    let writable = super::mentor().writable_columns();
    let writable: Vec<_> = writable.iter().map(String::as_str).collect();
    assert_eq!(
        writable,
        [
            "hlf_appsyncedon",
            "hlf_certificationexpiry",
            "hlf_peermentorstatus",
            "hlf_showonpublicsite"
        ]
    );
}

#[test]
fn select_columns_start_with_the_id_and_modified_on() {
    let columns = super::mentor().select_columns();
    assert_eq!(&columns[..2], ["contactid", "modifiedon"]);
    assert!(columns.contains(&"hlf_membernumber".to_owned()));
}

#[test]
fn lookup_fields_are_read_through_their_value_property() {
    let record = super::mapping_with(
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
    let spec = record.field("account").unwrap();
    assert_eq!(spec.read_key(), "_parentcustomerid_value");
    assert!(record.select_columns().contains(&"_parentcustomerid_value".to_owned()));
    assert!(
        record
            .writable_columns()
            .contains("parentcustomerid_account@odata.bind")
    );
    assert!(matches!(spec.kind, FieldKind::Lookup { .. }));
    assert_eq!(spec.owner, Owner::App);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
version = 2
colour = "blue"
[records.mentor]
table = "contact"
entity_set = "Contacts"
alternate_key = "nope"
on_delete = "purge"
[[records.mentor.fields]]
field = "email"
column = "emailaddress1"
owner = "everyone"
type = "string"
display_name = "E-post"
[[records.mentor.fields]]
field = "status"
column = "hlf_peermentorstatus"
owner = "app"
type = "choice"
options = { active = 1, expired = 1 }
display_name = "Status"
max_length = 3
[[records.mentor.fields]]
field = "email"
column = "emailaddress1"
owner = "app"
type = "text"
display_name = ""
"#;
    let error = FieldMapping::from_toml(text).unwrap_err();
    expect![[r#"
        the mapping file has 12 problem(s):
          - colour: unknown key; remove it or check its spelling against docs/field-mapping.md
          - version: version 2 is not supported; this build reads version 1
          - records.mentor.entity_set: `Contacts` is not a valid name; use lower-case letters, digits and underscores
          - records.mentor.primary_id: missing; set it to the primary id column, e.g. "contactid"
          - records.mentor.on_delete: `purge` is not a choice; use "end-membership" or "unlink"
          - records.mentor.fields[0].owner: `everyone` is not an owner; use "app", "dynamics" or "shared"
          - records.mentor.fields[0].max_length: missing; string fields need the column's maximum length so long values are caught before writing
          - records.mentor.fields[1].max_length: not used by type "choice"; remove it
          - records.mentor.fields[1].options.expired: option value 1 is also used by `active`; each app value needs its own option
          - records.mentor.fields[2].display_name: missing; set the column's display name as Dynamics shows it (the CSV export uses it)
          - records.mentor.fields[2].type: `text` is not a type; use one of "string", "date", "datetime", "bool", "decimal", "choice", "lookup"
          - records.mentor.alternate_key: `nope` is not one of this record's fields; map it under [[records.mentor.fields]]"#]]
    .assert_eq(&error.to_string());
}

#[test]
fn duplicate_fields_and_columns_are_reported() {
    let text = r#"
version = 1
[records.mentor]
table = "contact"
entity_set = "contacts"
primary_id = "contactid"
alternate_key = "a"
[[records.mentor.fields]]
field = "a"
column = "col_a"
owner = "dynamics"
type = "string"
max_length = 5
display_name = "A"
[[records.mentor.fields]]
field = "a"
column = "col_a"
owner = "app"
type = "bool"
display_name = "A again"
"#;
    let error = FieldMapping::from_toml(text).unwrap_err();
    expect![[r#"
        the mapping file has 2 problem(s):
          - records.mentor.fields[1].field: field `a` is mapped twice; keep one entry
          - records.mentor.fields[1].column: column `col_a` is mapped twice; one column takes one app field"#]]
    .assert_eq(&error.to_string());
}

#[test]
fn invalid_toml_names_the_line() {
    let error = FieldMapping::from_toml("version = 1\n[records.mentor\n").unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("the mapping file is not valid TOML"), "{message}");
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn a_value_of_the_wrong_toml_type_is_a_syntax_error_naming_the_key() {
    let text = HLF_DEFAULT_MAPPING.replace("max_length = 20", "max_length = \"twenty\"");
    let message = FieldMapping::from_toml(&text).unwrap_err().to_string();
    assert!(message.contains("max_length"), "{message}");
}

#[test]
fn alternate_key_must_be_a_string_field() {
    let text = HLF_DEFAULT_MAPPING.replace("alternate_key = \"member_number\"", "alternate_key = \"paid_until\"");
    let message = FieldMapping::from_toml(&text).unwrap_err().to_string();
    assert!(
        message.contains("field `paid_until` must be of type \"string\" to serve as the alternate key"),
        "{message}"
    );
}

#[test]
fn decimal_fields_need_a_scale_in_range() {
    let error = FieldMapping::from_toml(
        r#"
version = 1
[records.posting]
table = "hlf_posting"
entity_set = "hlf_postings"
primary_id = "hlf_postingid"
alternate_key = "id"
[[records.posting.fields]]
field = "id"
column = "hlf_postingnumber"
owner = "app"
type = "string"
max_length = 40
display_name = "Nummer"
[[records.posting.fields]]
field = "amount"
column = "hlf_amount"
owner = "app"
type = "decimal"
display_name = "Beløp"
[[records.posting.fields]]
field = "rate"
column = "hlf_rate"
owner = "app"
type = "decimal"
scale = 11
max_length = 3
display_name = "Sats"
"#,
    )
    .unwrap_err();
    expect![[r#"
        the mapping file has 3 problem(s):
          - records.posting.fields[1].scale: missing; decimal fields need the column's precision (digits after the decimal point, e.g. 2 for money) so values are never rounded
          - records.posting.fields[2].max_length: not used by type "decimal"; remove it
          - records.posting.fields[2].scale: 11 is out of range; use the column's precision, the digits after the decimal point (0 to 10)"#]]
    .assert_eq(&error.to_string());
}
