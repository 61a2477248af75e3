use std::collections::BTreeSet;

use field_mapping::{ColumnKind, ColumnMetadata, FieldKind, RecordMapping, TableMetadata};

/// Metadata matching the default mapping exactly, as the live table would report it.
fn live_contact(mentor: &RecordMapping) -> TableMetadata {
    let mut table = TableMetadata {
        logical_name: "contact".into(),
        change_tracking: true,
        ..Default::default()
    };
    for spec in mentor.fields() {
        let (kind, max_length, options) = match &spec.kind {
            FieldKind::String { max_length } => (ColumnKind::String, Some(*max_length), None),
            FieldKind::Date => (ColumnKind::DateOnly, None, None),
            FieldKind::DateTime => (ColumnKind::DateTime, None, None),
            FieldKind::Bool => (ColumnKind::Boolean, None, None),
            FieldKind::Decimal { .. } => (ColumnKind::Other("Money".into()), None, None),
            FieldKind::Choice { options } => (
                ColumnKind::Picklist,
                None,
                Some(options.values().copied().collect::<BTreeSet<_>>()),
            ),
            FieldKind::Lookup { .. } => (ColumnKind::Lookup, None, None),
        };
        table.columns.insert(
            spec.column.clone(),
            ColumnMetadata {
                logical_name: spec.column.clone(),
                kind,
                max_length,
                options,
                valid_for_update: true,
            },
        );
    }
    table
}

#[test]
fn matching_metadata_has_no_drift() {
    let mentor = super::mentor();
    assert_eq!(mentor.check_schema(&live_contact(&mentor)), []);
}

#[test]
fn every_kind_of_drift_is_reported_together() {
    let mentor = super::mentor();
    let mut table = live_contact(&mentor);
    table.columns.remove("hlf_showonpublicsite");
    table.columns.get_mut("hlf_certificationexpiry").unwrap().kind = ColumnKind::DateTime;
    table.columns.get_mut("emailaddress1").unwrap().max_length = Some(60);
    table.columns.get_mut("hlf_peermentorstatus").unwrap().options = Some([100000000, 100000001].into());
    table.columns.get_mut("hlf_appsyncedon").unwrap().valid_for_update = false;
    // A Dynamics-owned column that is read-only is fine: the integration never writes it.
    table.columns.get_mut("lastname").unwrap().valid_for_update = false;

    let messages: Vec<String> = mentor.check_schema(&table).iter().map(ToString::to_string).collect();
    expect_test::expect![[r#"
        [
            "column `hlf_peermentorstatus` (field `certification_status`) has no option value 100000003 for app value `none`; update the mapping's options",
            "column `hlf_peermentorstatus` (field `certification_status`) has no option value 100000002 for app value `revoked`; update the mapping's options",
            "column `hlf_certificationexpiry` (field `certification_expiry`) is of type DateTime but the mapping declares \"date\"",
            "column `hlf_showonpublicsite` (field `show_on_public_site`) does not exist on table `contact`; ask HLF whether it was renamed or removed and update the mapping",
            "column `hlf_appsyncedon` (field `app_synced_on`) is read-only in Dynamics but the mapping writes it; make the field dynamics-owned or ask HLF to allow updates",
            "column `emailaddress1` (field `email`) takes at most 60 characters but the mapping allows 100; lower max_length to 60",
        ]
    "#]]
    .assert_debug_eq(&messages);
}

#[test]
fn metadata_for_another_table_is_refused() {
    let mentor = super::mentor();
    let table = TableMetadata {
        logical_name: "account".into(),
        ..Default::default()
    };
    let drift = mentor.check_schema(&table);
    assert_eq!(drift.len(), 1);
    assert_eq!(
        drift[0].to_string(),
        "metadata is for table `account` but the mapping expects `contact`"
    );
}

#[test]
fn state_and_status_columns_accept_choice_fields() {
    let mentor = super::mentor();
    let mut table = live_contact(&mentor);
    table.columns.get_mut("statecode").unwrap().kind = ColumnKind::State;
    assert_eq!(mentor.check_schema(&table), []);
}

#[test]
fn a_decimal_field_accepts_money_and_decimal_columns_only() {
    let posting = super::posting();
    let mut table = live_contact(&posting);
    table.logical_name = "hlf_posting".into();
    assert_eq!(posting.check_schema(&table), vec![]);
    table.columns.get_mut("hlf_amount").unwrap().kind = ColumnKind::Other("Decimal".into());
    assert_eq!(posting.check_schema(&table), vec![]);
    table.columns.get_mut("hlf_amount").unwrap().kind = ColumnKind::Other("Double".into());
    let drift: Vec<String> = posting.check_schema(&table).iter().map(ToString::to_string).collect();
    assert_eq!(
        drift,
        ["column `hlf_amount` (field `amount`) is of type Double but the mapping declares \"decimal\""]
    );
}
