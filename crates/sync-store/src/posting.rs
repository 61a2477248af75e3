//! Postings for the accounting export: the [`PostingStore`] trait the exporter reads and marks postings through, and
//! its implementation on the reference schema. A backend with its own posting table implements the trait instead.

use std::str::FromStr;

use async_trait::async_trait;
use field_mapping::Decimal;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::db::{RowExt, Store, ms, opt_ms};
use crate::error::{Context, Error, Result};
use crate::model::Posting;

/// What the accounting export needs from the app's postings. Every call is scoped by organisation: a posting
/// belongs to the organisation of its mentor.
#[async_trait]
pub trait PostingStore: Send + Sync {
    /// Approved postings of `organisation_id` not yet marked exported, in id order after `after_id`, at most `limit`.
    async fn postings_to_export(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Posting>>;

    /// Postings of `organisation_id` marked exported, in id order after `after_id`, at most `limit` (reconciliation).
    async fn exported_postings(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Posting>>;

    /// Marks postings exported at `at`, once Dynamics has confirmed them. Postings of other organisations and
    /// postings already marked are left alone; returns how many were marked.
    async fn mark_postings_exported(
        &self,
        organisation_id: &str,
        ids: &[String],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64>;
}

const POSTING_COLUMNS: &str = "p.id AS id, p.mentor_id AS mentor_id, m.member_number AS member_number, \
     p.amount AS amount, p.account AS account, p.description AS description, p.approved_at AS approved_at, \
     p.exported_at AS exported_at";

fn posting_from(row: &AnyRow) -> Result<Posting> {
    Ok(Posting {
        id: row.text("id")?,
        mentor_id: row.text("mentor_id")?,
        member_number: row.opt_text("member_number")?,
        amount: Decimal::from_str(&row.text("amount")?).map_err(|_| Error::Corrupt {
            table: "posting",
            column: "amount",
        })?,
        account: row.text("account")?,
        description: row.opt_text("description")?,
        approved_at: row.opt_at("approved_at")?,
        exported_at: row.opt_at("exported_at")?,
    })
}

impl Store {
    /// Creates or replaces a posting (reference schema; the app's own writes). The amount is stored as its exact
    /// decimal text.
    pub async fn upsert_posting(&self, posting: &Posting) -> Result<()> {
        sqlx::query(
            "INSERT INTO posting (id, mentor_id, amount, account, description, approved_at, exported_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET mentor_id = excluded.mentor_id, amount = excluded.amount,
               account = excluded.account, description = excluded.description, approved_at = excluded.approved_at,
               exported_at = excluded.exported_at",
        )
        .bind(&posting.id)
        .bind(&posting.mentor_id)
        .bind(posting.amount.to_string())
        .bind(&posting.account)
        .bind(&posting.description)
        .bind(opt_ms(posting.approved_at))
        .bind(opt_ms(posting.exported_at))
        .execute(&self.pool)
        .await
        .doing("saving a posting")?;
        Ok(())
    }

    /// One posting of an organisation.
    pub async fn posting(&self, organisation_id: &str, id: &str) -> Result<Option<Posting>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {POSTING_COLUMNS} FROM posting p JOIN peer_mentor m ON m.id = p.mentor_id
             WHERE m.organisation_id = $1 AND p.id = $2"
        )))
        .bind(organisation_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .doing("reading a posting")?;
        row.as_ref().map(posting_from).transpose()
    }

    async fn postings_page(
        &self,
        organisation_id: &str,
        exported: bool,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Posting>> {
        let condition = if exported {
            "p.exported_at IS NOT NULL"
        } else {
            "p.approved_at IS NOT NULL AND p.exported_at IS NULL"
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {POSTING_COLUMNS} FROM posting p JOIN peer_mentor m ON m.id = p.mentor_id
             WHERE m.organisation_id = $1 AND {condition} AND p.id > $2
             ORDER BY p.id LIMIT $3"
        )))
        .bind(organisation_id)
        .bind(after_id.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading postings")?;
        rows.iter().map(posting_from).collect()
    }
}

#[async_trait]
impl PostingStore for Store {
    async fn postings_to_export(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Posting>> {
        self.postings_page(organisation_id, false, after_id, limit).await
    }

    async fn exported_postings(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Posting>> {
        self.postings_page(organisation_id, true, after_id, limit).await
    }

    async fn mark_postings_exported(
        &self,
        organisation_id: &str,
        ids: &[String],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64> {
        let mut marked = 0;
        for chunk in ids.chunks(500) {
            let list = (3..3 + chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "UPDATE posting SET exported_at = $1
                 WHERE exported_at IS NULL AND id IN ({list})
                   AND mentor_id IN (SELECT id FROM peer_mentor WHERE organisation_id = $2)"
            )))
            .bind(ms(at))
            .bind(organisation_id);
            for id in chunk {
                query = query.bind(id);
            }
            marked += query
                .execute(&self.pool)
                .await
                .doing("marking postings exported")?
                .rows_affected();
        }
        Ok(marked)
    }
}
