//! Change tracking: an initial tracked read that ends with a delta link, then reads of what changed since, with
//! deletions surfaced as such and an expired token surfaced as "full resync needed".

use futures::stream::{self, BoxStream, StreamExt};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use crate::client::DynamicsClient;
use crate::error::{Error, Result};
use crate::query::{Page, Query};
use field_mapping::Row;

/// One change to a tracked table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A row created or updated since the last token (or any row, in the initial read).
    Upsert(Row),
    /// A row deleted since the last token.
    Deleted(Uuid),
}

/// A page of changes. The last page carries the delta link to store for the next read.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    /// The changes, in Dataverse's order.
    pub changes: Vec<Change>,
    /// The link to read the next changes with; present on the last page only.
    pub delta_link: Option<String>,
}

/// The outcome of reading changes since a stored delta link.
pub enum ChangeRead {
    /// The changes, page by page.
    Changes(BoxStream<'static, Result<ChangePage>>),
    /// The token has expired (Dataverse keeps them 7 days by default): read everything again with
    /// [`DynamicsClient::track_changes`].
    FullResyncNeeded,
}

impl std::fmt::Debug for ChangeRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeRead::Changes(_) => f.write_str("ChangeRead::Changes(..)"),
            ChangeRead::FullResyncNeeded => f.write_str("ChangeRead::FullResyncNeeded"),
        }
    }
}

impl DynamicsClient {
    /// Starts change tracking: reads every row of the query (which must have no filter, order or top) page by page;
    /// the last page carries the first delta link.
    pub fn track_changes(&self, query: &Query) -> Result<BoxStream<'static, Result<ChangePage>>> {
        if !query.allows_change_tracking() {
            return Err(Error::Decode {
                what: "a change-tracking query".to_owned(),
                source: "change tracking allows no $filter, $orderby or $top; read by modifiedon instead".into(),
            });
        }
        let first = self.url(&query.to_relative_url());
        Ok(self
            .page_stream::<Row>(first, true, true)
            .map(|page| page.and_then(to_change_page))
            .boxed())
    }

    /// Reads what changed since `delta_link`. The first page is read before returning, so an expired token is
    /// reported as [`ChangeRead::FullResyncNeeded`] rather than as an error.
    pub async fn changes_since(&self, delta_link: &str) -> Result<ChangeRead> {
        let url = self.same_origin(delta_link)?;
        let (first, next) = match self.fetch_page::<Row>(url, true, true).await {
            Ok(page) => page,
            Err(Error::DeltaTokenExpired) => return Ok(ChangeRead::FullResyncNeeded),
            Err(other) => return Err(other),
        };
        let first = to_change_page(first)?;
        let rest = match next {
            Some(url) => self.page_stream::<Row>(Ok::<Url, Error>(url), true, true).left_stream(),
            None => stream::empty().right_stream(),
        };
        Ok(ChangeRead::Changes(
            stream::once(async { Ok(first) })
                .chain(rest.map(|page| page.and_then(to_change_page)))
                .boxed(),
        ))
    }
}

/// Sorts a page's entries into upserts and deletions. The rows were read as rows (a page whose entries are not all
/// JSON objects is refused as it is read), their values decoded only when read: an upsert's by whoever reads it, a
/// deletion's id here.
pub(crate) fn to_change_page(page: Page<Row>) -> Result<ChangePage> {
    let changes = page
        .rows
        .into_iter()
        .map(|row| {
            if !is_deleted(&row) {
                return Ok(Change::Upsert(row));
            }
            let id = row
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| Error::Decode {
                    what: "a deleted-row entry".to_owned(),
                    source: "its id is missing or not a GUID".into(),
                })?;
            Ok(Change::Deleted(id))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ChangePage {
        changes,
        delta_link: page.delta_link,
    })
}

fn is_deleted(row: &Row) -> bool {
    row.get("@odata.context")
        .and_then(Value::as_str)
        .is_some_and(|c| c.ends_with("$deletedEntity"))
        || row.get("reason").and_then(Value::as_str) == Some("deleted")
}
