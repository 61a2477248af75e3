//! Errors: a mapping file that cannot be used, and values that cannot be converted.

use std::fmt;

/// A mapping document that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The document is not valid TOML, or a value has the wrong TOML type.
    #[error("the mapping file is not valid TOML: {message}")]
    Syntax {
        /// The parser's description, with line and column.
        message: String,
    },
    /// The document parsed but some entries are missing, unknown or inconsistent.
    #[error("the mapping file has {} problem(s):\n{}", .0.len(), ProblemList(.0))]
    Invalid(Vec<Problem>),
}

/// One problem in a mapping or configuration document: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key path, e.g. `records.mentor.fields[2].max_length`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A value that cannot be converted between its app and Dataverse forms. Conversion never drops a value silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value's type does not match the field's declared type.
    #[error("field `{field}` expects a {expected} value, got {found}")]
    WrongType {
        /// The app field.
        field: String,
        /// The declared type.
        expected: &'static str,
        /// A description of what was found (never the value itself, which may be personal data).
        found: String,
    },
    /// A text value is longer than the column allows.
    #[error("field `{field}` is {length} characters long; column `{column}` takes at most {max_length}")]
    TooLong {
        /// The app field.
        field: String,
        /// The Dataverse column.
        column: String,
        /// The value's length in characters.
        length: usize,
        /// The column's limit.
        max_length: u32,
    },
    /// A decimal value with more digits after the point than the column keeps; it is refused rather than rounded.
    #[error(
        "field `{field}` has more than {scale} digits after the decimal point, which column `{column}` cannot keep; correct the amount in the app"
    )]
    TooPrecise {
        /// The app field.
        field: String,
        /// The Dataverse column.
        column: String,
        /// The digits after the point the column keeps.
        scale: u32,
    },
    /// A decimal value beyond the range Dataverse stores.
    #[error(
        "field `{field}` is beyond the range column `{column}` stores (±922,337,203,685,477); correct the amount in the app"
    )]
    OutOfRange {
        /// The app field.
        field: String,
        /// The Dataverse column.
        column: String,
    },
    /// An app choice symbol that the mapping's option table does not list.
    #[error("field `{field}` has app value `{symbol}`, which the mapping's options do not list; add it to the mapping")]
    UnknownAppChoice {
        /// The app field.
        field: String,
        /// The app symbol.
        symbol: String,
    },
    /// A Dataverse option value that the mapping's option table does not list.
    #[error(
        "column `{column}` has option value {value}, which the mapping's options for `{field}` do not list; add it to the mapping"
    )]
    UnknownOptionValue {
        /// The app field.
        field: String,
        /// The Dataverse column.
        column: String,
        /// The option value Dataverse returned.
        value: i64,
    },
    /// A column the mapping names is absent from a row Dataverse returned.
    #[error("column `{column}` (field `{field}`) is missing from the row; check that the mapping matches the table")]
    MissingColumn {
        /// The app field.
        field: String,
        /// The property looked for.
        column: String,
    },
    /// A Dataverse value that is not in the documented format for its type.
    #[error("column `{column}` holds a value that is not a valid {expected}")]
    Malformed {
        /// The Dataverse column.
        column: String,
        /// The expected format.
        expected: &'static str,
    },
    /// An alternate key value that Dataverse would reject.
    #[error(
        "alternate key `{field}` contains a character Dataverse forbids in keys (one of / < > * % & : \\ ? +) or is empty"
    )]
    InvalidKey {
        /// The key field.
        field: String,
    },
    /// The app record has no value for a field the conversion needs.
    #[error("the record has no value for field `{field}`")]
    MissingField {
        /// The app field.
        field: String,
    },
}

impl MappingError {
    pub(crate) fn syntax(error: &impl fmt::Display) -> Self {
        MappingError::Syntax {
            message: error.to_string().trim_end().to_owned(),
        }
    }

    /// The individual problems (one for a syntax error).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            MappingError::Syntax { message } => vec![Problem::new("", message.clone())],
            MappingError::Invalid(problems) => problems.clone(),
        }
    }
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Formats problems one per line, indented, for error messages.
pub struct ProblemList<'a>(pub &'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  - {problem}")?;
        }
        Ok(())
    }
}
