//! Property: a row read lazily (`LazyRow`, as the Dynamics client reads every page) and a row decoded at once
//! (`Row`) answer exactly what `serde_json` reads from the same text, whatever the values (strings with escapes and
//! any characters, numbers of any size, nested objects and arrays), the order and the whitespace, with column names
//! given twice (the later value stays), and across rows read one after another (names shared and their order
//! remembered between rows).

use field_mapping::{LazyRow, Row};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Any JSON value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        // Digits beyond any machine number: kept exactly (`arbitrary_precision`).
        "[1-9][0-9]{20,30}(\\.[0-9]{1,10})?".prop_map(|digits| serde_json::from_str(&digits).unwrap()),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\/\u{e6}\u{f8}\u{e5}\u{1f600}\t\n]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-c]{1,2}", inner), 0..4)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// A row as text: columns from a small set of names (so some come twice), in any order, with any whitespace.
fn row_text() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("contactid".to_owned()),
        Just("@odata.etag".to_owned()),
        Just("hlf_membernumber".to_owned()),
        Just("hlf_membershipstatus".to_owned()),
        Just("firstname".to_owned()),
        Just("a\"quoted\\name".to_owned()),
        Just("n\u{f8}kkel".to_owned()),
        "[a-z_]{1,6}",
    ];
    let space = prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t")];
    prop::collection::vec((name, value(), space), 0..12).prop_map(|columns| {
        let parts: Vec<String> = columns
            .iter()
            .map(|(name, value, space)| {
                format!(
                    "{space}{}{space}:{space}{}{space}",
                    serde_json::to_string(name).unwrap(),
                    serde_json::to_string(value).unwrap()
                )
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    })
}

fn check(expected: &Map<String, Value>, row: &Row, how: &str) {
    assert_eq!(row.len(), expected.len(), "{how}: columns");
    assert_eq!(
        row.keys().collect::<Vec<_>>(),
        expected.keys().map(String::as_str).collect::<Vec<_>>(),
        "{how}: names, in name order"
    );
    for (name, value) in expected {
        assert_eq!(row.get(name), Some(value), "{how}: column {name:?}");
        assert_eq!(
            row[name.as_str()].to_string(),
            value.to_string(),
            "{how}: {name:?} as text"
        );
    }
    assert_eq!(row.get("not a column"), None, "{how}");
    assert_eq!(
        row.to_string(),
        serde_json::to_string(expected).unwrap(),
        "{how}: as JSON"
    );
    assert_eq!(Map::from(row.clone()), *expected, "{how}: into a map");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lazy_and_eager_rows_read_what_serde_json_reads(texts in prop::collection::vec(row_text(), 1..6)) {
        let page = format!("[{}]", texts.join(","));
        let expected: Vec<Map<String, Value>> = serde_json::from_str(&page).unwrap();
        let eager: Vec<Row> = serde_json::from_str(&page).unwrap();
        let lazy: Vec<Row> = serde_json::from_str::<Vec<LazyRow>>(&page)
            .unwrap()
            .into_iter()
            .map(Row::from)
            .collect();
        for ((expected, eager), lazy) in expected.iter().zip(&eager).zip(&lazy) {
            check(expected, eager, "decoded at once");
            check(expected, lazy, "read lazily");
            prop_assert_eq!(eager, lazy);
            prop_assert_eq!(&Row::from(expected.clone()), lazy);
        }
        // Each row on its own too, as a page of one row.
        for (text, expected) in texts.iter().zip(&expected) {
            let lazy: Row = serde_json::from_slice::<LazyRow>(text.as_bytes()).unwrap().into();
            check(expected, &lazy, "one row read lazily from bytes");
        }
    }

    #[test]
    fn a_row_cut_short_is_refused_both_ways(text in row_text(), cut in any::<prop::sample::Index>()) {
        prop_assume!(text.len() > 2);
        let mut at = cut.index(text.len() - 1).max(1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let short = &text[..at];
        prop_assert!(serde_json::from_str::<Row>(short).is_err());
        prop_assert!(serde_json::from_str::<LazyRow>(short).is_err());
    }
}
