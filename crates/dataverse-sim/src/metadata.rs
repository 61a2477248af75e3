//! Table definitions, loaded from fixture files in Microsoft's `EntityDefinitions` JSON format (one file per table,
//! the entity with its `Attributes` and `Keys` inline), and served back by the metadata endpoints.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The type of a column as far as validation and comparison go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttrKind {
    /// Text with a maximum length (`String` and `Memo`).
    Text { max_len: usize },
    /// A GUID.
    Guid,
    /// A date-time column with the date-only behaviour or format.
    DateOnly,
    /// A date-time column holding UTC instants.
    DateTime,
    /// Yes/no.
    Boolean,
    /// A choice, state or status column with its option values.
    Choice { options: Vec<i64> },
    /// Whole numbers.
    Integer,
    /// Money, decimal and floating-point numbers.
    Number,
    /// Anything else: stored and returned as given.
    Other,
}

/// One column.
#[derive(Debug, Clone)]
pub(crate) struct AttrDef {
    pub(crate) name: String,
    pub(crate) kind: AttrKind,
    pub(crate) valid_for_create: bool,
    pub(crate) valid_for_update: bool,
    /// The attribute's metadata JSON as served by the `Attributes` endpoints.
    pub(crate) raw: Map<String, Value>,
}

/// One table.
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    pub(crate) logical_name: String,
    pub(crate) entity_set: String,
    pub(crate) primary_id: String,
    pub(crate) change_tracking: bool,
    /// Alternate keys, each a list of column names.
    pub(crate) keys: Vec<Vec<String>>,
    pub(crate) attrs: Vec<AttrDef>,
    index: HashMap<String, usize>,
    /// The entity's metadata JSON without `Attributes` (served by `EntityDefinitions(...)`).
    pub(crate) raw: Map<String, Value>,
}

impl TableDef {
    /// Parses one `EntityDefinitions` document.
    pub(crate) fn from_json(value: Value, origin: &Path) -> Result<Self> {
        let bad = |reason: &str| Error::BadFixture {
            path: origin.to_path_buf(),
            reason: reason.to_owned(),
        };
        let Value::Object(mut raw) = value else {
            return Err(bad("the document is not a JSON object"));
        };
        let text = |raw: &Map<String, Value>, key: &str| {
            raw.get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("{key} is missing")))
        };
        let logical_name = text(&raw, "LogicalName")?;
        let entity_set = text(&raw, "EntitySetName")?;
        let primary_id = text(&raw, "PrimaryIdAttribute")?;
        let change_tracking = raw
            .get("ChangeTrackingEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let keys = raw
            .get("Keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.get("KeyAttributes").and_then(Value::as_array))
                    .map(|cols| {
                        cols.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .filter(|cols| !cols.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let Some(Value::Array(attr_values)) = raw.remove("Attributes") else {
            return Err(bad("Attributes is missing or not an array"));
        };
        let mut attrs = Vec::with_capacity(attr_values.len());
        for a in attr_values {
            let Value::Object(a) = a else {
                return Err(bad("an attribute is not a JSON object"));
            };
            attrs.push(AttrDef::from_json(a).map_err(|r| bad(&r))?);
        }
        let index = attrs.iter().enumerate().map(|(i, a)| (a.name.clone(), i)).collect();
        let def = Self {
            logical_name,
            entity_set,
            primary_id,
            change_tracking,
            keys,
            attrs,
            index,
            raw,
        };
        if def.attr(&def.primary_id).is_none() {
            return Err(bad("the primary id attribute is not among the Attributes"));
        }
        Ok(def)
    }

    /// Loads every `*.json` file in `dir`, sorted by name.
    pub(crate) fn load_dir(dir: &Path) -> Result<Vec<Self>> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::ReadFixture {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).map_err(|source| Error::ReadFixture {
                    path: p.clone(),
                    source,
                })?;
                let value: Value = serde_json::from_str(&text).map_err(|e| Error::BadFixture {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                Self::from_json(value, p)
            })
            .collect()
    }

    /// The column named `name`, if the table has it (dropped columns included: callers check drift separately).
    pub(crate) fn attr(&self, name: &str) -> Option<&AttrDef> {
        self.index.get(name).map(|&i| &self.attrs[i])
    }

    /// The OData type name used in error messages, e.g. `Microsoft.Dynamics.CRM.contact`.
    pub(crate) fn type_name(&self) -> String {
        format!("Microsoft.Dynamics.CRM.{}", self.logical_name)
    }
}

impl AttrDef {
    fn from_json(raw: Map<String, Value>) -> std::result::Result<Self, String> {
        let name = raw
            .get("LogicalName")
            .and_then(Value::as_str)
            .ok_or("an attribute has no LogicalName")?
            .to_owned();
        let attr_type = raw.get("AttributeType").and_then(Value::as_str).unwrap_or("Virtual");
        let max_len = raw.get("MaxLength").and_then(Value::as_u64).unwrap_or(4000) as usize;
        let options = || -> Vec<i64> {
            raw.get("OptionSet")
                .and_then(|o| o.get("Options"))
                .and_then(Value::as_array)
                .map(|opts| {
                    opts.iter()
                        .filter_map(|o| o.get("Value").and_then(Value::as_i64))
                        .collect()
                })
                .unwrap_or_default()
        };
        let date_only = raw.get("Format").and_then(Value::as_str) == Some("DateOnly")
            || raw
                .get("DateTimeBehavior")
                .and_then(|b| b.get("Value"))
                .and_then(Value::as_str)
                == Some("DateOnly");
        let kind = match attr_type {
            "String" | "Memo" => AttrKind::Text { max_len },
            "Uniqueidentifier" => AttrKind::Guid,
            "DateTime" if date_only => AttrKind::DateOnly,
            "DateTime" => AttrKind::DateTime,
            "Boolean" => AttrKind::Boolean,
            "Picklist" | "State" | "Status" => AttrKind::Choice { options: options() },
            "Integer" | "BigInt" => AttrKind::Integer,
            "Money" | "Decimal" | "Double" => AttrKind::Number,
            _ => AttrKind::Other,
        };
        let flag = |key: &str| raw.get(key).and_then(Value::as_bool).unwrap_or(false);
        Ok(Self {
            valid_for_create: flag("IsValidForCreate"),
            valid_for_update: flag("IsValidForUpdate"),
            name,
            kind,
            raw,
        })
    }

    /// The metadata cast name of this attribute, e.g. `PicklistAttributeMetadata`.
    pub(crate) fn metadata_type(&self) -> &str {
        self.raw
            .get("@odata.type")
            .and_then(Value::as_str)
            .and_then(|t| t.strip_prefix("#Microsoft.Dynamics.CRM."))
            .unwrap_or("AttributeMetadata")
    }
}

/// The columns removed by the schema-drift fault, per table logical name.
pub(crate) type Dropped = HashMap<String, BTreeSet<String>>;
