//! The OData subset Dataverse clients use: `$filter` (parsed into a typed tree and evaluated against rows),
//! `$orderby`, `$select`, key segments, and the conversion of JSON values to the stored form of each column type.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::dverror::{self, DvError};
use crate::metadata::{AttrDef, AttrKind, TableDef};

/// A literal in a `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Str(String),
    Num(f64),
    Bool(bool),
    Guid(Uuid),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A string function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrFn {
    Contains,
    StartsWith,
    EndsWith,
}

/// The deepest nesting of parentheses and `not` a `$filter` may have. Parsing, evaluating and dropping the tree
/// recurse once per level, so without a bound a filter of a few thousand `(` overflows the stack.
const MAX_FILTER_DEPTH: usize = 100;

/// A parsed `$filter`. `and`/`or` chains are flat lists rather than nested pairs, so a long chain of conditions
/// (clients build `id eq a or id eq b or ...` with hundreds of terms) does not deepen the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp {
        column: String,
        op: CmpOp,
        value: Literal,
    },
    Func {
        func: StrFn,
        column: String,
        needle: String,
    },
    /// `Microsoft.Dynamics.CRM.In` (or `NotIn` when `negated`): the column holds one of the values.
    In {
        column: String,
        values: Vec<Literal>,
        /// The text values folded to lower case, as the collation compares them: a row is matched with one
        /// look-up, not one comparison per value (twenty `In` queries of 250 member numbers over 50,000 contacts
        /// would otherwise be 250 million comparisons).
        folded: std::collections::HashSet<String>,
        negated: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    LBracket,
    RBracket,
    Equals,
    Str(String),
    Word(String),
}

fn syntax(pos: usize, text: &str) -> DvError {
    DvError::odata(format!("Syntax error at position {pos} in '{text}'."))
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, DvError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                out.push((i, Tok::LParen));
                i += 1;
            }
            ')' => {
                out.push((i, Tok::RParen));
                i += 1;
            }
            ',' => {
                out.push((i, Tok::Comma));
                i += 1;
            }
            '[' => {
                out.push((i, Tok::LBracket));
                i += 1;
            }
            ']' => {
                out.push((i, Tok::RBracket));
                i += 1;
            }
            '=' => {
                out.push((i, Tok::Equals));
                i += 1;
            }
            '"' => {
                // A double-quoted string: the JSON form query functions take for their values (it may hold an
                // apostrophe).
                let start = i;
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(syntax(start, text)),
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some('"') => s.push('"'),
                                Some('\\') => s.push('\\'),
                                Some('/') => s.push('/'),
                                _ => return Err(syntax(i, text)),
                            }
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            '\'' => {
                let start = i;
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err(syntax(start, text)),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            c if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+' | '/' | '@' | '$') => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '.' | ':' | '+' | '/' | '@' | '$'))
                {
                    i += 1;
                }
                out.push((start, Tok::Word(chars[start..i].iter().collect())));
            }
            _ => return Err(syntax(i, text)),
        }
    }
    Ok(out)
}

fn is_identifier(w: &str) -> bool {
    let mut chars = w.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a literal word (anything but a quoted string).
fn word_literal(w: &str) -> Option<Literal> {
    match w {
        "null" => return Some(Literal::Null),
        "true" => return Some(Literal::Bool(true)),
        "false" => return Some(Literal::Bool(false)),
        _ => {}
    }
    if w.len() == 36
        && let Ok(g) = Uuid::parse_str(w)
    {
        return Some(Literal::Guid(g));
    }
    if w.len() == 10
        && let Ok(d) = NaiveDate::parse_from_str(w, "%Y-%m-%d")
    {
        return Some(Literal::Date(d));
    }
    if w.contains('T')
        && let Ok(dt) = DateTime::parse_from_rfc3339(w)
    {
        return Some(Literal::DateTime(dt.with_timezone(&Utc)));
    }
    let first = w.chars().next()?;
    if first.is_ascii_digit() || first == '-' {
        let trimmed = w.trim_end_matches(['m', 'M', 'd', 'D', 'f', 'F', 'L']);
        return trimmed.parse::<f64>().ok().map(Literal::Num);
    }
    None
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    /// Current nesting of parentheses and `not`, bounded by [`MAX_FILTER_DEPTH`].
    depth: usize,
    text: &'a str,
    def: &'a TableDef,
    visible: &'a dyn Fn(&str) -> bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn here(&self) -> usize {
        // Lazily: counting the text on every call made parsing quadratic in the filter's length.
        self.toks
            .get(self.pos)
            .map_or_else(|| self.text.chars().count(), |(p, _)| *p)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w == kw)
    }

    fn or(&mut self) -> Result<Filter, DvError> {
        let mut terms = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Filter::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Filter, DvError> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and") {
            self.pos += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.swap_remove(0)
        } else {
            Filter::And(terms)
        })
    }

    /// Enters one level of nesting; Microsoft's OData parser answers an over-deep expression this way too.
    fn descend(&mut self) -> Result<(), DvError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(DvError::odata(format!(
                "The recursion limit has been exceeded: the $filter nests parentheses or 'not' more than {MAX_FILTER_DEPTH} deep."
            )));
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Filter, DvError> {
        if self.keyword("not") {
            self.pos += 1;
            self.descend()?;
            let inner = self.unary()?;
            self.depth -= 1;
            // Dataverse refuses to negate a query function; `NotIn` is the way.
            if matches!(inner, Filter::In { .. }) {
                return Err(DvError::odata(
                    "Not operator along with the Custom Named Condition operators is not allowed".to_owned(),
                ));
            }
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.primary()
    }

    /// `Microsoft.Dynamics.CRM.In(PropertyName='col',PropertyValues=['a','b'])`, after its name.
    fn query_function(&mut self, name: &str) -> Result<Filter, DvError> {
        let negated = match name {
            "Microsoft.Dynamics.CRM.In" => false,
            "Microsoft.Dynamics.CRM.NotIn" => true,
            other => {
                return Err(DvError::odata(format!(
                    "An unknown function with name '{other}' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed."
                )));
            }
        };
        self.expect(&Tok::LParen)?;
        let mut column: Option<String> = None;
        let mut values: Option<Vec<String>> = None;
        loop {
            let at = self.here();
            let Some(Tok::Word(parameter)) = self.next() else {
                return Err(syntax(at, self.text));
            };
            self.expect(&Tok::Equals)?;
            match parameter.as_str() {
                "PropertyName" => {
                    let at = self.here();
                    let Some(Tok::Str(name)) = self.next() else {
                        return Err(syntax(at, self.text));
                    };
                    column = Some(name);
                }
                "PropertyValues" => {
                    self.expect(&Tok::LBracket)?;
                    let mut list = Vec::new();
                    if !matches!(self.peek(), Some(Tok::RBracket)) {
                        loop {
                            let at = self.here();
                            let Some(Tok::Str(value)) = self.next() else {
                                return Err(syntax(at, self.text));
                            };
                            list.push(value);
                            if matches!(self.peek(), Some(Tok::Comma)) {
                                self.pos += 1;
                            } else {
                                break;
                            }
                        }
                    }
                    self.expect(&Tok::RBracket)?;
                    values = Some(list);
                }
                other => {
                    return Err(DvError::odata(format!(
                        "The parameter '{other}' is not a parameter of the function '{name}'."
                    )));
                }
            }
            if matches!(self.peek(), Some(Tok::Comma)) {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.expect(&Tok::RParen)?;
        let (Some(column), Some(values)) = (column, values) else {
            return Err(DvError::odata(format!(
                "The function '{name}' needs both PropertyName and PropertyValues."
            )));
        };
        if values.is_empty() {
            return Err(DvError::odata(format!(
                "The function '{name}' needs at least one value in PropertyValues."
            )));
        }
        let attr = self.column(&column)?;
        let values = values
            .into_iter()
            .map(|value| function_value(attr, value))
            .collect::<Result<Vec<_>, _>>()?;
        let folded = values
            .iter()
            .filter_map(|value| match value {
                Literal::Str(text) => Some(fold(text)),
                _ => None,
            })
            .collect();
        Ok(Filter::In {
            column,
            values,
            folded,
            negated,
        })
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), DvError> {
        let at = self.here();
        if self.next().as_ref() == Some(tok) {
            Ok(())
        } else {
            Err(syntax(at, self.text))
        }
    }

    fn column(&self, name: &str) -> Result<&AttrDef, DvError> {
        match self.def.attr(name) {
            Some(a) if (self.visible)(name) => Ok(a),
            _ => Err(DvError::unknown_property(self.def, name)),
        }
    }

    fn primary(&mut self) -> Result<Filter, DvError> {
        let at = self.here();
        match self.next() {
            Some(Tok::LParen) => {
                self.descend()?;
                let inner = self.or()?;
                self.expect(&Tok::RParen)?;
                self.depth -= 1;
                Ok(inner)
            }
            Some(Tok::Word(w)) if w.starts_with("Microsoft.Dynamics.CRM.") => self.query_function(&w),
            Some(Tok::Word(w)) if matches!(self.peek(), Some(Tok::LParen)) => {
                let func = match w.as_str() {
                    "contains" => StrFn::Contains,
                    "startswith" => StrFn::StartsWith,
                    "endswith" => StrFn::EndsWith,
                    other => {
                        return Err(DvError::odata(format!(
                            "An unknown function with name '{other}' was found. This may also be a function import or a key lookup on a navigation property, which is not allowed."
                        )));
                    }
                };
                self.pos += 1;
                let col_at = self.here();
                let Some(Tok::Word(column)) = self.next() else {
                    return Err(syntax(col_at, self.text));
                };
                let attr = self.column(&column)?;
                if !matches!(attr.kind, AttrKind::Text { .. }) {
                    return Err(DvError::odata(format!(
                        "No function signature for the function with name '{w}' matches the specified arguments."
                    )));
                }
                self.expect(&Tok::Comma)?;
                let lit_at = self.here();
                let Some(Tok::Str(needle)) = self.next() else {
                    return Err(syntax(lit_at, self.text));
                };
                self.expect(&Tok::RParen)?;
                Ok(Filter::Func { func, column, needle })
            }
            Some(first) => {
                let op_at = self.here();
                let op = match self.next() {
                    Some(Tok::Word(w)) => match w.as_str() {
                        "eq" => CmpOp::Eq,
                        "ne" => CmpOp::Ne,
                        "gt" => CmpOp::Gt,
                        "ge" => CmpOp::Ge,
                        "lt" => CmpOp::Lt,
                        "le" => CmpOp::Le,
                        _ => return Err(syntax(op_at, self.text)),
                    },
                    _ => return Err(syntax(op_at, self.text)),
                };
                let second_at = self.here();
                let second = self.next().ok_or_else(|| syntax(second_at, self.text))?;
                let (column, lit, op) = match (first, second) {
                    (Tok::Word(c), other) if is_identifier(&c) && word_literal(&c).is_none() => {
                        (c, self.literal(other, second_at)?, op)
                    }
                    (other, Tok::Word(c)) if is_identifier(&c) && word_literal(&c).is_none() => {
                        let flipped = match op {
                            CmpOp::Gt => CmpOp::Lt,
                            CmpOp::Ge => CmpOp::Le,
                            CmpOp::Lt => CmpOp::Gt,
                            CmpOp::Le => CmpOp::Ge,
                            same => same,
                        };
                        (c, self.literal(other, at)?, flipped)
                    }
                    _ => return Err(syntax(at, self.text)),
                };
                let attr = self.column(&column)?;
                let value = typed_literal(attr, lit)?;
                Ok(Filter::Cmp { column, op, value })
            }
            None => Err(syntax(at, self.text)),
        }
    }

    fn literal(&self, tok: Tok, at: usize) -> Result<Literal, DvError> {
        match tok {
            Tok::Str(s) => Ok(Literal::Str(s)),
            Tok::Word(w) => word_literal(&w).ok_or_else(|| syntax(at, self.text)),
            _ => Err(syntax(at, self.text)),
        }
    }
}

fn edm(lit: &Literal) -> &'static str {
    match lit {
        Literal::Null => "null",
        Literal::Str(_) => "Edm.String",
        Literal::Num(_) => "Edm.Int32",
        Literal::Bool(_) => "Edm.Boolean",
        Literal::Guid(_) => "Edm.Guid",
        Literal::Date(_) => "Edm.Date",
        Literal::DateTime(_) => "Edm.DateTimeOffset",
    }
}

fn attr_edm(kind: &AttrKind) -> &'static str {
    match kind {
        AttrKind::Text { .. } => "Edm.String",
        AttrKind::Guid => "Edm.Guid",
        AttrKind::DateOnly => "Edm.Date",
        AttrKind::DateTime => "Edm.DateTimeOffset",
        AttrKind::Boolean => "Edm.Boolean",
        AttrKind::Choice { .. } | AttrKind::Integer => "Edm.Int32",
        AttrKind::Number => "Edm.Decimal",
        AttrKind::Other => "Edm.Untyped",
    }
}

/// Checks that a literal fits the column and converts it to the column's comparison form.
fn typed_literal(attr: &AttrDef, lit: Literal) -> Result<Literal, DvError> {
    let incompatible = |lit: &Literal| {
        DvError::odata(format!(
            "A binary operator with incompatible types was detected. Found operand types '{}' and '{}' for operator kind 'Equal'.",
            attr_edm(&attr.kind),
            edm(lit)
        ))
    };
    Ok(match (&attr.kind, lit) {
        (_, Literal::Null) => Literal::Null,
        (AttrKind::Text { .. }, Literal::Str(s)) => Literal::Str(s),
        (AttrKind::Guid, Literal::Guid(g)) => Literal::Guid(g),
        (AttrKind::Guid, Literal::Str(s)) => {
            Literal::Guid(Uuid::parse_str(&s).map_err(|_| incompatible(&Literal::Str(s)))?)
        }
        (AttrKind::DateOnly, Literal::Date(d)) => Literal::Date(d),
        (AttrKind::DateOnly, Literal::DateTime(dt)) => Literal::Date(dt.date_naive()),
        (AttrKind::DateTime, Literal::DateTime(dt)) => Literal::DateTime(dt),
        (AttrKind::DateTime, Literal::Date(d)) => {
            Literal::DateTime(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        }
        (AttrKind::Boolean, Literal::Bool(b)) => Literal::Bool(b),
        (AttrKind::Choice { .. } | AttrKind::Integer | AttrKind::Number, Literal::Num(n)) => Literal::Num(n),
        (AttrKind::Other, lit) => lit,
        (_, lit) => return Err(incompatible(&lit)),
    })
}

/// A query function's value (always given as a string) in the column's comparison form.
fn function_value(attr: &AttrDef, value: String) -> Result<Literal, DvError> {
    let invalid = || {
        DvError::odata(format!(
            "The value '{value}' in PropertyValues is not valid for the attribute '{}'.",
            attr.name
        ))
    };
    Ok(match &attr.kind {
        AttrKind::Text { .. } | AttrKind::Other => Literal::Str(value),
        AttrKind::Guid => Literal::Guid(Uuid::parse_str(&value).map_err(|_| invalid())?),
        AttrKind::Choice { .. } | AttrKind::Integer | AttrKind::Number => {
            Literal::Num(value.parse().map_err(|_| invalid())?)
        }
        AttrKind::Boolean => Literal::Bool(value.parse().map_err(|_| invalid())?),
        AttrKind::DateOnly => Literal::Date(NaiveDate::parse_from_str(&value, "%Y-%m-%d").map_err(|_| invalid())?),
        AttrKind::DateTime => Literal::DateTime(
            DateTime::parse_from_rfc3339(&value)
                .map_err(|_| invalid())?
                .with_timezone(&Utc),
        ),
    })
}

/// Parses a `$filter` against a table; `visible` says whether a column still exists (schema drift).
pub(crate) fn parse_filter(text: &str, def: &TableDef, visible: &dyn Fn(&str) -> bool) -> Result<Filter, DvError> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err(syntax(0, text));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        text,
        def,
        visible,
    };
    let f = p.or()?;
    if p.pos < p.toks.len() {
        return Err(syntax(p.here(), text));
    }
    Ok(f)
}

/// Converts a stored value to the comparison form of its column.
fn stored_literal(kind: &AttrKind, v: Option<&Value>) -> Literal {
    let Some(v) = v else { return Literal::Null };
    match (kind, v) {
        (_, Value::Null) => Literal::Null,
        (AttrKind::Guid, Value::String(s)) => Uuid::parse_str(s).map(Literal::Guid).unwrap_or(Literal::Null),
        (AttrKind::DateOnly, Value::String(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Literal::Date)
            .unwrap_or(Literal::Null),
        (AttrKind::DateTime, Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|d| Literal::DateTime(d.with_timezone(&Utc)))
            .unwrap_or(Literal::Null),
        (_, Value::String(s)) => Literal::Str(s.clone()),
        (_, Value::Bool(b)) => Literal::Bool(*b),
        (_, Value::Number(n)) => Literal::Num(n.as_f64().unwrap_or(0.0)),
        _ => Literal::Null,
    }
}

fn cmp_literal(a: &Literal, b: &Literal) -> Option<Ordering> {
    match (a, b) {
        (Literal::Str(x), Literal::Str(y)) => Some(cmp_text(x, y)),
        (Literal::Num(x), Literal::Num(y)) => x.partial_cmp(y),
        (Literal::Bool(x), Literal::Bool(y)) => Some(x.cmp(y)),
        (Literal::Guid(x), Literal::Guid(y)) => Some(x.cmp(y)),
        (Literal::Date(x), Literal::Date(y)) => Some(x.cmp(y)),
        (Literal::DateTime(x), Literal::DateTime(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A text as the case-insensitive collation compares it: equal folds are equal texts under [`cmp_text`].
fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// Dataverse's default collation is case-insensitive.
fn cmp_text(a: &str, b: &str) -> Ordering {
    a.chars()
        .flat_map(char::to_lowercase)
        .cmp(b.chars().flat_map(char::to_lowercase))
}

/// Evaluates a filter against a row's columns.
pub(crate) fn eval(f: &Filter, row: &Map<String, Value>, def: &TableDef) -> bool {
    match f {
        Filter::And(terms) => terms.iter().all(|t| eval(t, row, def)),
        Filter::Or(terms) => terms.iter().any(|t| eval(t, row, def)),
        Filter::Not(a) => !eval(a, row, def),
        Filter::Cmp { column, op, value } => {
            let kind = def.attr(column).map_or(AttrKind::Other, |a| a.kind.clone());
            let stored = stored_literal(&kind, row.get(column));
            match (&stored, value) {
                (Literal::Null, Literal::Null) => matches!(op, CmpOp::Eq | CmpOp::Ge | CmpOp::Le),
                (Literal::Null, _) | (_, Literal::Null) => *op == CmpOp::Ne,
                _ => match cmp_literal(&stored, value) {
                    None => *op == CmpOp::Ne,
                    Some(o) => match op {
                        CmpOp::Eq => o == Ordering::Equal,
                        CmpOp::Ne => o != Ordering::Equal,
                        CmpOp::Gt => o == Ordering::Greater,
                        CmpOp::Ge => o != Ordering::Less,
                        CmpOp::Lt => o == Ordering::Less,
                        CmpOp::Le => o != Ordering::Greater,
                    },
                },
            }
        }
        Filter::In {
            column,
            values,
            folded,
            negated,
        } => {
            let kind = def.attr(column).map_or(AttrKind::Other, |a| a.kind.clone());
            let stored = stored_literal(&kind, row.get(column));
            let found = match &stored {
                Literal::Str(text) => folded.contains(&fold(text)),
                _ => values
                    .iter()
                    .any(|value| cmp_literal(&stored, value) == Some(Ordering::Equal)),
            };
            found != *negated
        }
        Filter::Func { func, column, needle } => {
            let Some(Value::String(s)) = row.get(column) else {
                return false;
            };
            let (s, n) = (s.to_lowercase(), needle.to_lowercase());
            match func {
                StrFn::Contains => s.contains(&n),
                StrFn::StartsWith => s.starts_with(&n),
                StrFn::EndsWith => s.ends_with(&n),
            }
        }
    }
}

/// Compares two stored values of a column for `$orderby` and paging; nulls sort first, as in SQL Server.
pub(crate) fn cmp_values(kind: &AttrKind, a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (a, b) = (stored_literal(kind, a), stored_literal(kind, b));
    match (&a, &b) {
        (Literal::Null, Literal::Null) => Ordering::Equal,
        (Literal::Null, _) => Ordering::Less,
        (_, Literal::Null) => Ordering::Greater,
        _ => cmp_literal(&a, &b).unwrap_or(Ordering::Equal),
    }
}

/// One `$orderby` term.
#[derive(Debug, Clone)]
pub(crate) struct OrderTerm {
    pub(crate) column: String,
    pub(crate) kind: AttrKind,
    pub(crate) descending: bool,
}

/// Parses `$orderby`.
pub(crate) fn parse_orderby(
    text: &str,
    def: &TableDef,
    visible: &dyn Fn(&str) -> bool,
) -> Result<Vec<OrderTerm>, DvError> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let mut words = part.split_whitespace();
        let Some(column) = words.next() else {
            return Err(syntax(0, text));
        };
        let descending = match words.next() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(syntax(0, text)),
        };
        if words.next().is_some() {
            return Err(syntax(0, text));
        }
        let attr = match def.attr(column) {
            Some(a) if visible(column) => a,
            _ => return Err(DvError::unknown_property(def, column)),
        };
        out.push(OrderTerm {
            column: column.to_owned(),
            kind: attr.kind.clone(),
            descending,
        });
    }
    Ok(out)
}

/// Parses `$select` into column names.
pub(crate) fn parse_select(text: &str, def: &TableDef, visible: &dyn Fn(&str) -> bool) -> Result<Vec<String>, DvError> {
    let mut out = Vec::new();
    for c in text.split(',').map(str::trim) {
        if c.is_empty() {
            return Err(syntax(0, text));
        }
        if def.attr(c).is_none() || !visible(c) {
            return Err(DvError::unknown_property(def, c));
        }
        out.push(c.to_owned());
    }
    Ok(out)
}

/// How a key segment addresses a row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyRef {
    /// By primary key.
    Id(Uuid),
    /// By alternate key: column and stored value.
    Alt(Vec<(String, Value)>),
}

/// Parses the text between the parentheses of `contacts(...)`.
pub(crate) fn parse_key(text: &str, def: &TableDef) -> Result<KeyRef, DvError> {
    let bad = || {
        DvError::odata(format!(
            "Bad Request - Error in query syntax. The key '{text}' is not valid."
        ))
    };
    let text = text.trim();
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(KeyRef::Id(id));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let name_start = i;
        while i < chars.len() && chars[i] != '=' {
            i += 1;
        }
        let name: String = chars[name_start..i].iter().collect::<String>().trim().to_owned();
        if i >= chars.len() || name.is_empty() {
            return Err(bad());
        }
        i += 1;
        let lit = if chars.get(i) == Some(&'\'') {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(bad()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            Literal::Str(s)
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            word_literal(word.trim()).ok_or_else(bad)?
        };
        let attr = def.attr(&name).ok_or_else(|| DvError::unknown_property(def, &name))?;
        let value = match (&attr.kind, lit) {
            (AttrKind::Text { .. }, Literal::Str(s)) => Value::String(s),
            (AttrKind::Guid, Literal::Guid(g)) => Value::String(g.to_string()),
            (_, Literal::Num(n)) if n.fract() == 0.0 => Value::from(n as i64),
            (_, Literal::Num(n)) => serde_json::Number::from_f64(n).map(Value::Number).ok_or_else(bad)?,
            (_, Literal::Str(s)) => Value::String(s),
            _ => return Err(bad()),
        };
        pairs.push((name, value));
        match chars.get(i) {
            None => {}
            Some(',') => i += 1,
            Some(_) => return Err(bad()),
        }
    }
    if pairs.is_empty() {
        return Err(bad());
    }
    if pairs.len() == 1
        && pairs[0].0 == def.primary_id
        && let Value::String(s) = &pairs[0].1
        && let Ok(id) = Uuid::parse_str(s)
    {
        return Ok(KeyRef::Id(id));
    }
    let mut cols: Vec<&str> = pairs.iter().map(|(c, _)| c.as_str()).collect();
    cols.sort_unstable();
    let is_key = def.keys.iter().any(|k| {
        let mut k: Vec<&str> = k.iter().map(String::as_str).collect();
        k.sort_unstable();
        k == cols
    });
    if !is_key {
        return Err(DvError::bad_request(
            dverror::INVALID_ARGUMENT,
            format!(
                "The key attribute(s) {} do not match any alternate key defined for the entity {}",
                cols.join(","),
                def.logical_name
            ),
        ));
    }
    Ok(KeyRef::Alt(pairs))
}

/// Converts a value sent by a client to the stored form of its column, validating it as Dataverse does.
pub(crate) fn normalize_value(def: &TableDef, attr: &AttrDef, value: Value) -> Result<Value, DvError> {
    let wrong_type = || {
        DvError::bad_request(
            dverror::PAYLOAD,
            format!(
                "Error identified in Payload provided by the user for Entity :'{}'. Cannot convert the literal '{}' to the expected type '{}' for property '{}'.",
                def.entity_set,
                compact(&value),
                attr_edm(&attr.kind),
                attr.name
            ),
        )
    };
    if value.is_null() {
        return Ok(Value::Null);
    }
    Ok(match &attr.kind {
        AttrKind::Text { max_len } => {
            let Value::String(s) = &value else {
                return Err(wrong_type());
            };
            if s.chars().count() > *max_len {
                return Err(DvError::bad_request(
                    dverror::VALIDATION,
                    format!(
                        "A validation error occurred.  The length of the '{}' attribute of the '{}' entity exceeded the maximum allowed length of '{max_len}'.",
                        attr.name, def.logical_name
                    ),
                ));
            }
            value
        }
        AttrKind::Guid => {
            let Some(g) = value.as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
                return Err(wrong_type());
            };
            Value::String(g.to_string())
        }
        AttrKind::DateOnly => {
            let Some(s) = value.as_str() else {
                return Err(wrong_type());
            };
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|d| d.date_naive()))
                .ok_or_else(wrong_type)?;
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        AttrKind::DateTime => {
            let Some(s) = value.as_str() else {
                return Err(wrong_type());
            };
            let dt = DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                        .map(|d| d.and_utc())
                })
                .ok_or_else(wrong_type)?;
            Value::String(format_datetime(dt))
        }
        AttrKind::Boolean => {
            if !value.is_boolean() {
                return Err(wrong_type());
            }
            value
        }
        AttrKind::Choice { options } => {
            let Some(n) = value.as_i64() else {
                return Err(wrong_type());
            };
            if !options.is_empty() && !options.contains(&n) {
                let accepted: Vec<String> = options.iter().map(i64::to_string).collect();
                return Err(DvError::bad_request(
                    dverror::VALIDATION,
                    format!(
                        "A validation error occurred. The value {n} of '{}' on record of type '{}' is outside the valid range. Accepted Values: {}",
                        attr.name,
                        def.logical_name,
                        accepted.join(",")
                    ),
                ));
            }
            value
        }
        AttrKind::Integer => {
            if value.as_i64().is_none() {
                return Err(wrong_type());
            }
            value
        }
        AttrKind::Number => {
            if !value.is_number() {
                return Err(wrong_type());
            }
            value
        }
        AttrKind::Other => value,
    })
}

/// Formats an instant the way Dataverse returns date-time columns.
pub(crate) fn format_datetime(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn compact(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contact() -> TableDef {
        let text = include_str!("../../../fixtures/sim/metadata/contact.json");
        TableDef::from_json(
            serde_json::from_str(text).unwrap(),
            std::path::Path::new("contact.json"),
        )
        .unwrap()
    }

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn filter_nested_past_the_depth_limit_is_refused_instead_of_overflowing_the_stack() {
        let def = contact();
        let parens = format!("{}statecode eq 0{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = parse_filter(&parens, &def, &all).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, dverror::ODATA));
        assert!(e.message.contains("recursion limit"), "{}", e.message);
        let unbalanced = "(".repeat(100_000);
        assert!(parse_filter(&unbalanced, &def, &all).is_err());
        let nots = format!("{}statecode eq 0", "not ".repeat(100_000));
        assert!(
            parse_filter(&nots, &def, &all)
                .unwrap_err()
                .message
                .contains("recursion limit")
        );

        let at_limit = format!(
            "{}statecode eq 0{}",
            "(".repeat(MAX_FILTER_DEPTH),
            ")".repeat(MAX_FILTER_DEPTH)
        );
        assert!(parse_filter(&at_limit, &def, &all).is_ok());
    }

    #[test]
    fn the_in_query_function_matches_any_of_its_values_as_dataverse_documents_it() {
        let def = contact();
        let row = |n: &str, id: &str| {
            json!({"hlf_membernumber": n, "contactid": id, "statecode": 0})
                .as_object()
                .unwrap()
                .clone()
        };
        let id = "6f1c0b76-0d7e-4f8a-9a52-1a2b3c4d5e6f";
        let by_key = parse_filter(
            r#"Microsoft.Dynamics.CRM.In(PropertyName='hlf_membernumber',PropertyValues=["1001","O'Brian","1003"])"#,
            &def,
            &all,
        )
        .unwrap();
        assert!(eval(&by_key, &row("1003", id), &def));
        assert!(
            eval(&by_key, &row("o'brian", id), &def),
            "strings compare case-insensitively"
        );
        assert!(!eval(&by_key, &row("1002", id), &def));
        // Single-quoted values, GUIDs as strings, combined with `and`.
        let by_id = parse_filter(
            &format!("statecode eq 0 and Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['{id}'])"),
            &def,
            &all,
        )
        .unwrap();
        assert!(eval(&by_id, &row("1", id), &def));
        assert!(!eval(&by_id, &row("1", "00000000-0000-0000-0000-000000000001"), &def));
        let not_in = parse_filter(
            "Microsoft.Dynamics.CRM.NotIn(PropertyName='hlf_membernumber',PropertyValues=['1001'])",
            &def,
            &all,
        )
        .unwrap();
        assert!(!eval(&not_in, &row("1001", id), &def));
        assert!(eval(&not_in, &row("1002", id), &def));
        // What Dataverse refuses.
        for (text, says) in [
            (
                "not Microsoft.Dynamics.CRM.In(PropertyName='hlf_membernumber',PropertyValues=['1'])",
                "Not operator",
            ),
            (
                "not (Microsoft.Dynamics.CRM.In(PropertyName='hlf_membernumber',PropertyValues=['1']))",
                "Not operator",
            ),
            (
                "Microsoft.Dynamics.CRM.In(PropertyName='hlf_membernumber',PropertyValues=[])",
                "at least one",
            ),
            (
                "Microsoft.Dynamics.CRM.In(PropertyName='nosuchcolumn',PropertyValues=['1'])",
                "nosuchcolumn",
            ),
            (
                "Microsoft.Dynamics.CRM.In(PropertyName='contactid',PropertyValues=['x'])",
                "not valid",
            ),
            (
                "Microsoft.Dynamics.CRM.Between(PropertyName='statecode',PropertyValues=['0','1'])",
                "unknown function",
            ),
        ] {
            let e = parse_filter(text, &def, &all).unwrap_err();
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
    }

    #[test]
    fn long_or_chain_stays_flat_and_evaluates() {
        let def = contact();
        let chain = (0..50_000)
            .map(|i| format!("hlf_membernumber eq '{i}'"))
            .collect::<Vec<_>>()
            .join(" or ");
        let filter = parse_filter(&chain, &def, &all).unwrap();
        let Filter::Or(terms) = &filter else {
            panic!("expected a flat or: {filter:?}")
        };
        assert_eq!(terms.len(), 50_000);
        let row = |n: &str| json!({"hlf_membernumber": n}).as_object().unwrap().clone();
        assert!(eval(&filter, &row("49999"), &def));
        assert!(!eval(&filter, &row("x"), &def));

        let and = parse_filter(
            "statecode eq 0 and statuscode eq 1 and not (firstname eq null)",
            &def,
            &all,
        )
        .unwrap();
        assert!(matches!(&and, Filter::And(terms) if terms.len() == 3), "{and:?}");
    }

    #[test]
    fn huge_and_odd_numbers_are_refused_or_compared_without_panicking() {
        let def = contact();
        for text in [
            "statecode eq 1e999999",
            "statecode eq -1e999999",
            "statecode eq 99999999999999999999999999999999999999",
            "statecode eq -inf",
            "statecode eq -nan",
        ] {
            if let Ok(f) = parse_filter(text, &def, &all) {
                let row = json!({"statecode": 0}).as_object().unwrap().clone();
                let _ = eval(&f, &row, &def);
            }
        }
        assert!(parse_key("hlf_membernumber=1e999999", &def).is_err());
    }
}
