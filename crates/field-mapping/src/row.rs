//! A Dataverse row or request body: column name to JSON value.
//!
//! A full read decodes hundreds of thousands of rows, each with the same dozen or so column names, so a row keeps its
//! columns in one vector sorted by name (found by a scan, or by binary search in a row of more than a few dozen
//! columns) and shares each name with the rows decoded before it on the same thread instead of holding a string of
//! its own.
//!
//! A row read from a page of JSON text in memory ([`LazyRow`], which the Dynamics client uses for every page of
//! rows) keeps its values as their JSON text, all in one string, and decodes a value the first time it is read: the
//! engine reads the id, etag, modification time and member number of every contact and the other columns only of
//! the contacts it links, so most values of a full read are never decoded. A row built by hand or deserialised
//! from anything else holds decoded values. Both behave the same: a value is decoded at most once, and reading it
//! answers the same `serde_json::Value`.
//!
//! Serialised, a row is the JSON object it came from, its columns in name order as `serde_json::Map` wrote them.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// A Dataverse row or request body: column (property) name to JSON value, each name once.
#[derive(Clone, Default)]
pub struct Row {
    /// Sorted by name, without duplicates.
    columns: Vec<Column>,
    /// The JSON text of the values not decoded when the row was read, one after another (empty for a row whose
    /// values were all decoded).
    text: String,
}

#[derive(Clone)]
struct Column {
    name: Arc<str>,
    /// Where the value's JSON text is in the row's text; empty once the value is set.
    raw: Range<u32>,
    /// The value, decoded from `raw` on first read or set when the column was.
    value: OnceLock<Value>,
}

impl Column {
    fn decoded(name: Arc<str>, value: Value) -> Column {
        Column {
            name,
            raw: 0..0,
            value: OnceLock::from(value),
        }
    }

    fn value<'a>(&'a self, text: &str) -> &'a Value {
        self.value.get_or_init(|| decode(text, &self.raw))
    }

    fn into_value(self, text: &str) -> Value {
        let Column { raw, value, .. } = self;
        value.into_inner().unwrap_or_else(|| decode(text, &raw))
    }
}

/// Rows of at most this many columns are scanned rather than searched by [`Row::get`].
const SCANNED_COLUMNS: usize = 48;

/// Decodes a value kept as text. The text was read as one JSON value when the row was, so this cannot fail; were
/// it ever to, the value reads as null rather than stopping the run.
fn decode(text: &str, raw: &Range<u32>) -> Value {
    text.get(raw.start as usize..raw.end as usize)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or(Value::Null)
}

impl Row {
    /// An empty row.
    pub fn new() -> Self {
        Row::default()
    }

    /// The value of `column`, if the row has it.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.find(column).map(|c| c.value(&self.text))
    }

    /// Whether the row has `column`.
    pub fn contains_key(&self, column: &str) -> bool {
        self.find(column).is_some()
    }

    /// The column named `column`. A row of a few dozen columns is scanned: comparing two names compares their
    /// lengths first, so the scan compares the text of a name or two where a binary search compares five or six (a
    /// full read looks up four columns of every row; scanning takes a tenth off its decoding).
    fn find(&self, column: &str) -> Option<&Column> {
        if self.columns.len() <= SCANNED_COLUMNS {
            self.columns.iter().find(|c| *c.name == *column)
        } else {
            self.position(column).ok().map(|i| &self.columns[i])
        }
    }

    /// Sets `column` to `value`; answers the value it replaced.
    pub fn insert(&mut self, column: String, value: Value) -> Option<Value> {
        match self.position(&column) {
            Ok(i) => {
                let kept = &mut self.columns[i];
                let old = std::mem::replace(kept, Column::decoded(kept.name.clone(), value));
                Some(old.into_value(&self.text))
            }
            Err(i) => {
                self.columns.insert(i, Column::decoded(Arc::from(column), value));
                None
            }
        }
    }

    /// Removes `column`; answers its value.
    pub fn remove(&mut self, column: &str) -> Option<Value> {
        let i = self.position(column).ok()?;
        Some(self.columns.remove(i).into_value(&self.text))
    }

    /// The column names, in name order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| &*c.name)
    }

    /// The columns and their values, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.columns.iter().map(|c| (&*c.name, c.value(&self.text)))
    }

    /// How many columns the row has.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the row has no column.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    fn position(&self, column: &str) -> Result<usize, usize> {
        self.columns.binary_search_by(|c| (*c.name).cmp(column))
    }

    /// Sorts columns gathered in any order; of a name given twice the later value stays, as in a JSON object read
    /// by `serde_json`.
    fn from_unsorted(columns: Vec<Column>, text: String) -> Self {
        let sorted = columns.is_sorted_by(|a, b| a.name < b.name);
        Row::from_columns(columns, text, sorted)
    }

    /// [`Row::from_unsorted`] for columns known to be in strict name order, or not.
    fn from_columns(mut columns: Vec<Column>, text: String, sorted: bool) -> Self {
        if !sorted {
            columns.sort_by(|a, b| a.name.cmp(&b.name));
            columns.dedup_by(|later, kept| {
                let same = later.name == kept.name;
                if same {
                    std::mem::swap(&mut later.raw, &mut kept.raw);
                    std::mem::swap(&mut later.value, &mut kept.value);
                }
                same
            });
        }
        Row { columns, text }
    }
}

/// Rows are equal when they have the same columns with the same values, however each was read.
impl PartialEq for Row {
    fn eq(&self, other: &Row) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The row as JSON text (what a request body carries).
impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// `row["column"]`: the column's value, or null when the row does not have it (as indexing a JSON value answers).
impl std::ops::Index<&str> for Row {
    type Output = Value;

    fn index(&self, column: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(column).unwrap_or(&NULL)
    }
}

impl FromIterator<(String, Value)> for Row {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Row::from_unsorted(
            iter.into_iter()
                .map(|(k, v)| Column::decoded(Arc::from(k), v))
                .collect(),
            String::new(),
        )
    }
}

impl From<serde_json::Map<String, Value>> for Row {
    fn from(map: serde_json::Map<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

impl From<Row> for serde_json::Map<String, Value> {
    fn from(row: Row) -> Self {
        row.into_iter().collect()
    }
}

impl From<Row> for Value {
    fn from(row: Row) -> Self {
        Value::Object(row.into())
    }
}

impl IntoIterator for Row {
    type Item = (String, Value);
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter {
            columns: self.columns.into_iter(),
            text: self.text,
        }
    }
}

/// The columns of a row and their values, in name order (from [`Row::into_iter`]).
pub struct IntoIter {
    columns: std::vec::IntoIter<Column>,
    text: String,
}

impl Iterator for IntoIter {
    type Item = (String, Value);

    fn next(&mut self) -> Option<(String, Value)> {
        let column = self.columns.next()?;
        let name = column.name.to_string();
        Some((name, column.into_value(&self.text)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.columns.size_hint()
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Column names a thread decoded last, by their position in the row: the rows of a page name the same columns in
/// the same order, so each name is compared with the one at its position in the row before and shared when equal.
const REMEMBERED_NAMES: usize = 256;

thread_local! {
    static LAST_NAMES: RefCell<Vec<Arc<str>>> = const { RefCell::new(Vec::new()) };
    /// Whether those names, in their order, are in strict name order: a row that has exactly them needs no check.
    static LAST_NAMES_SORTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The length of the last lazily read row's text, to size the next one's.
    static LAST_TEXT_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Any JSON object, from any deserializer; every value is decoded as it is read.
impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RowVisitor { lazy: false })
    }
}

/// A [`Row`] read from JSON text held in memory (`serde_json::from_slice` or `from_str`, as the Dynamics client
/// reads a page), its values kept as their text and each decoded the first time it is read. The text is checked
/// to be JSON as it is read, so a malformed row is refused here as it would be by [`Row`]. Reading one from a
/// deserializer that cannot lend its input (`serde_json::from_reader`, a `Value`, another format) fails: read a
/// [`Row`] there.
pub struct LazyRow(pub Row);

impl From<LazyRow> for Row {
    fn from(row: LazyRow) -> Row {
        row.0
    }
}

impl<'de> Deserialize<'de> for LazyRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RowVisitor { lazy: true }).map(LazyRow)
    }
}

struct RowVisitor {
    /// Keep each value's text instead of decoding it.
    lazy: bool,
}

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a Dataverse row)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        // Taken out of the thread's slots for the row (a value never holds a row, so nothing below asks for them);
        // put back only when the row was read, so a row refused halfway leaves the order unknown.
        let mut names = LAST_NAMES.with(|n| std::mem::take(&mut *n.borrow_mut()));
        let names_sorted = LAST_NAMES_SORTED.with(|s| s.replace(false));
        let mut all_shared = true;
        let mut columns: Vec<Column> = Vec::with_capacity(names.len().max(map.size_hint().unwrap_or(0)));
        let mut text = if self.lazy {
            String::with_capacity(LAST_TEXT_LEN.with(|n| n.get()))
        } else {
            String::new()
        };
        let read = (|| {
            while let Some(name) = map.next_key_seed(NameSeed {
                names: &mut names,
                at: columns.len(),
                shared: &mut all_shared,
            })? {
                let column = if self.lazy {
                    let raw: &'de RawValue = map.next_value()?;
                    let start = text.len();
                    text.push_str(raw.get());
                    let span = u32::try_from(start)
                        .ok()
                        .zip(u32::try_from(text.len()).ok())
                        .ok_or_else(|| serde::de::Error::custom("a row of more than 4 GB of JSON"))?;
                    Column {
                        name,
                        raw: span.0..span.1,
                        value: OnceLock::new(),
                    }
                } else {
                    Column::decoded(name, map.next_value()?)
                };
                columns.push(column);
            }
            Ok(())
        })();
        let exactly_the_names = columns.len() == names.len();
        LAST_NAMES.with(|n| *n.borrow_mut() = names);
        read?;
        if self.lazy {
            LAST_TEXT_LEN.with(|n| n.set(text.len()));
        }
        // The same names as the row before, in the same order: as sorted as they were. Otherwise they are checked,
        // and when the remembered names are now exactly this row's, their order is remembered with them.
        let sorted = if exactly_the_names && all_shared && names_sorted {
            true
        } else {
            columns.is_sorted_by(|a, b| a.name < b.name)
        };
        if exactly_the_names {
            LAST_NAMES_SORTED.with(|s| s.set(sorted));
        }
        Ok(Row::from_columns(columns, text, sorted))
    }
}

/// Reads a column name, sharing the one remembered at its position when it is the same.
struct NameSeed<'a> {
    names: &'a mut Vec<Arc<str>>,
    at: usize,
    /// Cleared when the name is not the remembered one.
    shared: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = Arc<str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Arc<str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Arc<str>, E> {
        if let Some(known) = self.names.get(self.at)
            && **known == *name
        {
            return Ok(known.clone());
        }
        *self.shared = false;
        let name: Arc<str> = Arc::from(name);
        if self.at < self.names.len() {
            self.names[self.at] = name.clone();
        } else if self.at == self.names.len() && self.at < REMEMBERED_NAMES {
            self.names.push(name.clone());
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(text: &str) -> Row {
        serde_json::from_str(text).expect("a row")
    }

    #[test]
    fn columns_are_found_whatever_order_they_came_in_and_written_in_name_order() {
        let r = row(r#"{"b": 1, "a": "x", "c": null}"#);
        assert_eq!(r.get("a"), Some(&json!("x")));
        assert_eq!(r.get("b"), Some(&json!(1)));
        assert_eq!(r.get("c"), Some(&Value::Null));
        assert_eq!(r.get("d"), None);
        assert_eq!(r.len(), 3);
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"a":"x","b":1,"c":null}"#);
    }

    #[test]
    fn a_column_given_twice_keeps_its_later_value_as_serde_json_does() {
        let text = r#"{"a": 1, "b": 2, "a": 3}"#;
        let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        let r = row(text);
        assert_eq!(r.get("a"), Some(&json!(3)));
        assert_eq!(r, Row::from(map));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn rows_decoded_one_after_another_share_names_and_keep_their_own_values() {
        let rows: Vec<Row> = serde_json::from_str(
            r#"[{"id": "1", "name": "a"}, {"id": "2", "name": "b"}, {"name": "c", "other": true}, {"id": "4"}]"#,
        )
        .unwrap();
        assert_eq!(rows[0].get("name"), Some(&json!("a")));
        assert_eq!(rows[1].get("id"), Some(&json!("2")));
        assert_eq!(rows[2].get("other"), Some(&json!(true)));
        assert_eq!(rows[2].get("id"), None);
        assert_eq!(rows[3].get("id"), Some(&json!("4")));
        assert!(
            Arc::ptr_eq(&rows[0].columns[0].name, &rows[1].columns[0].name),
            "the same name is shared"
        );
    }

    #[test]
    fn a_row_built_by_hand_reads_and_writes_like_a_map() {
        let mut r = Row::new();
        assert!(r.is_empty());
        assert_eq!(r.insert("z".to_owned(), json!(1)), None);
        assert_eq!(r.insert("a".to_owned(), json!(2)), None);
        assert_eq!(r.insert("z".to_owned(), json!(3)), Some(json!(1)));
        assert!(r.contains_key("a"));
        assert_eq!(r.keys().collect::<Vec<_>>(), ["a", "z"]);
        assert_eq!(r["a"], json!(2));
        assert_eq!(r["missing"], Value::Null);
        assert_eq!(r.remove("a"), Some(json!(2)));
        assert_eq!(Value::from(r.clone()), json!({"z": 3}));
        let from_value: Row = serde_json::from_value(json!({"z": 3})).unwrap();
        assert_eq!(from_value, r);
        assert_eq!(format!("{r:?}"), r#"{"z": Number(3)}"#);
        assert_eq!(r.to_string(), r#"{"z":3}"#);
    }

    fn lazy(text: &str) -> Row {
        serde_json::from_str::<LazyRow>(text).expect("a row").into()
    }

    #[test]
    fn a_lazily_read_row_answers_what_an_eagerly_read_one_does() {
        let text = r#"{"b": 1, "a": "x\"y", "c": null, "d": {"e": [1, 2.50, "f"]}, "b": 12345678901234567890123}"#;
        let eager = row(text);
        let lazy = lazy(text);
        assert_eq!(lazy, eager);
        assert_eq!(lazy.get("a"), Some(&json!("x\"y")));
        assert_eq!(lazy["d"]["e"][1].to_string(), "2.50", "a number keeps its digits");
        assert_eq!(
            lazy.get("b").map(Value::to_string).as_deref(),
            Some("12345678901234567890123")
        );
        assert_eq!(lazy.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(lazy.to_string(), eager.to_string());
        assert_eq!(format!("{lazy:?}"), format!("{eager:?}"));
        assert_eq!(Value::from(lazy.clone()), Value::from(eager.clone()));
        assert_eq!(
            lazy.clone().into_iter().collect::<Vec<_>>(),
            eager.clone().into_iter().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_lazily_read_value_is_decoded_once_and_only_when_read() {
        let r = lazy(r#"{"a": "x", "b": [1]}"#);
        assert!(r.columns.iter().all(|c| c.value.get().is_none()), "nothing decoded yet");
        let first: *const Value = r.get("a").unwrap();
        assert!(std::ptr::eq(first, r.get("a").unwrap()), "the same value, decoded once");
        assert!(r.columns[1].value.get().is_none(), "b is not decoded by reading a");
    }

    #[test]
    fn a_lazily_read_row_can_be_changed_like_any_other() {
        let mut r = lazy(r#"{"a": "x", "b": 2, "c": true}"#);
        assert_eq!(r.insert("a".to_owned(), json!("y")), Some(json!("x")));
        assert_eq!(r.remove("b"), Some(json!(2)));
        assert_eq!(r.insert("d".to_owned(), json!(4)), None);
        assert_eq!(r, row(r#"{"a": "y", "c": true, "d": 4}"#));
        assert_eq!(
            serde_json::Map::from(r),
            serde_json::from_str::<serde_json::Map<String, Value>>(r#"{"a": "y", "c": true, "d": 4}"#).unwrap()
        );
    }

    #[test]
    fn lazy_rows_are_read_from_text_only_and_refused_when_malformed() {
        let rows: Vec<LazyRow> = serde_json::from_slice(br#"[{"id": "1", "n": 1}, {"id": "2", "n": 2}]"#).unwrap();
        assert_eq!(rows[1].0["n"], json!(2));
        assert!(serde_json::from_str::<LazyRow>(r#"{"a": tru}"#).is_err());
        assert!(serde_json::from_str::<LazyRow>("[1]").is_err());
        // What cannot lend its text is refused, not misread.
        assert!(serde_json::from_value::<LazyRow>(json!({"a": 1})).is_err());
        assert!(serde_json::from_reader::<_, LazyRow>(&br#"{"a": 1}"#[..]).is_err());
    }

    #[test]
    fn the_order_of_names_seen_before_is_known_and_a_change_of_names_is_checked_again() {
        // Sorted names, then the same names (their order remembered), then unsorted ones and the same again, then a
        // row refused after changing the first remembered name, then a row with the names that refused row left.
        let rows: Vec<Row> = [
            r#"{"a": 1, "b": 2, "c": 3}"#,
            r#"{"a": 4, "b": 5, "c": 6}"#,
            r#"{"c": 7, "b": 8, "a": 9}"#,
            r#"{"c": 10, "b": 11, "a": 12}"#,
            r#"{"a": 13, "b": 14, "c": 15}"#,
        ]
        .iter()
        .map(|text| lazy(text))
        .collect();
        for r in &rows {
            assert_eq!(r.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        }
        assert_eq!(rows[3]["a"], json!(12));
        assert!(serde_json::from_str::<LazyRow>(r#"{"z": 1, "b": 2, "c": "#).is_err());
        let after = lazy(r#"{"z": 1, "b": 2, "c": 3}"#);
        assert_eq!(after.keys().collect::<Vec<_>>(), ["b", "c", "z"]);
        assert_eq!(after["z"], json!(1));
        let again = row(r#"{"z": 4, "b": 5, "c": 6}"#);
        assert_eq!(again.keys().collect::<Vec<_>>(), ["b", "c", "z"]);
        assert_eq!(again["b"], json!(5));
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        assert!(serde_json::from_str::<Row>("[1]").is_err());
        assert!(serde_json::from_str::<Row>(r#"{"a": }"#).is_err());
        // A failed row leaves the remembered names usable for the next.
        assert_eq!(row(r#"{"a": 1}"#).get("a"), Some(&json!(1)));
    }
}
