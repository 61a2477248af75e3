//! The mapping model and its loader: a TOML document naming, per app record kind, the Dataverse table and
//! one entry per synced field.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{MappingError, Problem};

/// The whole mapping file: one [`RecordMapping`] per app record kind (`mentor`, `posting`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMapping {
    records: BTreeMap<String, RecordMapping>,
}

/// How one kind of app record maps onto one Dataverse table.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMapping {
    kind: String,
    table: String,
    entity_set: String,
    primary_id: String,
    modified_on: String,
    on_delete: OnDelete,
    alternate_key: usize,
    fields: Vec<FieldSpec>,
}

/// One synced field: the app field, the Dataverse column, who owns it and how values are transformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// The app-side field name, as the sync engine knows it.
    pub field: String,
    /// The Dataverse column's logical name.
    pub column: String,
    /// Which side is the system of record for this field.
    pub owner: Owner,
    /// The value type and the transform between app and Dataverse representations.
    pub kind: FieldKind,
    /// The column's display name, used as the CSV header for the Import Data wizard.
    pub display_name: String,
}

/// Which side owns a field and therefore which way it flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Owner {
    /// Written to Dynamics from the app; Dynamics' value is overwritten if someone edits it there.
    App,
    /// Written to the app from Dynamics; never written to Dynamics.
    Dynamics,
    /// Either side may change it; a change on both sides since the last agreement is a conflict.
    Shared,
}

/// The value type of a field, with what the transform needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// Text, at most `max_length` characters (Dataverse counts characters, not bytes).
    String {
        /// The longest value the column accepts.
        max_length: u32,
    },
    /// A calendar date with no time zone (`YYYY-MM-DD`), e.g. a certification expiry.
    Date,
    /// An instant in UTC, sent and compared at whole seconds as Dataverse stores it.
    DateTime,
    /// A yes/no column.
    Bool,
    /// An exact decimal number, e.g. a money amount, with at most `scale` digits after the decimal point (the
    /// column's precision). Never converted through floating point; a value with more digits is refused, not rounded.
    Decimal {
        /// Digits after the decimal point the column keeps (Dataverse money: 0 to 4; decimal: 0 to 10).
        scale: u32,
    },
    /// A choice (option set): app symbols mapped to Dataverse option values.
    Choice {
        /// App symbol to Dataverse option value, one to one.
        options: BTreeMap<String, i32>,
    },
    /// A lookup to another table, written through `<navigation>@odata.bind` and read from `_<column>_value`.
    Lookup {
        /// The target table's entity set name, e.g. `accounts`.
        target_entity_set: String,
        /// The single-valued navigation property, e.g. `parentcustomerid_account`.
        navigation_property: String,
    },
}

/// What a row deleted in Dynamics means for the app. App rows are never deleted silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDelete {
    /// Mark the member's membership as ended and unlink the contact.
    EndMembership,
    /// Only unlink the contact; the app row keeps its data.
    Unlink,
}

/// How a conflict on a shared field is resolved. Used by the configuration (global default and per-field overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictStrategy {
    /// The side whose record changed last (`updated_at` against `modifiedon`) wins.
    NewestWins,
    /// The app's value is written to Dynamics.
    AppWins,
    /// Dynamics' value is written to the app.
    DynamicsWins,
    /// Neither side is written; the conflict waits in the review queue for an admin.
    Manual,
}

impl ConflictStrategy {
    /// Every strategy with its configuration spelling, for help texts and validation messages.
    pub const ALL: [(ConflictStrategy, &'static str); 4] = [
        (ConflictStrategy::NewestWins, "newest-wins"),
        (ConflictStrategy::AppWins, "app-wins"),
        (ConflictStrategy::DynamicsWins, "dynamics-wins"),
        (ConflictStrategy::Manual, "manual"),
    ];

    /// Parses the configuration spelling (`newest-wins`, `app-wins`, `dynamics-wins`, `manual`).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == text)
            .map(|(strategy, _)| *strategy)
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(strategy, _)| *strategy == self)
            .map_or("newest-wins", |(_, name)| name)
    }
}

impl std::fmt::Display for ConflictStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Owner::App => "app",
            Owner::Dynamics => "dynamics",
            Owner::Shared => "shared",
        })
    }
}

impl FieldKind {
    /// The name used for this kind in the mapping file.
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::String { .. } => "string",
            FieldKind::Date => "date",
            FieldKind::DateTime => "datetime",
            FieldKind::Bool => "bool",
            FieldKind::Decimal { .. } => "decimal",
            FieldKind::Choice { .. } => "choice",
            FieldKind::Lookup { .. } => "lookup",
        }
    }
}

impl FieldSpec {
    /// The key under which Dataverse returns this field in a row, and the name to put in `$select`:
    /// lookups are read through their `_<column>_value` property.
    pub fn read_key(&self) -> String {
        match self.kind {
            FieldKind::Lookup { .. } => format!("_{}_value", self.column),
            _ => self.column.clone(),
        }
    }

    /// Whether the integration may ever write this field to Dynamics.
    pub fn writable_to_dynamics(&self) -> bool {
        matches!(self.owner, Owner::App | Owner::Shared)
    }
}

impl FieldMapping {
    /// Parses and validates a mapping document, reporting every problem found, not only the first.
    pub fn from_toml(text: &str) -> Result<Self, MappingError> {
        let mut problems = Vec::new();
        let deserializer = toml::Deserializer::parse(text).map_err(|e| MappingError::syntax(&e))?;
        let raw: RawMapping = serde_ignored::deserialize(deserializer, |path| {
            problems.push(Problem::new(
                path.to_string(),
                "unknown key; remove it or check its spelling against docs/field-mapping.md",
            ));
        })
        .map_err(|e| MappingError::syntax(&e))?;
        let mapping = raw.validate(&mut problems);
        if problems.is_empty() {
            Ok(mapping)
        } else {
            Err(MappingError::Invalid(problems))
        }
    }

    /// The mapping of one app record kind, if the file declares it.
    pub fn record(&self, kind: &str) -> Option<&RecordMapping> {
        self.records.get(kind)
    }

    /// Every record mapping, ordered by kind.
    pub fn records(&self) -> impl Iterator<Item = &RecordMapping> {
        self.records.values()
    }
}

impl RecordMapping {
    /// The app record kind this mapping is for, e.g. `mentor`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The Dataverse table's logical name, e.g. `contact`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The Web API entity set name, e.g. `contacts`.
    pub fn entity_set(&self) -> &str {
        &self.entity_set
    }

    /// The table's primary id column, e.g. `contactid`.
    pub fn primary_id(&self) -> &str {
        &self.primary_id
    }

    /// The table's last-modified column (UTC), e.g. `modifiedon`.
    pub fn modified_on(&self) -> &str {
        &self.modified_on
    }

    /// What a deletion in Dynamics means for the app.
    pub fn on_delete(&self) -> OnDelete {
        self.on_delete
    }

    /// The field whose column is the table's alternate key; upserts address rows by it.
    pub fn alternate_key(&self) -> &FieldSpec {
        &self.fields[self.alternate_key]
    }

    /// Every mapped field, in file order.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The field spec for an app field name.
    pub fn field(&self, field: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.field == field)
    }

    /// The columns the integration may write: those of app-owned and shared fields. The Dynamics client's write
    /// guard refuses every other column.
    pub fn writable_columns(&self) -> BTreeSet<String> {
        self.fields
            .iter()
            .filter(|f| f.writable_to_dynamics())
            .map(|f| match &f.kind {
                FieldKind::Lookup {
                    navigation_property, ..
                } => format!("{navigation_property}@odata.bind"),
                _ => f.column.clone(),
            })
            .collect()
    }

    /// The property names to `$select` when reading rows: the primary id, the modified-on column and every mapped
    /// field (lookups through `_<column>_value`).
    pub fn select_columns(&self) -> Vec<String> {
        let mut columns = vec![self.primary_id.clone(), self.modified_on.clone()];
        for field in &self.fields {
            let key = field.read_key();
            if !columns.contains(&key) {
                columns.push(key);
            }
        }
        columns
    }
}

// ----- the file format -----

/// The mapping file format version this build reads.
const MAPPING_VERSION: u32 = 1;

/// The largest `scale` a decimal field may declare: Dataverse decimal columns keep at most 10 digits after the point.
const MAX_DECIMAL_SCALE: i64 = 10;

#[derive(Deserialize)]
struct RawMapping {
    version: Option<u32>,
    #[serde(default)]
    records: BTreeMap<String, RawRecord>,
}

#[derive(Deserialize)]
struct RawRecord {
    table: Option<String>,
    entity_set: Option<String>,
    primary_id: Option<String>,
    alternate_key: Option<String>,
    modified_on: Option<String>,
    on_delete: Option<String>,
    #[serde(default)]
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
struct RawField {
    field: Option<String>,
    column: Option<String>,
    owner: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    display_name: Option<String>,
    max_length: Option<i64>,
    scale: Option<i64>,
    options: Option<BTreeMap<String, i64>>,
    target_entity_set: Option<String>,
    navigation_property: Option<String>,
}

impl RawMapping {
    fn validate(self, problems: &mut Vec<Problem>) -> FieldMapping {
        match self.version {
            Some(MAPPING_VERSION) => {}
            Some(other) => problems.push(Problem::new(
                "version",
                format!("version {other} is not supported; this build reads version {MAPPING_VERSION}"),
            )),
            None => problems.push(Problem::new(
                "version",
                format!("missing; add `version = {MAPPING_VERSION}` at the top of the mapping file"),
            )),
        }
        if self.records.is_empty() {
            problems.push(Problem::new(
                "records",
                "no record mapping; declare at least [records.mentor] (as the built-in mapping builtin:hlf-default does; docs/field-mapping.md)",
            ));
        }
        let records = self
            .records
            .into_iter()
            .filter_map(|(kind, raw)| {
                let record = raw.validate(&kind, problems)?;
                Some((kind, record))
            })
            .collect();
        FieldMapping { records }
    }
}

fn required(value: Option<String>, path: &str, what: &str, problems: &mut Vec<Problem>) -> String {
    match value {
        Some(v) if !v.trim().is_empty() => {
            if !is_identifier(&v) {
                problems.push(Problem::new(
                    path,
                    format!("`{v}` is not a valid name; use lower-case letters, digits and underscores"),
                ));
            }
            v
        }
        _ => {
            problems.push(Problem::new(path, format!("missing; set it to {what}")));
            String::new()
        }
    }
}

/// Dataverse logical names and app field names are lower-case ASCII identifiers; anything else would need quoting in
/// OData and is almost certainly a typo.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl RawRecord {
    fn validate(self, kind: &str, problems: &mut Vec<Problem>) -> Option<RecordMapping> {
        let at = |key: &str| format!("records.{kind}.{key}");
        let table = required(
            self.table,
            &at("table"),
            "the table's logical name, e.g. \"contact\"",
            problems,
        );
        let entity_set = required(
            self.entity_set,
            &at("entity_set"),
            "the table's entity set name, e.g. \"contacts\"",
            problems,
        );
        let primary_id = required(
            self.primary_id,
            &at("primary_id"),
            "the primary id column, e.g. \"contactid\"",
            problems,
        );
        let modified_on = self.modified_on.unwrap_or_else(|| "modifiedon".to_owned());
        let on_delete = match self.on_delete.as_deref() {
            None | Some("end-membership") => OnDelete::EndMembership,
            Some("unlink") => OnDelete::Unlink,
            Some(other) => {
                problems.push(Problem::new(
                    at("on_delete"),
                    format!("`{other}` is not a choice; use \"end-membership\" or \"unlink\""),
                ));
                OnDelete::EndMembership
            }
        };
        if self.fields.is_empty() {
            problems.push(Problem::new(
                at("fields"),
                "no fields; add at least the alternate key field",
            ));
        }
        let fields: Vec<FieldSpec> = self
            .fields
            .into_iter()
            .enumerate()
            .filter_map(|(i, raw)| raw.validate(&format!("records.{kind}.fields[{i}]"), problems))
            .collect();

        let mut seen_fields = BTreeSet::new();
        let mut seen_columns = BTreeSet::new();
        for (i, field) in fields.iter().enumerate() {
            if !seen_fields.insert(field.field.as_str()) {
                problems.push(Problem::new(
                    format!("records.{kind}.fields[{i}].field"),
                    format!("field `{}` is mapped twice; keep one entry", field.field),
                ));
            }
            if !seen_columns.insert(field.column.as_str()) {
                problems.push(Problem::new(
                    format!("records.{kind}.fields[{i}].column"),
                    format!(
                        "column `{}` is mapped twice; one column takes one app field",
                        field.column
                    ),
                ));
            }
        }

        let alternate_key = match self.alternate_key {
            None => {
                problems.push(Problem::new(
                    at("alternate_key"),
                    "missing; name the field whose column is the table's alternate key, e.g. \"member_number\"",
                ));
                None
            }
            Some(name) => match fields.iter().position(|f| f.field == name) {
                None => {
                    problems.push(Problem::new(
                        at("alternate_key"),
                        format!("`{name}` is not one of this record's fields; map it under [[records.{kind}.fields]]"),
                    ));
                    None
                }
                Some(i) if !matches!(fields[i].kind, FieldKind::String { .. }) => {
                    problems.push(Problem::new(
                        at("alternate_key"),
                        format!("field `{name}` must be of type \"string\" to serve as the alternate key"),
                    ));
                    None
                }
                Some(i) => Some(i),
            },
        };
        Some(RecordMapping {
            kind: kind.to_owned(),
            table,
            entity_set,
            primary_id,
            modified_on,
            on_delete,
            alternate_key: alternate_key?,
            fields,
        })
    }
}

impl RawField {
    fn validate(self, at: &str, problems: &mut Vec<Problem>) -> Option<FieldSpec> {
        let path = |key: &str| format!("{at}.{key}");
        let before = problems.len();
        let field = required(
            self.field,
            &path("field"),
            "the app field name, e.g. \"email\"",
            problems,
        );
        let column = required(
            self.column,
            &path("column"),
            "the Dataverse column, e.g. \"emailaddress1\"",
            problems,
        );
        let owner = match self.owner.as_deref() {
            Some("app") => Some(Owner::App),
            Some("dynamics") => Some(Owner::Dynamics),
            Some("shared") => Some(Owner::Shared),
            Some(other) => {
                problems.push(Problem::new(
                    path("owner"),
                    format!("`{other}` is not an owner; use \"app\", \"dynamics\" or \"shared\""),
                ));
                None
            }
            None => {
                problems.push(Problem::new(
                    path("owner"),
                    "missing; say who owns the field: \"app\", \"dynamics\" or \"shared\"",
                ));
                None
            }
        };
        let display_name = match self.display_name {
            Some(name) if !name.trim().is_empty() => name,
            _ => {
                problems.push(Problem::new(
                    path("display_name"),
                    "missing; set the column's display name as Dynamics shows it (the CSV export uses it)",
                ));
                String::new()
            }
        };
        let kind_name = self.kind.as_deref().unwrap_or("");
        let mut unused = |key: &str, present: bool| {
            if present {
                problems.push(Problem::new(
                    path(key),
                    format!("not used by type \"{kind_name}\"; remove it"),
                ));
            }
        };
        let kind = match kind_name {
            "string" => {
                unused("scale", self.scale.is_some());
                unused("options", self.options.is_some());
                unused("target_entity_set", self.target_entity_set.is_some());
                unused("navigation_property", self.navigation_property.is_some());
                match self.max_length {
                    Some(n) if (1..=1_048_576).contains(&n) => Some(FieldKind::String {
                        max_length: u32::try_from(n).unwrap_or(u32::MAX),
                    }),
                    Some(n) => {
                        problems.push(Problem::new(
                            path("max_length"),
                            format!("{n} is out of range; use the column's maximum length (1 to 1048576)"),
                        ));
                        None
                    }
                    None => {
                        problems.push(Problem::new(
                            path("max_length"),
                            "missing; string fields need the column's maximum length so long values are caught before writing",
                        ));
                        None
                    }
                }
            }
            "date" | "datetime" | "bool" => {
                unused("max_length", self.max_length.is_some());
                unused("scale", self.scale.is_some());
                unused("options", self.options.is_some());
                unused("target_entity_set", self.target_entity_set.is_some());
                unused("navigation_property", self.navigation_property.is_some());
                Some(match kind_name {
                    "date" => FieldKind::Date,
                    "datetime" => FieldKind::DateTime,
                    _ => FieldKind::Bool,
                })
            }
            "decimal" => {
                unused("max_length", self.max_length.is_some());
                unused("options", self.options.is_some());
                unused("target_entity_set", self.target_entity_set.is_some());
                unused("navigation_property", self.navigation_property.is_some());
                match self.scale {
                    Some(n) if (0..=MAX_DECIMAL_SCALE).contains(&n) => Some(FieldKind::Decimal {
                        scale: u32::try_from(n).unwrap_or(0),
                    }),
                    Some(n) => {
                        problems.push(Problem::new(
                            path("scale"),
                            format!(
                                "{n} is out of range; use the column's precision, the digits after the decimal point (0 to {MAX_DECIMAL_SCALE})"
                            ),
                        ));
                        None
                    }
                    None => {
                        problems.push(Problem::new(
                            path("scale"),
                            "missing; decimal fields need the column's precision (digits after the decimal point, e.g. 2 for money) so values are never rounded",
                        ));
                        None
                    }
                }
            }
            "choice" => {
                unused("max_length", self.max_length.is_some());
                unused("scale", self.scale.is_some());
                unused("target_entity_set", self.target_entity_set.is_some());
                unused("navigation_property", self.navigation_property.is_some());
                validate_options(self.options, &path("options"), problems).map(|options| FieldKind::Choice { options })
            }
            "lookup" => {
                unused("max_length", self.max_length.is_some());
                unused("scale", self.scale.is_some());
                unused("options", self.options.is_some());
                let target_entity_set = required(
                    self.target_entity_set,
                    &path("target_entity_set"),
                    "the target table's entity set, e.g. \"accounts\"",
                    problems,
                );
                let navigation_property = required(
                    self.navigation_property,
                    &path("navigation_property"),
                    "the navigation property, e.g. \"parentcustomerid_account\"",
                    problems,
                );
                Some(FieldKind::Lookup {
                    target_entity_set,
                    navigation_property,
                })
            }
            "" => {
                problems.push(Problem::new(
                    path("type"),
                    "missing; use one of \"string\", \"date\", \"datetime\", \"bool\", \"decimal\", \"choice\", \"lookup\"",
                ));
                None
            }
            other => {
                problems.push(Problem::new(
                    path("type"),
                    format!(
                        "`{other}` is not a type; use one of \"string\", \"date\", \"datetime\", \"bool\", \"decimal\", \"choice\", \"lookup\""
                    ),
                ));
                None
            }
        };
        if problems.len() > before {
            return None;
        }
        Some(FieldSpec {
            field,
            column,
            owner: owner?,
            kind: kind?,
            display_name,
        })
    }
}

fn validate_options(
    options: Option<BTreeMap<String, i64>>,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Option<BTreeMap<String, i32>> {
    let Some(options) = options else {
        problems.push(Problem::new(
            at,
            "missing; list each app value with its Dataverse option value, e.g. { active = 100000000 }",
        ));
        return None;
    };
    if options.is_empty() {
        problems.push(Problem::new(
            at,
            "empty; list each app value with its Dataverse option value",
        ));
        return None;
    }
    let mut seen = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (symbol, value) in options {
        let Ok(value) = i32::try_from(value) else {
            problems.push(Problem::new(
                format!("{at}.{symbol}"),
                format!("{value} is not a Dataverse option value (a 32-bit integer)"),
            ));
            continue;
        };
        if let Some(other) = seen.insert(value, symbol.clone()) {
            problems.push(Problem::new(
                format!("{at}.{symbol}"),
                format!("option value {value} is also used by `{other}`; each app value needs its own option"),
            ));
        }
        out.insert(symbol, value);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_accept_logical_names_and_reject_typos() {
        for good in ["contactid", "hlf_membernumber", "_x", "emailaddress1"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "1abc", "Email", "hlf-member", "a b", "e\u{301}"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn conflict_strategy_spellings_round_trip() {
        for (strategy, name) in ConflictStrategy::ALL {
            assert_eq!(ConflictStrategy::parse(name), Some(strategy));
            assert_eq!(strategy.to_string(), name);
        }
        assert_eq!(ConflictStrategy::parse("latest-wins"), None);
    }
}
