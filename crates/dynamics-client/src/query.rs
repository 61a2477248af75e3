//! OData queries: `$select`, `$filter` with correctly quoted literals, `$orderby`, `$top`, and paging that follows
//! `@odata.nextLink` exactly as returned, one page in memory at a time.

use std::any::{Any, TypeId};
use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use futures::StreamExt;
use futures::stream::{self, Stream};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

use crate::client::{Call, DynamicsClient};
use crate::error::{Error, Result};
use field_mapping::{LazyRow, Row};

/// A value in an OData expression, written in the form Dataverse expects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Literal<'a> {
    /// A string: single-quoted, with `'` doubled.
    Text(&'a str),
    /// A row id: bare.
    Guid(Uuid),
    /// A date: `2026-03-29`.
    Date(NaiveDate),
    /// An instant: `2026-03-29T01:00:00Z`.
    DateTime(DateTime<Utc>),
    /// A whole number.
    Int(i64),
    /// A decimal number.
    Number(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// A `$filter` expression. Built from comparisons and combined with [`Filter::and`], [`Filter::or`] and
/// [`Filter::not`]; every operand is parenthesised, so precedence never surprises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(String);

/// Sort direction for `$orderby`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// A query of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    entity_set: String,
    select: Vec<String>,
    filter: Option<Filter>,
    order_by: Vec<(String, Order)>,
    top: Option<u32>,
    count: bool,
}

/// One page of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, each with its `@odata.etag` when decoded as a [`crate::Row`].
    pub rows: Vec<T>,
    /// The total count, when the query asked for it.
    pub count: Option<u64>,
    /// The delta link, on the last page of a change-tracking read.
    pub delta_link: Option<String>,
}

impl fmt::Display for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(text) => write!(f, "'{}'", text.replace('\'', "''")),
            Literal::Guid(id) => write!(f, "{id}"),
            Literal::Date(date) => write!(f, "{}", date.format("%Y-%m-%d")),
            Literal::DateTime(at) => f.write_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Number(n) if n.is_finite() => write!(f, "{n}"),
            Literal::Number(_) => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
        }
    }
}

impl Filter {
    fn compare(column: &str, op: &str, value: Literal<'_>) -> Filter {
        Filter(format!("{column} {op} {value}"))
    }

    /// `column eq value`.
    pub fn eq(column: &str, value: Literal<'_>) -> Filter {
        Self::compare(column, "eq", value)
    }

    /// `column ne value`.
    pub fn ne(column: &str, value: Literal<'_>) -> Filter {
        Self::compare(column, "ne", value)
    }

    /// `column gt value`.
    pub fn gt(column: &str, value: Literal<'_>) -> Filter {
        Self::compare(column, "gt", value)
    }

    /// `column ge value`.
    pub fn ge(column: &str, value: Literal<'_>) -> Filter {
        Self::compare(column, "ge", value)
    }

    /// `column lt value`.
    pub fn lt(column: &str, value: Literal<'_>) -> Filter {
        Self::compare(column, "lt", value)
    }

    /// `column le value`.
    pub fn le(column: &str, value: Literal<'_>) -> Filter {
        Self::compare(column, "le", value)
    }

    /// `contains(column,'text')`.
    pub fn contains(column: &str, text: &str) -> Filter {
        Filter(format!("contains({column},{})", Literal::Text(text)))
    }

    /// `startswith(column,'text')`.
    pub fn starts_with(column: &str, text: &str) -> Filter {
        Filter(format!("startswith({column},{})", Literal::Text(text)))
    }

    /// `column eq v1 or column eq v2 ...`, for looking rows up by a set of keys. `None` for an empty set. The
    /// disjunction is flat (no nesting per value), so a long list stays within Dataverse's nesting limit.
    pub fn any_of<'a>(column: &str, values: impl IntoIterator<Item = Literal<'a>>) -> Option<Filter> {
        let terms: Vec<String> = values.into_iter().map(|v| Filter::eq(column, v).0).collect();
        (!terms.is_empty()).then(|| Filter(terms.join(" or ")))
    }

    /// `Microsoft.Dynamics.CRM.In(PropertyName='column',PropertyValues=["v1","v2"])`: the column holds one of the
    /// values (one condition however many values, where an `or` chain counts one per value against Dataverse's
    /// limit of 500). Values are written as JSON strings, as Dataverse takes them whatever the column's type; a GUID
    /// or number is given as its text. `None` for no values (Dataverse refuses an empty list). Dataverse refuses
    /// `not` before a query function: there is no negated form here.
    pub fn is_in<S: AsRef<str>>(column: &str, values: &[S]) -> Option<Filter> {
        if values.is_empty() {
            return None;
        }
        let list: Vec<String> = values
            .iter()
            .map(|v| serde_json::Value::String(v.as_ref().to_owned()).to_string())
            .collect();
        Some(Filter(format!(
            "Microsoft.Dynamics.CRM.In(PropertyName={},PropertyValues=[{}])",
            Literal::Text(column),
            list.join(",")
        )))
    }

    /// A configured expression, used as given (inside parentheses when combined).
    pub fn raw(expression: impl Into<String>) -> Filter {
        Filter(expression.into())
    }

    /// Both must hold.
    pub fn and(self, other: Filter) -> Filter {
        Filter(format!("({}) and ({})", self.0, other.0))
    }

    /// Either holds.
    pub fn or(self, other: Filter) -> Filter {
        Filter(format!("({}) or ({})", self.0, other.0))
    }

    /// Negation.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Filter {
        Filter(format!("not ({})", self.0))
    }

    /// The expression text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Query {
    /// A query of every row of `entity_set`.
    pub fn new(entity_set: &str) -> Self {
        Query {
            entity_set: entity_set.to_owned(),
            select: Vec::new(),
            filter: None,
            order_by: Vec::new(),
            top: None,
            count: false,
        }
    }

    /// The columns to return. Always select: Dataverse returns every column otherwise.
    pub fn select<S: AsRef<str>>(mut self, columns: &[S]) -> Self {
        self.select = columns.iter().map(|c| c.as_ref().to_owned()).collect();
        self
    }

    /// Adds a filter; several are combined with `and`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(match self.filter.take() {
            Some(existing) => existing.and(filter),
            None => filter,
        });
        self
    }

    /// Adds a sort key.
    pub fn order_by(mut self, column: &str, order: Order) -> Self {
        self.order_by.push((column.to_owned(), order));
        self
    }

    /// At most `n` rows in all. Dataverse ignores `$top` when a page size is requested, so `top` is sent without one.
    pub fn top(mut self, n: u32) -> Self {
        self.top = Some(n);
        self
    }

    /// Ask for the total count (`$count=true`).
    pub fn with_count(mut self) -> Self {
        self.count = true;
        self
    }

    /// The entity set queried.
    pub fn entity_set(&self) -> &str {
        &self.entity_set
    }

    /// Whether the query may be used with change tracking (no filter, order or top).
    pub fn allows_change_tracking(&self) -> bool {
        self.filter.is_none() && self.order_by.is_empty() && self.top.is_none()
    }

    /// The relative URL: `contacts?$select=...&$filter=...`.
    pub fn to_relative_url(&self) -> String {
        let mut parts = Vec::new();
        if !self.select.is_empty() {
            parts.push(format!("$select={}", encode(&self.select.join(","))));
        }
        if let Some(filter) = &self.filter {
            parts.push(format!("$filter={}", encode(&filter.0)));
        }
        if !self.order_by.is_empty() {
            let keys: Vec<String> = self
                .order_by
                .iter()
                .map(|(c, o)| format!("{c} {}", if *o == Order::Asc { "asc" } else { "desc" }))
                .collect();
            parts.push(format!("$orderby={}", encode(&keys.join(","))));
        }
        if let Some(top) = self.top {
            parts.push(format!("$top={top}"));
        }
        if self.count {
            parts.push("$count=true".to_owned());
        }
        if parts.is_empty() {
            self.entity_set.clone()
        } else {
            format!("{}?{}", self.entity_set, parts.join("&"))
        }
    }
}

/// Percent-encodes a value for a URL path segment such as `contacts(hlf_membernumber='1001')`: OData's own
/// punctuation (quotes, parentheses, `=`, `,`) stays readable; everything else outside the unreserved set is escaped.
pub(crate) fn encode_path(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~'()=,".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value (spaces as `%20`, which every OData server reads as a space).
pub(crate) fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[derive(Deserialize)]
struct PageBody<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
    #[serde(rename = "@odata.count")]
    count: Option<u64>,
}

impl DynamicsClient {
    /// Reads a query page by page. Each page is requested only when the previous one has been consumed, so memory
    /// holds one page at a time; `@odata.nextLink` is followed exactly as returned. Rows read as [`Row`] keep each
    /// value's JSON text and decode it when it is first read ([`LazyRow`]); other types are decoded at once.
    pub fn pages<T>(&self, query: &Query) -> impl Stream<Item = Result<Page<T>>> + Send + use<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let first = self.url(&query.to_relative_url());
        let with_page_size = query.top.is_none();
        self.page_stream(first, with_page_size, false)
    }

    /// Reads every row of a query as one list. Use only for small results; prefer [`DynamicsClient::pages`].
    pub async fn all_rows<T>(&self, query: &Query) -> Result<Vec<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        use futures::TryStreamExt;
        let pages: Vec<Page<T>> = self.pages(query).try_collect().await?;
        Ok(pages.into_iter().flat_map(|p| p.rows).collect())
    }

    /// The rows of `query` whose `column` holds one of `values`, read in bulk: one GET per
    /// [`IN_VALUES_PER_REQUEST`] values (with [`Filter::is_in`]), all of them sent together in one `$batch` (one
    /// request against the service-protection limit) when there is more than one. Rows come in no particular order;
    /// a value no row holds is simply absent. Any part's failure fails the call.
    pub async fn rows_in(&self, query: &Query, column: &str, values: &[String]) -> Result<Vec<Row>> {
        let mut calls = Vec::new();
        for chunk in values.chunks(IN_VALUES_PER_REQUEST) {
            let Some(filter) = Filter::is_in(column, chunk) else {
                continue;
            };
            let url = self.url(&query.clone().filter(filter).to_relative_url())?;
            calls.push(
                self.get(url)
                    .header("prefer", &format!("odata.maxpagesize={}", self.inner.page_size)),
            );
        }
        let mut rows = Vec::new();
        match calls.len() {
            0 => {}
            1 => {
                let Some(call) = calls.pop() else { return Ok(rows) };
                let mut pages = Box::pin(self.page_stream::<Row>(Ok(call.url), true, false));
                while let Some(page) = pages.next().await {
                    rows.extend(page?.rows);
                }
            }
            _ => {
                for batch in calls.chunks(crate::batch::MAX_BATCH_OPERATIONS) {
                    let parts = self.batch(batch, crate::batch::BatchMode::ContinueOnError).await?;
                    for (call, part) in batch.iter().zip(parts) {
                        let body = match &part {
                            crate::batch::PartResult::Answered { status, body, .. } if *status < 400 => body,
                            failed => {
                                return Err(failed.error().unwrap_or(Error::Service {
                                    status: 0,
                                    code: String::new(),
                                    message: "unknown batch part result".to_owned(),
                                }));
                            }
                        };
                        let started = std::time::Instant::now();
                        let decoded = decode_page::<Row>(body, call.url.path());
                        self.note_decoding(started.elapsed());
                        let (page, next) = decoded?;
                        rows.extend(page.rows);
                        // A part larger than a page (it cannot be, with one row per value) is read on.
                        if let Some(next) = next {
                            let next = self.same_origin(&next)?;
                            let mut pages = Box::pin(self.page_stream::<Row>(Ok(next), true, false));
                            while let Some(page) = pages.next().await {
                                rows.extend(page?.rows);
                            }
                        }
                    }
                }
            }
        }
        Ok(rows)
    }

    pub(crate) fn page_stream<T>(
        &self,
        first: Result<Url>,
        with_page_size: bool,
        track_changes: bool,
    ) -> impl Stream<Item = Result<Page<T>>> + Send + use<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.clone();
        stream::try_unfold(Some(first), move |next| {
            let client = client.clone();
            async move {
                let Some(url) = next else { return Ok(None) };
                let (page, next) = client.fetch_page::<T>(url?, with_page_size, track_changes).await?;
                Ok(Some((page, next.map(Ok))))
            }
        })
    }

    pub(crate) async fn fetch_page<T: DeserializeOwned + 'static>(
        &self,
        url: Url,
        with_page_size: bool,
        track_changes: bool,
    ) -> Result<(Page<T>, Option<Url>)> {
        let mut prefer = Vec::new();
        if track_changes {
            prefer.push("odata.track-changes".to_owned());
        }
        if with_page_size {
            prefer.push(format!("odata.maxpagesize={}", self.inner.page_size));
        }
        let mut call: Call = self.get(url);
        if !prefer.is_empty() {
            call = call.header("prefer", &prefer.join(","));
        }
        let answer = self.send(&call).await?;
        let started = std::time::Instant::now();
        let decoded = decode_page(&answer.body, call.url.path());
        self.note_decoding(started.elapsed());
        let (page, next_link) = decoded?;
        let next = match next_link {
            Some(link) => Some(self.same_origin(&link)?),
            None => None,
        };
        Ok((page, next))
    }

    /// Parses a link Dynamics returned and checks it points at the same instance, so the bearer token is never sent
    /// elsewhere.
    pub(crate) fn same_origin(&self, link: &str) -> Result<Url> {
        same_origin_as(&self.inner.api_base, link)
    }
}

/// Values per GET of [`DynamicsClient::rows_in`]: 250 GUIDs make a URL of about 12 KB, well under Dataverse's
/// 32 KB for a GET (64 KB inside a `$batch`).
pub const IN_VALUES_PER_REQUEST: usize = 250;

/// Decodes a page body into its rows, count and delta link, and the `@odata.nextLink` as sent (not yet checked
/// against the instance). `path` names the table in the error.
///
/// Rows asked for as [`Row`] are read as [`LazyRow`]s: every row is checked to be a JSON object as any other type
/// would be, and each value is decoded only when the caller reads it (most of a full read's values never are).
///
/// The body is checked to be UTF-8 once, as a whole, and then read as text: read as bytes, `serde_json` would check
/// each string and each kept value on its own, a fifth of the page's decoding time in a full read.
pub(crate) fn decode_page<T: DeserializeOwned + 'static>(body: &[u8], path: &str) -> Result<(Page<T>, Option<String>)> {
    let what = || format!("a page of {path}");
    let body = std::str::from_utf8(body).map_err(|e| Error::decode(what(), e))?;
    let refused = |e: serde_json::Error| Error::decode(what(), e);
    let (rows, next_link, count, delta_link) = if TypeId::of::<T>() == TypeId::of::<Row>() {
        let body: PageBody<LazyRow> = serde_json::from_str(body).map_err(refused)?;
        let rows: Vec<Row> = body.value.into_iter().map(Row::from).collect();
        // `T` is `Row`, so the list is a `Vec<T>`.
        let rows = *(Box::new(rows) as Box<dyn Any>)
            .downcast::<Vec<T>>()
            .map_err(|_| Error::Decode {
                what: what(),
                source: "rows of an unexpected type".into(),
            })?;
        (rows, body.next_link, body.count, body.delta_link)
    } else {
        let body: PageBody<T> = serde_json::from_str(body).map_err(refused)?;
        (body.value, body.next_link, body.count, body.delta_link)
    };
    Ok((
        Page {
            rows,
            count,
            delta_link,
        },
        next_link,
    ))
}

/// Parses `link` and accepts it only when it has the same origin as `base`.
pub(crate) fn same_origin_as(base: &Url, link: &str) -> Result<Url> {
    let url = Url::parse(link).map_err(|e| Error::decode("a next or delta link", e))?;
    if url.origin() != base.origin() {
        return Err(Error::Decode {
            what: "a next or delta link".to_owned(),
            source: format!(
                "the link points at another host ({})",
                url.origin().ascii_serialization()
            )
            .into(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(filter: Filter, expected: &str) {
        assert_eq!(filter.as_str(), expected);
    }

    #[test]
    fn literals_are_quoted_as_odata_requires() {
        check(
            Filter::eq("lastname", Literal::Text("O'Brien")),
            "lastname eq 'O''Brien'",
        );
        check(Filter::eq("lastname", Literal::Text("''")), "lastname eq ''''''");
        check(
            Filter::eq(
                "contactid",
                Literal::Guid(Uuid::parse_str("7c1c3f2e-5a8b-4e4e-9d0e-4b8f2a1c9e11").unwrap()),
            ),
            "contactid eq 7c1c3f2e-5a8b-4e4e-9d0e-4b8f2a1c9e11",
        );
        check(
            Filter::ge(
                "modifiedon",
                Literal::DateTime("2026-03-29T01:00:00.250Z".parse().unwrap()),
            ),
            "modifiedon ge 2026-03-29T01:00:00Z",
        );
        check(
            Filter::lt(
                "hlf_certificationexpiry",
                Literal::Date(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
            ),
            "hlf_certificationexpiry lt 2026-01-02",
        );
        check(Filter::ne("statecode", Literal::Int(1)), "statecode ne 1");
        check(
            Filter::eq("hlf_showonpublicsite", Literal::Bool(true)),
            "hlf_showonpublicsite eq true",
        );
        check(Filter::eq("emailaddress1", Literal::Null), "emailaddress1 eq null");
        check(Filter::eq("x", Literal::Number(1.5)), "x eq 1.5");
        check(Filter::contains("lastname", "a'b"), "contains(lastname,'a''b')");
        check(Filter::starts_with("firstname", "Å"), "startswith(firstname,'Å')");
    }

    #[test]
    fn the_in_function_lists_its_values_as_json_strings() {
        check(
            Filter::is_in("hlf_membernumber", &["1001", "O'Brian", "a\"b"]).unwrap(),
            r#"Microsoft.Dynamics.CRM.In(PropertyName='hlf_membernumber',PropertyValues=["1001","O'Brian","a\"b"])"#,
        );
        assert_eq!(Filter::is_in::<&str>("k", &[]), None);
    }

    #[test]
    fn combinators_parenthesise_every_operand() {
        let f = Filter::eq("a", Literal::Int(1))
            .or(Filter::eq("b", Literal::Int(2)))
            .and(Filter::raw("statecode eq 0").not());
        check(f, "((a eq 1) or (b eq 2)) and (not (statecode eq 0))");
        check(
            Filter::any_of("k", [Literal::Text("1"), Literal::Text("2"), Literal::Text("3")]).unwrap(),
            "k eq '1' or k eq '2' or k eq '3'",
        );
        assert_eq!(Filter::any_of("k", []), None);
    }

    #[test]
    fn query_urls_are_percent_encoded() {
        let query = Query::new("contacts")
            .select(&["contactid", "lastname"])
            .filter(Filter::eq("lastname", Literal::Text("Ødegård & Co + 1")))
            .order_by("modifiedon", Order::Asc)
            .with_count();
        assert_eq!(
            query.to_relative_url(),
            "contacts?$select=contactid%2Clastname&$filter=lastname%20eq%20%27%C3%98deg%C3%A5rd%20%26%20Co%20%2B%201%27&$orderby=modifiedon%20asc&$count=true"
        );
        assert!(!query.allows_change_tracking());
        assert!(Query::new("contacts").select(&["contactid"]).allows_change_tracking());
        assert_eq!(Query::new("contacts").top(5).to_relative_url(), "contacts?$top=5");
    }
}
