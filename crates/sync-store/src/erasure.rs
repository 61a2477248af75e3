//! Erasure: one member's personal data removed from the sync state, for a GDPR erasure request
//! (`sync-worker forget`). The app's own tables are the backend's to erase; this is the integration's part.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{RowExt, Store};
use crate::error::{Context, Error, Result};
use crate::model::Release;

/// What [`Store::forget_member`] removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForgetReport {
    /// The app ids the member had in the sync state.
    pub mentors: Vec<String>,
    /// Links removed (each with its shadow: the last agreed names, e-mail address, phone number, member number).
    pub links: u64,
    /// Contacts queued to be hidden from the public site by the next run (a linked contact must not stay shown once
    /// its link is gone); the queue keeps only the contact's and the mentor's ids.
    pub contacts_to_hide: u64,
    /// Failed records removed (their errors and payloads).
    pub failures: u64,
    /// Conflicts removed (both sides' values).
    pub conflicts: u64,
    /// Notifications about the member removed (recipient, subject, body).
    pub notifications: u64,
    /// Certification-cache entries removed (member number and status).
    pub cache_entries: u64,
}

impl Store {
    /// Removes one member's personal data from the organisation's sync state: the links of the mentors with this
    /// member number (and of `mentor_ids`, app ids an admin names, e.g. of a mentor never linked), with their
    /// shadows; their failed records, conflicts, coordinator notifications and certification-cache entries. A
    /// linked contact is queued for the next run to hide it from the public site. Run it after the member was
    /// removed from the app, or the next sync links them again. Running it twice removes nothing more.
    pub async fn forget_member(
        &self,
        organisation_id: &str,
        member_number: &str,
        mentor_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<ForgetReport> {
        let mut report = ForgetReport::default();
        let links = sqlx::query(
            "SELECT app_id, dynamics_id, etag FROM sync_link
             WHERE organisation_id = $1 AND record_kind = 'mentor' AND alternate_key = $2",
        )
        .bind(organisation_id)
        .bind(member_number)
        .fetch_all(&self.pool)
        .await
        .doing("finding the member's links")?;
        let cached: Vec<String> = sqlx::query_scalar(
            "SELECT mentor_id FROM certification_cache WHERE organisation_id = $1 AND member_number = $2",
        )
        .bind(organisation_id)
        .bind(member_number)
        .fetch_all(&self.pool)
        .await
        .doing("finding the member's cache entries")?;
        let mut ids: BTreeSet<String> = cached.into_iter().chain(mentor_ids.iter().cloned()).collect();
        for row in &links {
            let app_id = row.text("app_id")?;
            let dynamics_id = Uuid::parse_str(&row.text("dynamics_id")?).map_err(|_| Error::Corrupt {
                table: "sync_link",
                column: "dynamics_id",
            })?;
            self.add_release(&Release {
                organisation_id: organisation_id.to_owned(),
                record_kind: "mentor".to_owned(),
                dynamics_id,
                app_id: app_id.clone(),
                etag: row.opt_text("etag")?,
                reason: "erasure request: the member's data was removed from the sync".to_owned(),
                since: now,
                attempts: 0,
                last_error: None,
            })
            .await?;
            report.contacts_to_hide += 1;
            ids.insert(app_id);
        }
        for app_id in &ids {
            for (statement, count) in [
                (
                    "DELETE FROM sync_link WHERE organisation_id = $1 AND record_kind = 'mentor' AND app_id = $2",
                    &mut report.links,
                ),
                (
                    "DELETE FROM failed_record WHERE organisation_id = $1 AND record_kind = 'mentor' AND record_key = $2",
                    &mut report.failures,
                ),
                (
                    "DELETE FROM sync_conflict WHERE organisation_id = $1 AND record_kind = 'mentor' AND app_id = $2",
                    &mut report.conflicts,
                ),
                (
                    "DELETE FROM certification_cache WHERE organisation_id = $1 AND mentor_id = $2",
                    &mut report.cache_entries,
                ),
            ] {
                *count += sqlx::query(statement)
                    .bind(organisation_id)
                    .bind(app_id)
                    .execute(&self.pool)
                    .await
                    .doing("forgetting a member")?
                    .rows_affected();
            }
            // Coordinator notifications about a mentor carry its app id in their key, `…:<org>:<app id>:<time>`.
            report.notifications += sqlx::query(
                "DELETE FROM notification_outbox WHERE organisation_id = $1 AND dedupe_key LIKE $2 ESCAPE '\\'",
            )
            .bind(organisation_id)
            .bind(format!(
                "%:{}:{}:%",
                like_escaped(organisation_id),
                like_escaped(app_id)
            ))
            .execute(&self.pool)
            .await
            .doing("forgetting a member's notifications")?
            .rows_affected();
        }
        report.cache_entries +=
            sqlx::query("DELETE FROM certification_cache WHERE organisation_id = $1 AND member_number = $2")
                .bind(organisation_id)
                .bind(member_number)
                .execute(&self.pool)
                .await
                .doing("forgetting a member's cache entries")?
                .rows_affected();
        report.mentors = ids.into_iter().collect();
        Ok(report)
    }
}

/// `text` for a LIKE pattern with `ESCAPE '\'`: its `%`, `_` and `\` match only themselves (ids may contain `_`).
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
