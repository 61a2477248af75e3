//! Column metadata as data, and the schema-drift check: does the live table still match what the mapping assumes?
//! The Dynamics client fills [`TableMetadata`] from `EntityDefinitions`; this module never does IO.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::spec::{FieldKind, Owner, RecordMapping};

/// What Dataverse says about one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableMetadata {
    /// The table's logical name, e.g. `contact`.
    pub logical_name: String,
    /// Whether change tracking is enabled (`ChangeTrackingEnabled`), so delta links can be used.
    pub change_tracking: bool,
    /// Columns by logical name.
    pub columns: BTreeMap<String, ColumnMetadata>,
}

/// What Dataverse says about one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMetadata {
    /// The column's logical name.
    pub logical_name: String,
    /// Its type.
    pub kind: ColumnKind,
    /// The maximum length of a text column.
    pub max_length: Option<u32>,
    /// The option values of a choice column.
    pub options: Option<BTreeSet<i32>>,
    /// Whether the column can be set on update (`IsValidForUpdate`).
    pub valid_for_update: bool,
}

/// A column type, from `AttributeType` (and, for dates, the date-only format or behaviour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// Single line of text.
    String,
    /// Multiple lines of text.
    Memo,
    /// A date-time column with the date-only format or behaviour.
    DateOnly,
    /// A date-time column holding instants.
    DateTime,
    /// Yes/no.
    Boolean,
    /// A choice.
    Picklist,
    /// The `statecode` column.
    State,
    /// The `statuscode` column.
    Status,
    /// A lookup (also customer and owner lookups).
    Lookup,
    /// Any other type, by its Dataverse name.
    Other(String),
}

/// One way the live table no longer matches the mapping. Any drift stops the sync from writing to Dynamics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Drift {
    /// The metadata describes another table than the mapping names.
    #[error("metadata is for table `{found}` but the mapping expects `{expected}`")]
    WrongTable {
        /// The mapping's table.
        expected: String,
        /// The metadata's table.
        found: String,
    },
    /// A mapped column does not exist.
    #[error(
        "column `{column}` (field `{field}`) does not exist on table `{table}`; ask HLF whether it was renamed or removed and update the mapping"
    )]
    MissingColumn {
        /// The table.
        table: String,
        /// The app field.
        field: String,
        /// The missing column.
        column: String,
    },
    /// A mapped column has a type the field's transform cannot handle.
    #[error("column `{column}` (field `{field}`) is of type {found} but the mapping declares \"{expected}\"")]
    WrongType {
        /// The app field.
        field: String,
        /// The column.
        column: String,
        /// The mapping's type.
        expected: &'static str,
        /// The column's type.
        found: ColumnKind,
    },
    /// The mapping allows longer text than the column takes, so writes could fail.
    #[error(
        "column `{column}` (field `{field}`) takes at most {column_max} characters but the mapping allows {mapping_max}; lower max_length to {column_max}"
    )]
    TooLong {
        /// The app field.
        field: String,
        /// The column.
        column: String,
        /// The mapping's limit.
        mapping_max: u32,
        /// The column's limit.
        column_max: u32,
    },
    /// The mapping lists an option value the column does not offer.
    #[error(
        "column `{column}` (field `{field}`) has no option value {value} for app value `{symbol}`; update the mapping's options"
    )]
    UnknownOption {
        /// The app field.
        field: String,
        /// The column.
        column: String,
        /// The app symbol.
        symbol: String,
        /// The option value the column lacks.
        value: i32,
    },
    /// A column the integration writes cannot be updated.
    #[error(
        "column `{column}` (field `{field}`) is read-only in Dynamics but the mapping writes it; make the field dynamics-owned or ask HLF to allow updates"
    )]
    NotWritable {
        /// The app field.
        field: String,
        /// The column.
        column: String,
    },
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnKind::String => f.write_str("String"),
            ColumnKind::Memo => f.write_str("Memo"),
            ColumnKind::DateOnly => f.write_str("DateTime (date only)"),
            ColumnKind::DateTime => f.write_str("DateTime"),
            ColumnKind::Boolean => f.write_str("Boolean"),
            ColumnKind::Picklist => f.write_str("Picklist"),
            ColumnKind::State => f.write_str("State"),
            ColumnKind::Status => f.write_str("Status"),
            ColumnKind::Lookup => f.write_str("Lookup"),
            ColumnKind::Other(name) => f.write_str(name),
        }
    }
}

impl FieldKind {
    fn accepts(&self, column: &ColumnKind) -> bool {
        match self {
            FieldKind::String { .. } => matches!(column, ColumnKind::String | ColumnKind::Memo),
            FieldKind::Date => matches!(column, ColumnKind::DateOnly),
            FieldKind::DateTime => matches!(column, ColumnKind::DateTime),
            FieldKind::Bool => matches!(column, ColumnKind::Boolean),
            FieldKind::Decimal { .. } => {
                matches!(column, ColumnKind::Other(name) if name == "Money" || name == "Decimal")
            }
            FieldKind::Choice { .. } => {
                matches!(column, ColumnKind::Picklist | ColumnKind::State | ColumnKind::Status)
            }
            FieldKind::Lookup { .. } => matches!(column, ColumnKind::Lookup),
        }
    }
}

impl RecordMapping {
    /// Checks the mapping against the live table's metadata and returns every mismatch (empty when none). The
    /// engine runs this before writing; any drift means nothing is written to Dynamics.
    pub fn check_schema(&self, table: &TableMetadata) -> Vec<Drift> {
        let mut drift = Vec::new();
        if table.logical_name != self.table() {
            drift.push(Drift::WrongTable {
                expected: self.table().to_owned(),
                found: table.logical_name.clone(),
            });
            return drift;
        }
        for spec in self.fields() {
            let Some(column) = table.columns.get(&spec.column) else {
                drift.push(Drift::MissingColumn {
                    table: table.logical_name.clone(),
                    field: spec.field.clone(),
                    column: spec.column.clone(),
                });
                continue;
            };
            if !spec.kind.accepts(&column.kind) {
                drift.push(Drift::WrongType {
                    field: spec.field.clone(),
                    column: spec.column.clone(),
                    expected: spec.kind.name(),
                    found: column.kind.clone(),
                });
                continue;
            }
            match &spec.kind {
                FieldKind::String { max_length } => {
                    if let Some(column_max) = column.max_length.filter(|m| m < max_length) {
                        drift.push(Drift::TooLong {
                            field: spec.field.clone(),
                            column: spec.column.clone(),
                            mapping_max: *max_length,
                            column_max,
                        });
                    }
                }
                FieldKind::Choice { options } => {
                    let offered = column.options.clone().unwrap_or_default();
                    for (symbol, value) in options {
                        if !offered.contains(value) {
                            drift.push(Drift::UnknownOption {
                                field: spec.field.clone(),
                                column: spec.column.clone(),
                                symbol: symbol.clone(),
                                value: *value,
                            });
                        }
                    }
                }
                _ => {}
            }
            if matches!(spec.owner, Owner::App | Owner::Shared) && !column.valid_for_update {
                drift.push(Drift::NotWritable {
                    field: spec.field.clone(),
                    column: spec.column.clone(),
                });
            }
        }
        drift
    }
}
