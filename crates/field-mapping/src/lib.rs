//! The declarative mapping between the peer-mentor app's fields and Dataverse columns.
//!
//! A mapping file (TOML, see `fixtures/mapping/hlf-default.toml` and `docs/field-mapping.md`) names, per app record
//! kind, the Dataverse table, its alternate key and one entry per synced field: column, owner (app, dynamics or
//! shared), type and display name. This crate loads and validates that file, converts values between their app form
//! ([`AppValue`]) and the JSON Dataverse uses, computes the three-way [`Decision`] per field against the shadow, and
//! checks the mapping against live column metadata (the schema-drift guard).
//!
//! The crate is pure: no IO, nothing async. Column names live in the mapping file, never in code, because HLF owns
//! its schema and may change it.

mod diff;
mod error;
mod metadata;
mod row;
mod spec;
mod value;

pub use diff::{Decision, FieldDiff};
pub use error::{MappingError, Problem, ProblemList, ValueError};
pub use metadata::{ColumnKind, ColumnMetadata, Drift, TableMetadata};
pub use row::{IntoIter as RowIntoIter, LazyRow, Row};
pub use rust_decimal::Decimal;
pub use spec::{ConflictStrategy, FieldKind, FieldMapping, FieldSpec, OnDelete, Owner, RecordMapping};
pub use value::{AppRecord, AppValue, FORBIDDEN_KEY_CHARS, MAX_DECIMAL_MAGNITUDE};

/// The default HLF mapping (`fixtures/mapping/hlf-default.toml`), embedded so the demo and tests need no file.
pub const HLF_DEFAULT_MAPPING: &str = include_str!("../../../fixtures/mapping/hlf-default.toml");
