//! The in-memory tables: rows with row versions (the etags), alternate-key indexes, the deletion log that change
//! tracking reads, and an undo log so a `$batch` change set can be rolled back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use http::StatusCode;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::dverror::{self, DvError};
use crate::metadata::{Dropped, TableDef};
use crate::odata::{self, KeyRef};

/// One stored row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The row version: the number inside the weak etag, and the change-tracking position.
    pub(crate) version: u64,
    /// Column values in stored form (the primary id included).
    pub(crate) data: Map<String, Value>,
}

impl Row {
    pub(crate) fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// One table with its rows.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) def: TableDef,
    pub(crate) rows: BTreeMap<Uuid, Row>,
    /// Deleted rows, in deletion order: (version at deletion, id).
    pub(crate) deleted: Vec<(u64, Uuid)>,
    /// One index per alternate key: normalised key values to row id.
    key_index: Vec<HashMap<String, Uuid>>,
}

/// How a write may treat an existing row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    Create,
    Update,
}

/// A change that can be undone.
#[derive(Debug)]
pub(crate) struct Undo {
    table: usize,
    id: Uuid,
    prev: Option<Row>,
    deleted_len: usize,
}

/// All tables, under one lock.
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) tables: Vec<Table>,
    /// The last row version handed out (global, as in Dataverse).
    pub(crate) version: u64,
    /// Delta tokens below this version are expired (the "expire all delta tokens" fault).
    pub(crate) min_delta_version: u64,
    /// Columns removed from metadata by the schema-drift fault.
    pub(crate) dropped: Dropped,
}

impl Table {
    fn key_string(&self, key: usize, data: &Map<String, Value>) -> Option<String> {
        let cols = self.def.keys.get(key)?;
        let mut out = String::new();
        for c in cols {
            match data.get(c) {
                None | Some(Value::Null) => return None,
                Some(Value::String(s)) => out.push_str(&s.to_lowercase()),
                Some(other) => out.push_str(&other.to_string()),
            }
            out.push('\u{1f}');
        }
        Some(out)
    }

    /// Finds a row by primary or alternate key.
    pub(crate) fn find(&self, key: &KeyRef) -> Option<Uuid> {
        match key {
            KeyRef::Id(id) => self.rows.contains_key(id).then_some(*id),
            KeyRef::Alt(pairs) => {
                let data: Map<String, Value> = pairs.iter().cloned().collect();
                let k = self
                    .def
                    .keys
                    .iter()
                    .position(|cols| cols.len() == pairs.len() && cols.iter().all(|c| data.contains_key(c)))?;
                let ks = self.key_string(k, &data)?;
                self.key_index.get(k)?.get(&ks).copied()
            }
        }
    }

    pub(crate) fn visible(&self, dropped: &Dropped) -> impl Fn(&str) -> bool + use<'_> {
        let gone = dropped.get(&self.def.logical_name).cloned().unwrap_or_default();
        move |c: &str| !gone.contains(c)
    }
}

impl Db {
    pub(crate) fn new(defs: Vec<TableDef>) -> Self {
        let tables = defs
            .into_iter()
            .map(|def| {
                let key_index = def.keys.iter().map(|_| HashMap::new()).collect();
                Table {
                    def,
                    rows: BTreeMap::new(),
                    deleted: Vec::new(),
                    key_index,
                }
            })
            .collect();
        Self {
            tables,
            version: 1_000_000,
            min_delta_version: 0,
            dropped: HashMap::new(),
        }
    }

    pub(crate) fn table_by_set(&self, set: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.def.entity_set == set)
    }

    pub(crate) fn table_by_name(&self, name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.def.logical_name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn dropped_for(&self, table: &str) -> BTreeSet<String> {
        self.dropped.get(table).cloned().unwrap_or_default()
    }

    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// Replaces (or removes) a row, keeping the indexes and the undo log right.
    fn set_row(&mut self, t: usize, id: Uuid, new: Option<Row>, undo: &mut Vec<Undo>) {
        let table = &mut self.tables[t];
        let deleted_len = table.deleted.len();
        let prev = match new {
            Some(row) => table.rows.insert(id, row),
            None => table.rows.remove(&id),
        };
        for k in 0..table.def.keys.len() {
            if let Some(old) = prev.as_ref().and_then(|r| table.key_string(k, &r.data)) {
                table.key_index[k].remove(&old);
            }
            if let Some(new) = table.rows.get(&id).and_then(|r| table.key_string(k, &r.data)) {
                table.key_index[k].insert(new, id);
            }
        }
        undo.push(Undo {
            table: t,
            id,
            prev,
            deleted_len,
        });
    }

    /// Reverts changes, newest first.
    pub(crate) fn rollback(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            let mut scratch = Vec::new();
            self.set_row(u.table, u.id, u.prev, &mut scratch);
            self.tables[u.table].deleted.truncate(u.deleted_len);
        }
    }

    /// Validates a client body for a create or an update and converts it to stored form.
    pub(crate) fn validate_body(
        &self,
        t: usize,
        body: Map<String, Value>,
        mode: WriteMode,
    ) -> Result<Map<String, Value>, DvError> {
        let table = &self.tables[t];
        let def = &table.def;
        let visible = table.visible(&self.dropped);
        let mut out = Map::new();
        for (k, v) in body {
            if k.starts_with('@') {
                continue;
            }
            let column = k.split('@').next().unwrap_or(&k);
            let attr = match def.attr(column) {
                Some(a) if visible(column) && !k.contains('@') => a,
                _ => return Err(DvError::unknown_property(def, column)),
            };
            let allowed = match mode {
                WriteMode::Create => attr.valid_for_create,
                WriteMode::Update => attr.valid_for_update || (column == def.primary_id && v.is_string()),
            };
            if !allowed {
                return Err(DvError::bad_request(
                    dverror::INVALID_ARGUMENT,
                    format!(
                        "The '{column}' attribute of the '{}' entity is not valid for {}.",
                        def.logical_name,
                        if mode == WriteMode::Create { "create" } else { "update" }
                    ),
                ));
            }
            out.insert(column.to_owned(), odata::normalize_value(def, attr, v)?);
        }
        Ok(out)
    }

    fn check_keys(&self, t: usize, id: Uuid, data: &Map<String, Value>) -> Result<(), DvError> {
        let table = &self.tables[t];
        for k in 0..table.def.keys.len() {
            if let Some(ks) = table.key_string(k, data)
                && let Some(other) = table.key_index[k].get(&ks)
                && *other != id
            {
                let cols = table.def.keys[k].join(", ");
                return Err(DvError::new(
                    StatusCode::PRECONDITION_FAILED,
                    dverror::KEY_VIOLATION,
                    format!(
                        "A record that has the attribute values {cols} already exists. The entity key {} requires that this set of attributes contains unique values. Select unique values and try again.",
                        table.def.keys[k].join("_")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn stamp(&self, t: usize, data: &mut Map<String, Value>, now: DateTime<Utc>, created: bool) {
        let def = &self.tables[t].def;
        let ts = Value::String(odata::format_datetime(now));
        if def.attr("modifiedon").is_some() {
            data.insert("modifiedon".into(), ts.clone());
        }
        if created && def.attr("createdon").is_some() {
            data.insert("createdon".into(), ts);
        }
        if created {
            default_state(def, data);
        }
        if def.attr("fullname").is_some() {
            let part = |c: &str| data.get(c).and_then(Value::as_str).unwrap_or("").to_owned();
            let full = format!("{} {}", part("firstname"), part("lastname")).trim().to_owned();
            data.insert(
                "fullname".into(),
                if full.is_empty() {
                    Value::Null
                } else {
                    Value::String(full)
                },
            );
        }
    }

    /// Creates a row from validated values. Fails on a duplicate id or alternate key.
    pub(crate) fn insert(
        &mut self,
        t: usize,
        mut data: Map<String, Value>,
        now: DateTime<Utc>,
        undo: &mut Vec<Undo>,
    ) -> Result<Uuid, DvError> {
        let pk = self.tables[t].def.primary_id.clone();
        let id = match data
            .get(&pk)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            Some(id) => id,
            None => Uuid::new_v4(),
        };
        if self.tables[t].rows.contains_key(&id) {
            return Err(DvError::new(
                StatusCode::PRECONDITION_FAILED,
                dverror::DUPLICATE,
                "Cannot insert duplicate key.",
            ));
        }
        data.insert(pk, Value::String(id.to_string()));
        self.check_keys(t, id, &data)?;
        self.stamp(t, &mut data, now, true);
        let version = self.next_version();
        self.set_row(t, id, Some(Row { version, data }), undo);
        Ok(id)
    }

    /// Loads a fixture row as given (read-only columns included), stamping only what is missing.
    pub(crate) fn load(&mut self, t: usize, mut data: Map<String, Value>, now: DateTime<Utc>) -> Result<Uuid, DvError> {
        let def = &self.tables[t].def;
        for (k, v) in data.iter_mut() {
            let Some(attr) = def.attr(k) else {
                return Err(DvError::unknown_property(def, k));
            };
            *v = odata::normalize_value(def, attr, v.take())?;
        }
        let pk = def.primary_id.clone();
        let stamps: Vec<&str> = ["createdon", "modifiedon"]
            .into_iter()
            .filter(|c| def.attr(c).is_some())
            .collect();
        let id = data
            .get(&pk)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .unwrap_or_else(Uuid::new_v4);
        data.insert(pk, Value::String(id.to_string()));
        self.check_keys(t, id, &data)?;
        default_state(def, &mut data);
        let ts = Value::String(odata::format_datetime(now));
        for c in stamps {
            if data.get(c).is_none_or(Value::is_null) {
                data.insert(c.into(), ts.clone());
            }
        }
        let version = self.next_version();
        let mut scratch = Vec::new();
        self.set_row(t, id, Some(Row { version, data }), &mut scratch);
        Ok(id)
    }

    /// Applies validated changes to an existing row.
    pub(crate) fn update(
        &mut self,
        t: usize,
        id: Uuid,
        changes: Map<String, Value>,
        now: DateTime<Utc>,
        undo: &mut Vec<Undo>,
    ) -> Result<(), DvError> {
        let Some(row) = self.tables[t].rows.get(&id) else {
            return Err(DvError::not_found(&self.tables[t].def, &id));
        };
        let mut data = row.data.clone();
        let pk = self.tables[t].def.primary_id.clone();
        for (k, v) in changes {
            if k != pk {
                data.insert(k, v);
            }
        }
        self.check_keys(t, id, &data)?;
        self.stamp(t, &mut data, now, false);
        let version = self.next_version();
        self.set_row(t, id, Some(Row { version, data }), undo);
        Ok(())
    }

    /// A server-side modification of a row (the etag-race fault): a new version and `modifiedon`, same values.
    pub(crate) fn touch(&mut self, t: usize, id: Uuid, now: DateTime<Utc>) {
        let mut scratch = Vec::new();
        let _ = self.update(t, id, Map::new(), now, &mut scratch);
    }

    /// Deletes a row and records the deletion for change tracking.
    pub(crate) fn delete(&mut self, t: usize, id: Uuid, undo: &mut Vec<Undo>) -> Result<(), DvError> {
        if !self.tables[t].rows.contains_key(&id) {
            return Err(DvError::not_found(&self.tables[t].def, &id));
        }
        self.set_row(t, id, None, undo);
        let version = self.next_version();
        self.tables[t].deleted.push((version, id));
        Ok(())
    }
}

/// A new row is active, as in Dataverse: `statecode` 0 and `statuscode` 1 unless the creator set them.
fn default_state(def: &TableDef, data: &mut Map<String, Value>) {
    for (column, value) in [("statecode", 0), ("statuscode", 1)] {
        if def.attr(column).is_some() && data.get(column).is_none_or(Value::is_null) {
            data.insert(column.into(), Value::from(value));
        }
    }
}
