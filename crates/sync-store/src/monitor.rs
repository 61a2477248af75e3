//! Read models for the health monitor and the dashboard: summaries of the cache, the failed-record queue and the
//! outbox, the latest run of a kind, and the outbox claim that keeps two deliverers from sending one notification.

use std::collections::BTreeMap;

use crate::db::{RowExt, Store, from_ms, ms};
use crate::error::{Context, Result};
use crate::model::{CacheEntry, RunKind, RunRecord, RunStatus};
use crate::state::{cache_from, enum_text, run_from};
use chrono::{DateTime, Utc};

/// How fresh an organisation's certification cache is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheSummary {
    /// Cached mentors.
    pub entries: u64,
    /// The oldest confirmation time: the cache is as stale as this.
    pub oldest_as_of: Option<DateTime<Utc>>,
    /// The newest confirmation time.
    pub newest_as_of: Option<DateTime<Utc>>,
}

impl Store {
    /// Counts the cached mentors of an organisation and when they were confirmed.
    pub async fn cache_summary(&self, organisation_id: &str) -> Result<CacheSummary> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS entries, MIN(as_of) AS oldest, MAX(as_of) AS newest FROM certification_cache
             WHERE organisation_id = $1",
        )
        .bind(organisation_id)
        .fetch_one(&self.pool)
        .await
        .doing("summarising the certification cache")?;
        Ok(CacheSummary {
            entries: u64::try_from(row.int("entries")?).unwrap_or(0),
            oldest_as_of: row.opt_at("oldest")?,
            newest_as_of: row.opt_at("newest")?,
        })
    }

    /// Cached entries of an organisation with a mentor id after `after_mentor_id` and up to `through_mentor_id`
    /// (inclusive), in mentor-id order: the cache beside one page of [`crate::AppStore::all_mentors`].
    pub async fn cache_entries(
        &self,
        organisation_id: &str,
        after_mentor_id: Option<&str>,
        through_mentor_id: &str,
    ) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM certification_cache WHERE organisation_id = $1 AND mentor_id > $2 AND mentor_id <= $3
             ORDER BY mentor_id",
        )
        .bind(organisation_id)
        .bind(after_mentor_id.unwrap_or(""))
        .bind(through_mentor_id)
        .fetch_all(&self.pool)
        .await
        .doing("reading the certification cache")?;
        rows.iter().map(cache_from).collect()
    }

    /// Failed records of an organisation counted by state (`retrying`, `dead`, `dismissed`).
    pub async fn failure_counts(&self, organisation_id: &str) -> Result<BTreeMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM failed_record WHERE organisation_id = $1 GROUP BY state ORDER BY state",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await
        .doing("counting failed records")?;
        count_rows(&rows, "state")
    }

    /// Notifications of an organisation counted by state (`pending`, `sent`, `failed`).
    pub async fn notification_counts(&self, organisation_id: &str) -> Result<BTreeMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM notification_outbox WHERE organisation_id = $1 GROUP BY state
             ORDER BY state",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await
        .doing("counting notifications")?;
        count_rows(&rows, "state")
    }

    /// The newest finished run of a kind (e.g. the last reconcile, for the divergence metric).
    pub async fn latest_finished_run(&self, organisation_id: &str, kind: RunKind) -> Result<Option<RunRecord>> {
        let row = sqlx::query(
            "SELECT id, organisation_id, kind, started_at, finished_at, status, error, metrics FROM sync_run
             WHERE organisation_id = $1 AND kind = $2 AND finished_at IS NOT NULL
             ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(organisation_id)
        .bind(enum_text(&kind))
        .fetch_optional(&self.pool)
        .await
        .doing("reading the run log")?;
        row.as_ref().map(run_from).transpose()
    }

    /// The newest run of a kind that finished without failing as a whole (succeeded or partial): the last one whose
    /// figures are complete, e.g. the last accounting export whose reconciliation ran.
    pub async fn latest_completed_run(&self, organisation_id: &str, kind: RunKind) -> Result<Option<RunRecord>> {
        let row = sqlx::query(
            "SELECT id, organisation_id, kind, started_at, finished_at, status, error, metrics FROM sync_run
             WHERE organisation_id = $1 AND kind = $2 AND finished_at IS NOT NULL AND status IN ($3, $4)
             ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(organisation_id)
        .bind(enum_text(&kind))
        .bind(enum_text(&RunStatus::Succeeded))
        .bind(enum_text(&RunStatus::Partial))
        .fetch_optional(&self.pool)
        .await
        .doing("reading the run log")?;
        row.as_ref().map(run_from).transpose()
    }

    /// Claims a due notification for delivery until `until`. Only one caller wins a claim, so two deliverers (two
    /// worker processes, or a worker and the dashboard) never send the same notification at once; if the winner
    /// dies before recording the outcome, the notification is due again at `until`.
    pub async fn claim_notification(&self, id: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
        let claimed = sqlx::query(
            "UPDATE notification_outbox SET next_attempt_at = $1
             WHERE id = $2 AND state = 'pending' AND next_attempt_at <= $3",
        )
        .bind(ms(until))
        .bind(id)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .doing("claiming a notification")?;
        Ok(claimed.rows_affected() == 1)
    }
}

fn count_rows(rows: &[sqlx::any::AnyRow], key: &'static str) -> Result<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for row in rows {
        counts.insert(row.text(key)?, u64::try_from(row.int("n")?).unwrap_or(0));
    }
    Ok(counts)
}

/// When an organisation's sync last completed each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct LastSuccess {
    /// The start of the newest run whose pull (Dynamics to app) completed.
    pub pull: Option<DateTime<Utc>>,
    /// The start of the newest run whose push (app to Dynamics) completed; records it queued as failed do not
    /// count against it, schema drift (nothing written) does.
    pub push: Option<DateTime<Utc>>,
}

impl Store {
    /// When the sync of an organisation last completed each direction, from the whole run log. A run's pull
    /// counts when the engine noted `pull_completed` in its metrics (set even if the push failed afterwards).
    pub async fn last_success(&self, organisation_id: &str) -> Result<LastSuccess> {
        let push: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(started_at) FROM sync_run
             WHERE organisation_id = $1 AND kind = $2 AND (status = $3 OR (status = $4 AND error IS NULL))",
        )
        .bind(organisation_id)
        .bind(enum_text(&RunKind::Sync))
        .bind(enum_text(&RunStatus::Succeeded))
        .bind(enum_text(&RunStatus::Partial))
        .fetch_one(&self.pool)
        .await
        .doing("finding the last successful push")?;
        // The metrics column is JSON written by serde_json without spaces, so the note has exactly this form.
        let pull: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(started_at) FROM sync_run
             WHERE organisation_id = $1 AND kind = $2 AND metrics LIKE '%\"pull_completed\":\"true\"%'",
        )
        .bind(organisation_id)
        .bind(enum_text(&RunKind::Sync))
        .fetch_one(&self.pool)
        .await
        .doing("finding the last successful pull")?;
        Ok(LastSuccess {
            pull: pull.map(from_ms),
            push: push.map(from_ms),
        })
    }
}
