//! A Dataverse row or request body: column name to JSON value.
//!
//! A full read decodes hundreds of thousands of rows, each with the same dozen or so column names, so a row keeps its
//! columns in one vector sorted by name (found by binary search) and shares each name with the rows decoded before
//! it on the same thread instead of holding a string of its own. Decoding a page this way takes about 40 % less CPU
//! than into a `serde_json::Map` (a B-tree with a string per key), and a row holds about half the memory.
//! Serialised, a row is the JSON object it came from, its columns in name order as `serde_json::Map` wrote them.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Dataverse row or request body: column (property) name to JSON value, each name once.
#[derive(Clone, Default, PartialEq)]
pub struct Row {
    /// Sorted by name, without duplicates.
    columns: Vec<(Arc<str>, Value)>,
}

impl Row {
    /// An empty row.
    pub fn new() -> Self {
        Row::default()
    }

    /// The value of `column`, if the row has it.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.position(column).ok().map(|i| &self.columns[i].1)
    }

    /// Whether the row has `column`.
    pub fn contains_key(&self, column: &str) -> bool {
        self.position(column).is_ok()
    }

    /// Sets `column` to `value`; answers the value it replaced.
    pub fn insert(&mut self, column: String, value: Value) -> Option<Value> {
        match self.position(&column) {
            Ok(i) => Some(std::mem::replace(&mut self.columns[i].1, value)),
            Err(i) => {
                self.columns.insert(i, (Arc::from(column), value));
                None
            }
        }
    }

    /// Removes `column`; answers its value.
    pub fn remove(&mut self, column: &str) -> Option<Value> {
        self.position(column).ok().map(|i| self.columns.remove(i).1)
    }

    /// The column names, in name order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(name, _)| &**name)
    }

    /// The columns and their values, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.columns.iter().map(|(name, value)| (&**name, value))
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
        self.columns.binary_search_by(|(name, _)| (**name).cmp(column))
    }

    /// Sorts columns gathered in any order; of a name given twice the later value stays, as in a JSON object read
    /// by `serde_json`.
    fn from_unsorted(mut columns: Vec<(Arc<str>, Value)>) -> Self {
        if !columns.is_sorted_by(|a, b| a.0 < b.0) {
            columns.sort_by(|a, b| a.0.cmp(&b.0));
            columns.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    std::mem::swap(&mut later.1, &mut kept.1);
                }
                same
            });
        }
        Row { columns }
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
        Row::from_unsorted(iter.into_iter().map(|(k, v)| (Arc::from(k), v)).collect())
    }
}

impl From<serde_json::Map<String, Value>> for Row {
    fn from(map: serde_json::Map<String, Value>) -> Self {
        map.into_iter().collect()
    }
}

impl From<Row> for serde_json::Map<String, Value> {
    fn from(row: Row) -> Self {
        row.columns.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

impl From<Row> for Value {
    fn from(row: Row) -> Self {
        Value::Object(row.into())
    }
}

impl IntoIterator for Row {
    type Item = (String, Value);
    type IntoIter = std::iter::Map<std::vec::IntoIter<(Arc<str>, Value)>, fn((Arc<str>, Value)) -> (String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.columns.into_iter().map(|(k, v)| (k.to_string(), v))
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (name, value) in &self.columns {
            map.serialize_entry(&**name, value)?;
        }
        map.end()
    }
}

/// Column names a thread decoded last, by their position in the row: the rows of a page name the same columns in
/// the same order, so each name is compared with the one at its position in the row before and shared when equal.
const REMEMBERED_NAMES: usize = 256;

thread_local! {
    static LAST_NAMES: RefCell<Vec<Arc<str>>> = const { RefCell::new(Vec::new()) };
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RowVisitor)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a Dataverse row)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        // Taken out of the thread's slot for the row (a value never holds a row, so nothing below asks for it).
        let mut names = LAST_NAMES.with(|n| std::mem::take(&mut *n.borrow_mut()));
        let mut columns: Vec<(Arc<str>, Value)> = Vec::with_capacity(names.len().max(map.size_hint().unwrap_or(0)));
        let read = (|| {
            while let Some(name) = map.next_key_seed(NameSeed {
                names: &mut names,
                at: columns.len(),
            })? {
                let value: Value = map.next_value()?;
                columns.push((name, value));
            }
            Ok(())
        })();
        LAST_NAMES.with(|n| *n.borrow_mut() = names);
        read?;
        Ok(Row::from_unsorted(columns))
    }
}

/// Reads a column name, sharing the one remembered at its position when it is the same.
struct NameSeed<'a> {
    names: &'a mut Vec<Arc<str>>,
    at: usize,
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
            Arc::ptr_eq(&rows[0].columns[0].0, &rows[1].columns[0].0),
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

    #[test]
    fn what_is_not_an_object_is_refused() {
        assert!(serde_json::from_str::<Row>("[1]").is_err());
        assert!(serde_json::from_str::<Row>(r#"{"a": }"#).is_err());
        // A failed row leaves the remembered names usable for the next.
        assert_eq!(row(r#"{"a": 1}"#).get("a"), Some(&json!(1)));
    }
}
