//! Writes to one table through a guard that refuses every column the mapping does not declare writable: upsert by
//! alternate key (create-or-update, update-only, create-only), update guarded by an etag, create.

use std::collections::BTreeSet;
use std::sync::Arc;

use field_mapping::{FORBIDDEN_KEY_CHARS, RecordMapping, Row};
use http::Method;
use serde_json::Value;
use uuid::Uuid;

use crate::client::{Answer, Call, DynamicsClient};
use crate::error::{Error, Result};
use crate::query::{Literal, encode, encode_path};

/// Writes to one table, limited to the columns the mapping declares app-owned or shared.
#[derive(Debug, Clone)]
pub struct TableWriter {
    pub(crate) client: DynamicsClient,
    pub(crate) entity_set: String,
    pub(crate) primary_id: String,
    pub(crate) writable: Arc<BTreeSet<String>>,
}

/// A row addressed by an alternate key: `contacts(hlf_membernumber='1001')`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternateKey {
    column: String,
    value: String,
}

/// What an upsert may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertMode {
    /// Create the row if it is missing, otherwise update it.
    CreateOrUpdate,
    /// Update an existing row only (`If-Match: *`); a missing row is [`Error::NotFound`].
    UpdateOnly,
    /// Create a new row only (`If-None-Match: *`); an existing row is [`Error::Duplicate`] (Dataverse answers 412
    /// with the duplicate-key code).
    CreateOnly,
}

/// Whether a write created or updated the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new row.
    Created,
    /// An existing row.
    Updated,
}

/// The result of a successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Created or updated.
    pub outcome: WriteOutcome,
    /// The row's id.
    pub id: Option<Uuid>,
    /// The row's new etag.
    pub etag: Option<String>,
}

impl AlternateKey {
    /// A key value, checked against the characters Dataverse forbids in keys.
    pub fn new(column: &str, value: &str) -> Result<Self> {
        if value.trim().is_empty() || value.contains(FORBIDDEN_KEY_CHARS) {
            return Err(Error::InvalidKey {
                column: column.to_owned(),
            });
        }
        Ok(AlternateKey {
            column: column.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The key column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The key value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The path segment inside the parentheses: `hlf_membernumber='1001'`, percent-encoded.
    pub(crate) fn segment(&self) -> String {
        format!(
            "{}={}",
            self.column,
            encode_path(&Literal::Text(&self.value).to_string())
        )
    }
}

impl DynamicsClient {
    /// A writer for the table of `mapping`, allowed to write only the mapping's writable columns.
    pub fn writer(&self, mapping: &RecordMapping) -> TableWriter {
        TableWriter {
            client: self.clone(),
            entity_set: mapping.entity_set().to_owned(),
            primary_id: mapping.primary_id().to_owned(),
            writable: Arc::new(mapping.writable_columns()),
        }
    }

    /// Reads one row by alternate key, `None` when there is none.
    pub async fn read_by_key<S: AsRef<str>>(
        &self,
        entity_set: &str,
        key: &AlternateKey,
        select: &[S],
    ) -> Result<Option<Row>> {
        let columns: Vec<&str> = select.iter().map(AsRef::as_ref).collect();
        let url = self.url(&format!(
            "{entity_set}({})?$select={}",
            key.segment(),
            encode(&columns.join(","))
        ))?;
        match self.send(&self.get(url)).await {
            Ok(answer) => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| Error::decode(format!("a {entity_set} row"), e)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

impl TableWriter {
    /// The entity set written.
    pub fn entity_set(&self) -> &str {
        &self.entity_set
    }

    /// Refuses a body naming any column outside the writable set. Every write passes through here.
    pub fn guard(&self, body: &Row) -> Result<()> {
        match body.keys().find(|column| !self.writable.contains(*column)) {
            Some(column) => Err(Error::ColumnNotWritable {
                entity_set: self.entity_set.clone(),
                column: column.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Upserts the row addressed by `key`.
    pub async fn upsert(&self, key: &AlternateKey, body: &Row, mode: UpsertMode) -> Result<Written> {
        let call = self.upsert_call(key, body, mode)?;
        let answer = self.client.send(&call).await?;
        Ok(self.written(&answer))
    }

    /// Updates the row `id` only if its etag is still `etag`; a changed row is [`Error::Concurrency`].
    pub async fn update_if_unchanged(&self, id: Uuid, body: &Row, etag: &str) -> Result<Written> {
        let call = self.update_call(id, body, etag)?;
        let answer = self.client.send(&call).await?;
        Ok(self.written(&answer))
    }

    pub(crate) fn update_call(&self, id: Uuid, body: &Row, etag: &str) -> Result<Call> {
        self.guard(body)?;
        let url = self
            .client
            .url(&format!("{}({id})?$select={}", self.entity_set, self.primary_id))?;
        Ok(Call::new(Method::PATCH, url)
            .header("if-match", etag)
            .header("prefer", "return=representation")
            .json(body))
    }

    /// Reads one row by id with the given columns, `None` when it no longer exists.
    pub async fn read(&self, id: Uuid, select: &[String]) -> Result<Option<Row>> {
        let url = self.client.url(&format!(
            "{}({id})?$select={}",
            self.entity_set,
            encode(&select.join(","))
        ))?;
        match self.client.send(&self.client.get(url)).await {
            Ok(answer) => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| Error::decode(format!("a {} row", self.entity_set), e)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Creates a row.
    pub async fn create(&self, body: &Row) -> Result<Written> {
        self.guard(body)?;
        let url = self
            .client
            .url(&format!("{}?$select={}", self.entity_set, self.primary_id))?;
        let call = Call::new(Method::POST, url)
            .header("prefer", "return=representation")
            .json(body);
        let answer = self.client.send(&call).await?;
        Ok(self.written(&answer))
    }

    pub(crate) fn upsert_call(&self, key: &AlternateKey, body: &Row, mode: UpsertMode) -> Result<Call> {
        self.guard(body)?;
        let url = self.client.url(&format!(
            "{}({})?$select={}",
            self.entity_set,
            key.segment(),
            self.primary_id
        ))?;
        let mut call = Call::new(Method::PATCH, url).header("prefer", "return=representation");
        call = match mode {
            UpsertMode::CreateOrUpdate => call,
            UpsertMode::UpdateOnly => call.header("if-match", "*"),
            UpsertMode::CreateOnly => call.header("if-none-match", "*"),
        };
        Ok(call.json(body))
    }

    /// Reads what a successful write answered: 201 is a creation, 200 or 204 an update.
    pub(crate) fn written(&self, answer: &Answer) -> Written {
        written_from(answer.status.as_u16(), &answer.headers, &answer.body, &self.primary_id)
    }
}

pub(crate) fn written_from(status: u16, headers: &http::HeaderMap, body: &[u8], primary_id: &str) -> Written {
    let representation: Option<Row> = serde_json::from_slice(body).ok();
    let id = representation
        .as_ref()
        .and_then(|row| row.get(primary_id))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .or_else(|| entity_id(headers));
    let etag = representation
        .as_ref()
        .and_then(|row| row.get("@odata.etag"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    Written {
        outcome: if status == 201 {
            WriteOutcome::Created
        } else {
            WriteOutcome::Updated
        },
        id,
        etag,
    }
}

/// The id in an `OData-EntityId: https://.../contacts(<guid>)` header.
fn entity_id(headers: &http::HeaderMap) -> Option<Uuid> {
    let value = headers.get("odata-entityid")?.to_str().ok()?;
    let inner = value.rsplit_once('(')?.1.strip_suffix(')')?;
    Uuid::parse_str(inner).ok()
}
