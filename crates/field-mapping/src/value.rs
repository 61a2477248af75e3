//! Values in their app form, and their conversion to and from the JSON form Dataverse uses for each column type.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ValueError;
use crate::row::Row;
use crate::spec::{FieldKind, FieldSpec, RecordMapping};

/// A field value in its app form. Shadows (the last value both sides agreed on) are stored in this form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AppValue {
    /// No value. Dataverse stores an empty string as null, so empty text normalises to this.
    Null,
    /// Text.
    Text(String),
    /// Yes or no.
    Bool(bool),
    /// A calendar date without time zone.
    Date(NaiveDate),
    /// An instant in UTC.
    DateTime(DateTime<Utc>),
    /// An exact decimal number (a money amount). Stored in shadows as a string, so it never passes through floating
    /// point.
    Decimal(Decimal),
    /// A choice, by its app symbol (e.g. `expired`).
    Choice(String),
    /// A reference to another Dataverse row, by its id.
    Reference(Uuid),
}

/// An app record in mapping terms: app field name to value.
pub type AppRecord = BTreeMap<String, AppValue>;

/// The largest magnitude Dataverse stores in a money column (and more than any decimal column takes).
pub const MAX_DECIMAL_MAGNITUDE: Decimal = Decimal::from_parts(0x5D63_8865, 0x0003_46DC, 0, false, 0);

/// Characters Dataverse does not accept in alternate key values.
pub const FORBIDDEN_KEY_CHARS: [char; 10] = ['/', '<', '>', '*', '%', '&', ':', '\\', '?', '+'];

impl AppValue {
    /// A short description of the value's type for error messages; never the value, which may be personal data.
    pub fn type_name(&self) -> &'static str {
        match self {
            AppValue::Null => "null",
            AppValue::Text(_) => "text",
            AppValue::Bool(_) => "bool",
            AppValue::Date(_) => "date",
            AppValue::DateTime(_) => "datetime",
            AppValue::Decimal(_) => "decimal",
            AppValue::Choice(_) => "choice",
            AppValue::Reference(_) => "reference",
        }
    }
}

impl FieldSpec {
    /// The value as Dataverse would store it: empty text becomes null and instants are cut to whole seconds, so a
    /// value read back compares equal to the value written.
    pub fn normalise(&self, value: &AppValue) -> AppValue {
        match value {
            AppValue::Text(text) if text.is_empty() => AppValue::Null,
            AppValue::DateTime(at) => AppValue::DateTime(at.trunc_subsecs(0)),
            AppValue::Decimal(number) => AppValue::Decimal(number.normalize()),
            other => other.clone(),
        }
    }

    /// Converts an app value to the property name and JSON value to send to Dataverse.
    pub fn to_dataverse(&self, value: &AppValue) -> Result<(String, Value), ValueError> {
        let value = self.normalise(value);
        let wrong_type = |expected: &'static str| ValueError::WrongType {
            field: self.field.clone(),
            expected,
            found: value.type_name().to_owned(),
        };
        let json = match (&self.kind, &value) {
            (
                FieldKind::Lookup {
                    navigation_property,
                    target_entity_set,
                },
                value,
            ) => {
                let key = format!("{navigation_property}@odata.bind");
                return match value {
                    AppValue::Null => Ok((key, Value::Null)),
                    AppValue::Reference(id) => Ok((key, Value::String(format!("/{target_entity_set}({id})")))),
                    _ => Err(wrong_type("reference")),
                };
            }
            (_, AppValue::Null) => Value::Null,
            (FieldKind::String { max_length }, AppValue::Text(text)) => {
                let length = text.chars().count();
                if length > *max_length as usize {
                    return Err(ValueError::TooLong {
                        field: self.field.clone(),
                        column: self.column.clone(),
                        length,
                        max_length: *max_length,
                    });
                }
                Value::String(text.clone())
            }
            (FieldKind::String { .. }, _) => return Err(wrong_type("text")),
            (FieldKind::Date, AppValue::Date(date)) => Value::String(date.format("%Y-%m-%d").to_string()),
            (FieldKind::Date, _) => return Err(wrong_type("date")),
            (FieldKind::DateTime, AppValue::DateTime(at)) => Value::String(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            (FieldKind::DateTime, _) => return Err(wrong_type("datetime")),
            (FieldKind::Bool, AppValue::Bool(flag)) => Value::Bool(*flag),
            (FieldKind::Bool, _) => return Err(wrong_type("bool")),
            (FieldKind::Decimal { scale }, AppValue::Decimal(number)) => {
                Value::Number(self.decimal_json(*number, *scale)?)
            }
            (FieldKind::Decimal { .. }, _) => return Err(wrong_type("decimal")),
            (FieldKind::Choice { options }, AppValue::Choice(symbol)) => match options.get(symbol) {
                Some(option) => Value::from(*option),
                None => {
                    return Err(ValueError::UnknownAppChoice {
                        field: self.field.clone(),
                        symbol: symbol.clone(),
                    });
                }
            },
            (FieldKind::Choice { .. }, _) => return Err(wrong_type("choice")),
        };
        Ok((self.column.clone(), json))
    }

    /// Reads this field from a Dataverse row and converts it to its app form.
    pub fn from_dataverse(&self, row: &Row) -> Result<AppValue, ValueError> {
        let key = self.read_key();
        let Some(json) = row.get(&key) else {
            return Err(ValueError::MissingColumn {
                field: self.field.clone(),
                column: key,
            });
        };
        let malformed = |expected: &'static str| ValueError::Malformed {
            column: self.column.clone(),
            expected,
        };
        if json.is_null() {
            return Ok(AppValue::Null);
        }
        let value = match &self.kind {
            FieldKind::String { .. } => match json {
                Value::String(text) => AppValue::Text(text.clone()),
                _ => return Err(malformed("string")),
            },
            FieldKind::Date => json
                .as_str()
                .and_then(|text| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                .map(AppValue::Date)
                .ok_or_else(|| malformed("date (YYYY-MM-DD)"))?,
            FieldKind::DateTime => json
                .as_str()
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|at| AppValue::DateTime(at.with_timezone(&Utc)))
                .ok_or_else(|| malformed("date and time (RFC 3339)"))?,
            FieldKind::Bool => json.as_bool().map(AppValue::Bool).ok_or_else(|| malformed("yes/no"))?,
            // The number's exact digits (serde_json keeps them), never an f64.
            FieldKind::Decimal { .. } => match json {
                Value::Number(number) => {
                    let text = number.to_string();
                    Decimal::from_str_exact(&text)
                        .or_else(|_| Decimal::from_scientific(&text))
                        .map(AppValue::Decimal)
                        .map_err(|_| malformed("decimal number"))?
                }
                _ => return Err(malformed("decimal number")),
            },
            FieldKind::Choice { options } => {
                let option = json.as_i64().ok_or_else(|| malformed("option value"))?;
                let symbol = options
                    .iter()
                    .find(|(_, value)| i64::from(**value) == option)
                    .map(|(symbol, _)| symbol.clone())
                    .ok_or_else(|| ValueError::UnknownOptionValue {
                        field: self.field.clone(),
                        column: self.column.clone(),
                        value: option,
                    })?;
                AppValue::Choice(symbol)
            }
            FieldKind::Lookup { .. } => json
                .as_str()
                .and_then(|text| Uuid::parse_str(text).ok())
                .map(AppValue::Reference)
                .ok_or_else(|| malformed("row id (GUID)"))?,
        };
        Ok(self.normalise(&value))
    }
}

impl FieldSpec {
    /// The JSON number for a decimal value: its exact digits at the column's scale (`12.5` at scale 2 is `12.50`).
    /// A value with more digits after the point than the column keeps, or beyond Dataverse's range, is refused.
    fn decimal_json(&self, number: Decimal, scale: u32) -> Result<serde_json::Number, ValueError> {
        let normal = number.normalize();
        if normal.scale() > scale {
            return Err(ValueError::TooPrecise {
                field: self.field.clone(),
                column: self.column.clone(),
                scale,
            });
        }
        if normal.abs() > MAX_DECIMAL_MAGNITUDE {
            return Err(ValueError::OutOfRange {
                field: self.field.clone(),
                column: self.column.clone(),
            });
        }
        let mut exact = normal;
        exact.rescale(scale);
        // With serde_json's `arbitrary_precision` a number is kept as the digits it was made from.
        exact
            .to_string()
            .parse::<serde_json::Number>()
            .map_err(|_| ValueError::OutOfRange {
                field: self.field.clone(),
                column: self.column.clone(),
            })
    }
}

impl RecordMapping {
    /// Converts the given app values to a Dataverse request body. Every value is checked; all failures are returned
    /// together so one bad field does not hide another.
    pub fn to_dataverse(&self, values: &AppRecord) -> Result<Row, Vec<ValueError>> {
        let mut row = Row::new();
        let mut errors = Vec::new();
        for (field, value) in values {
            let Some(spec) = self.field(field) else {
                errors.push(ValueError::WrongType {
                    field: field.clone(),
                    expected: "mapped field",
                    found: format!("a field the `{}` mapping does not declare", self.kind()),
                });
                continue;
            };
            match spec.to_dataverse(value) {
                Ok((key, json)) => {
                    row.insert(key, json);
                }
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() { Ok(row) } else { Err(errors) }
    }

    /// Reads every mapped field from a Dataverse row. All failures are returned together.
    pub fn from_dataverse(&self, row: &Row) -> Result<AppRecord, Vec<ValueError>> {
        let mut record = AppRecord::new();
        let mut errors = Vec::new();
        for spec in self.fields() {
            match spec.from_dataverse(row) {
                Ok(value) => {
                    record.insert(spec.field.clone(), value);
                }
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() { Ok(record) } else { Err(errors) }
    }

    /// The record's alternate key value, checked against the characters Dataverse forbids in keys.
    pub fn key_value<'r>(&self, record: &'r AppRecord) -> Result<&'r str, ValueError> {
        let key = self.alternate_key();
        match record.get(&key.field) {
            Some(AppValue::Text(text)) => {
                if text.trim().is_empty() || text.contains(FORBIDDEN_KEY_CHARS) {
                    Err(ValueError::InvalidKey {
                        field: key.field.clone(),
                    })
                } else {
                    Ok(text)
                }
            }
            Some(AppValue::Null) | None => Err(ValueError::MissingField {
                field: key.field.clone(),
            }),
            Some(other) => Err(ValueError::WrongType {
                field: key.field.clone(),
                expected: "text",
                found: other.type_name().to_owned(),
            }),
        }
    }
}
