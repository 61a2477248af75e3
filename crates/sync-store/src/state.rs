//! The sync state: watermarks, links and shadows, the run log, failed records, conflicts, alerts, the notification
//! outbox, the certification cache and retention.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use field_mapping::{AppRecord, AppValue};
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::db::{RowExt, Store, date_text, ms, opt_ms};
use crate::error::{Context, Error, Result};
use crate::model::*;

fn direction_text(direction: Direction) -> &'static str {
    match direction {
        Direction::Pull => "pull",
        Direction::Push => "push",
    }
}

fn parse_direction(text: &str) -> Result<Direction> {
    match text {
        "pull" => Ok(Direction::Pull),
        "push" => Ok(Direction::Push),
        _ => Err(Error::Corrupt {
            table: "failed_record",
            column: "direction",
        }),
    }
}

/// Rows per multi-row statement: 200 rows of up to 14 columns stay far below SQLite's and PostgreSQL's limits on
/// parameters per statement (32,766 and 65,535).
const ROWS_PER_STATEMENT: usize = 200;

/// `($1, ..., $n), ($n+1, ...), ...` for `rows` rows of `columns` values.
fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns).map(|c| format!("${}", r * columns + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The last item per key, in the order of their last occurrence.
fn last_per_key<'a, T, K: Ord>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut last = std::collections::BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &items[i]).collect()
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data types to JSON cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, table: &'static str, column: &'static str) -> Result<T> {
    serde_json::from_str(text).map_err(|_| Error::Corrupt { table, column })
}

const LINK_COLUMNS: &str = "organisation_id, record_kind, app_id, dynamics_id, alternate_key, etag, shadow, visible, \
     expires_on, dynamics_modified_on, synced_at, pending, seen, app_changed_at";

fn link_from(row: &AnyRow) -> Result<Link> {
    Ok(Link {
        organisation_id: row.text("organisation_id")?,
        record_kind: row.text("record_kind")?,
        app_id: row.text("app_id")?,
        dynamics_id: Uuid::from_str(&row.text("dynamics_id")?).map_err(|_| Error::Corrupt {
            table: "sync_link",
            column: "dynamics_id",
        })?,
        alternate_key: row.text("alternate_key")?,
        etag: row.opt_text("etag")?,
        shadow: from_json::<AppRecord>(&row.text("shadow")?, "sync_link", "shadow")?,
        visible: row.flag("visible")?,
        expires_on: row.opt_date("sync_link", "expires_on")?,
        dynamics_modified_on: row.opt_at("dynamics_modified_on")?,
        synced_at: row.at("synced_at")?,
        // Both are hints the engine can do without: a malformed value reads as none (the engine then reads the row
        // from Dynamics or times the change anew) rather than making the link unreadable.
        pending: row.opt_text("pending")?.and_then(|t| tolerant(&t, "pending")),
        seen: row
            .opt_text("seen")?
            .and_then(|t| tolerant(&t, "seen"))
            .unwrap_or_default(),
        app_changed_at: row.opt_at("app_changed_at")?,
    })
}

fn tolerant<T: serde::de::DeserializeOwned>(text: &str, column: &str) -> Option<T> {
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(_) => {
            tracing::warn!(column, "a malformed value in sync_link was ignored");
            None
        }
    }
}

/// Reads the links of a multi-row query; a row that cannot be read is skipped with a warning (the engine then treats
/// its record as unlinked and links it afresh, which overwrites the row), so one malformed row never blocks a page.
fn links_from(rows: &[AnyRow]) -> Vec<Link> {
    rows.iter()
        .filter_map(|row| match link_from(row) {
            Ok(link) => Some(link),
            Err(e) => {
                let app_id = row.text("app_id").unwrap_or_default();
                tracing::warn!(app = %app_id, error = %e, "a link that cannot be read was skipped");
                None
            }
        })
        .collect()
}

fn release_from(row: &AnyRow) -> Result<Release> {
    Ok(Release {
        organisation_id: row.text("organisation_id")?,
        record_kind: row.text("record_kind")?,
        dynamics_id: Uuid::from_str(&row.text("dynamics_id")?).map_err(|_| Error::Corrupt {
            table: "sync_release",
            column: "dynamics_id",
        })?,
        app_id: row.text("app_id")?,
        etag: row.opt_text("etag")?,
        reason: row.text("reason")?,
        since: row.at("since")?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        last_error: row.opt_text("last_error")?,
    })
}

pub(crate) fn run_from(row: &AnyRow) -> Result<RunRecord> {
    Ok(RunRecord {
        id: row.text("id")?,
        organisation_id: row.text("organisation_id")?,
        kind: from_json(&format!("\"{}\"", row.text("kind")?), "sync_run", "kind")?,
        started_at: row.at("started_at")?,
        finished_at: row.opt_at("finished_at")?,
        status: from_json(&format!("\"{}\"", row.text("status")?), "sync_run", "status")?,
        error: row.opt_text("error")?,
        metrics: from_json(&row.text("metrics")?, "sync_run", "metrics")?,
    })
}

fn failure_from(row: &AnyRow) -> Result<FailedRecord> {
    Ok(FailedRecord {
        organisation_id: row.text("organisation_id")?,
        record_kind: row.text("record_kind")?,
        record_key: row.text("record_key")?,
        direction: parse_direction(&row.text("direction")?)?,
        error: row.text("error")?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        first_failed_at: row.at("first_failed_at")?,
        last_failed_at: row.at("last_failed_at")?,
        state: match row.text("state")?.as_str() {
            "retrying" => FailureState::Retrying,
            "dead" => FailureState::Dead,
            "dismissed" => FailureState::Dismissed,
            _ => {
                return Err(Error::Corrupt {
                    table: "failed_record",
                    column: "state",
                });
            }
        },
    })
}

fn conflict_from(row: &AnyRow) -> Result<Conflict> {
    let value = |column: &'static str| -> Result<AppValue> { from_json(&row.text(column)?, "sync_conflict", column) };
    let state = match (row.text("state")?.as_str(), row.opt_text("resolution")?.as_deref()) {
        ("open", _) => ConflictState::Open,
        ("resolved", Some("app")) => ConflictState::Resolved(Side::App),
        ("resolved", Some("dynamics")) => ConflictState::Resolved(Side::Dynamics),
        ("applied", _) => ConflictState::Applied,
        ("settled", _) => ConflictState::Settled,
        _ => {
            return Err(Error::Corrupt {
                table: "sync_conflict",
                column: "state",
            });
        }
    };
    Ok(Conflict {
        id: row.text("id")?,
        organisation_id: row.text("organisation_id")?,
        record_kind: row.text("record_kind")?,
        app_id: row.text("app_id")?,
        field: row.text("field")?,
        shadow_value: row
            .opt_text("shadow_value")?
            .map(|t| from_json(&t, "sync_conflict", "shadow_value"))
            .transpose()?,
        app_value: value("app_value")?,
        dynamics_value: value("dynamics_value")?,
        app_changed_at: row.opt_at("app_changed_at")?,
        dynamics_changed_at: row.opt_at("dynamics_changed_at")?,
        detected_at: row.at("detected_at")?,
        state,
        resolved_by: row.opt_text("resolved_by")?,
    })
}

fn alert_from(row: &AnyRow) -> Result<Alert> {
    Ok(Alert {
        id: row.text("id")?,
        organisation_id: row.text("organisation_id")?,
        cause: row.text("cause")?,
        kind: row.text("kind")?,
        severity: from_json(&format!("\"{}\"", row.text("severity")?), "alert", "severity")?,
        message: row.text("message")?,
        state: match row.text("state")?.as_str() {
            "open" => AlertState::Open,
            "acknowledged" => AlertState::Acknowledged,
            "resolved" => AlertState::Resolved,
            _ => {
                return Err(Error::Corrupt {
                    table: "alert",
                    column: "state",
                });
            }
        },
        raised_at: row.at("raised_at")?,
        updated_at: row.at("updated_at")?,
        resolved_at: row.opt_at("resolved_at")?,
        occurrences: u32::try_from(row.int("occurrences")?).unwrap_or(u32::MAX),
    })
}

pub(crate) fn cache_from(row: &AnyRow) -> Result<CacheEntry> {
    Ok(CacheEntry {
        organisation_id: row.text("organisation_id")?,
        mentor_id: row.text("mentor_id")?,
        member_number: row.opt_text("member_number")?,
        status: row.text("status")?,
        expires_on: row.opt_date("certification_cache", "expires_on")?,
        show_on_public_site: row.flag("show_on_public_site")?,
        as_of: row.at("as_of")?,
    })
}

pub(crate) fn notification_from(row: &AnyRow) -> Result<Notification> {
    Ok(Notification {
        id: row.text("id")?,
        organisation_id: row.text("organisation_id")?,
        dedupe_key: row.text("dedupe_key")?,
        channel: row.text("channel")?,
        recipient: row.text("recipient")?,
        subject: row.text("subject")?,
        body: row.text("body")?,
        created_at: row.at("created_at")?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: row.at("next_attempt_at")?,
        sent_at: row.opt_at("sent_at")?,
        last_error: row.opt_text("last_error")?,
    })
}

/// A serde enum's text form (`"sync"` → `sync`).
pub(crate) fn enum_text<T: serde::Serialize>(value: &T) -> String {
    json_text(value).trim_matches('"').to_owned()
}

impl Store {
    // ----- watermarks -----

    /// The watermark of one organisation, direction and table.
    pub async fn watermark(&self, organisation_id: &str, direction: Direction, table: &str) -> Result<Watermark> {
        let row = sqlx::query(
            "SELECT watermark, delta_link, updated_at FROM sync_watermark
             WHERE organisation_id = $1 AND direction = $2 AND table_name = $3",
        )
        .bind(organisation_id)
        .bind(direction_text(direction))
        .bind(table)
        .fetch_optional(&self.pool)
        .await
        .doing("reading a watermark")?;
        match row {
            None => Ok(Watermark::default()),
            Some(row) => Ok(Watermark {
                at: row.opt_at("watermark")?,
                delta_link: row.opt_text("delta_link")?,
                updated_at: row.opt_at("updated_at")?,
            }),
        }
    }

    /// Moves a watermark. Call only after the data it covers is committed.
    pub async fn set_watermark(
        &self,
        organisation_id: &str,
        direction: Direction,
        table: &str,
        watermark: &Watermark,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_watermark (organisation_id, direction, table_name, watermark, delta_link, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (organisation_id, direction, table_name) DO UPDATE
             SET watermark = excluded.watermark, delta_link = excluded.delta_link, updated_at = excluded.updated_at",
        )
        .bind(organisation_id)
        .bind(direction_text(direction))
        .bind(table)
        .bind(opt_ms(watermark.at))
        .bind(&watermark.delta_link)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .doing("saving a watermark")?;
        Ok(())
    }

    // ----- links and shadows -----

    /// The links of the given app records.
    pub async fn links(&self, organisation_id: &str, record_kind: &str, app_ids: &[String]) -> Result<Vec<Link>> {
        let mut out = Vec::with_capacity(app_ids.len());
        for chunk in app_ids.chunks(500) {
            let list = (3..3 + chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql(format!(
                "SELECT {LINK_COLUMNS} FROM sync_link WHERE organisation_id = $1 AND record_kind = $2 AND app_id IN ({list})"
            )))).persistent(false)
            .bind(organisation_id)
            .bind(record_kind);
            for id in chunk {
                query = query.bind(id);
            }
            out.extend(links_from(&query.fetch_all(&self.pool).await.doing("reading links")?));
        }
        Ok(out)
    }

    /// The links of the given Dynamics rows.
    pub async fn links_by_dynamics_ids(
        &self,
        organisation_id: &str,
        record_kind: &str,
        dynamics_ids: &[Uuid],
    ) -> Result<Vec<Link>> {
        let mut out = Vec::with_capacity(dynamics_ids.len());
        for chunk in dynamics_ids.chunks(500) {
            let list = (3..3 + chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql(format!(
                "SELECT {LINK_COLUMNS} FROM sync_link
                 WHERE organisation_id = $1 AND record_kind = $2 AND dynamics_id IN ({list})"
            ))))
            .persistent(false)
            .bind(organisation_id)
            .bind(record_kind);
            for id in chunk {
                query = query.bind(id.to_string());
            }
            out.extend(links_from(&query.fetch_all(&self.pool).await.doing("reading links")?));
        }
        Ok(out)
    }

    /// The link of a Dynamics row.
    pub async fn link_by_dynamics_id(
        &self,
        organisation_id: &str,
        record_kind: &str,
        dynamics_id: Uuid,
    ) -> Result<Option<Link>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM sync_link WHERE organisation_id = $1 AND record_kind = $2 AND dynamics_id = $3"
        )))
        .bind(organisation_id)
        .bind(record_kind)
        .bind(dynamics_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .doing("reading a link")?;
        row.as_ref().map(link_from).transpose()
    }

    /// Every link of an organisation in app-id order after `after_app_id`, at most `limit` (reconcile).
    pub async fn links_page(
        &self,
        organisation_id: &str,
        record_kind: &str,
        after_app_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Link>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM sync_link WHERE organisation_id = $1 AND record_kind = $2 AND app_id > $3
             ORDER BY app_id LIMIT $4"
        )))
        .bind(organisation_id)
        .bind(record_kind)
        .bind(after_app_id.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading links")?;
        Ok(links_from(&rows))
    }

    /// Links with a write whose outcome is not recorded yet (see [`Link::pending`]), at most 1,000: the next run
    /// reads their rows to learn whether the write landed.
    pub async fn links_with_pending(&self, organisation_id: &str, record_kind: &str) -> Result<Vec<Link>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LINK_COLUMNS} FROM sync_link
             WHERE organisation_id = $1 AND record_kind = $2 AND pending IS NOT NULL ORDER BY app_id LIMIT 1000"
        )))
        .bind(organisation_id)
        .bind(record_kind)
        .fetch_all(&self.pool)
        .await
        .doing("reading links with a pending write")?;
        Ok(links_from(&rows))
    }

    /// Saves a link and its shadow.
    pub async fn save_link(&self, link: &Link) -> Result<()> {
        self.save_links(std::slice::from_ref(link)).await
    }

    /// Saves several links in one transaction (a batch's links, recorded before it is sent or after it answered),
    /// many rows per statement.
    pub async fn save_links(&self, links: &[Link]) -> Result<()> {
        if links.is_empty() {
            return Ok(());
        }
        // One row per key in a statement (PostgreSQL refuses to upsert a row twice in one); the last one wins.
        let links = last_per_key(links, |l| {
            (l.organisation_id.as_str(), l.record_kind.as_str(), l.app_id.as_str())
        });
        let mut tx = self.begin_write().await?;
        for chunk in links.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO sync_link ({LINK_COLUMNS}) VALUES {}
                 ON CONFLICT (organisation_id, record_kind, app_id) DO UPDATE
                 SET dynamics_id = excluded.dynamics_id, alternate_key = excluded.alternate_key, etag = excluded.etag,
                     shadow = excluded.shadow, visible = excluded.visible, expires_on = excluded.expires_on,
                     dynamics_modified_on = excluded.dynamics_modified_on, synced_at = excluded.synced_at,
                     pending = excluded.pending, seen = excluded.seen, app_changed_at = excluded.app_changed_at",
                value_rows(chunk.len(), 14)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql(sql))).persistent(false);
            for link in chunk {
                query = query
                    .bind(link.organisation_id.clone())
                    .bind(link.record_kind.clone())
                    .bind(link.app_id.clone())
                    .bind(link.dynamics_id.to_string())
                    .bind(link.alternate_key.clone())
                    .bind(link.etag.clone())
                    .bind(json_text(&link.shadow))
                    .bind(i64::from(link.visible))
                    .bind(link.expires_on.map(date_text))
                    .bind(opt_ms(link.dynamics_modified_on))
                    .bind(ms(link.synced_at))
                    .bind(link.pending.as_ref().map(json_text))
                    .bind((!link.seen.is_empty()).then(|| json_text(&link.seen)))
                    .bind(opt_ms(link.app_changed_at));
            }
            query.execute(&mut *tx).await.doing("saving links")?;
        }
        tx.commit().await.doing("committing links")?;
        Ok(())
    }

    /// App ids and Dynamics ids of an organisation's links in app-id order after `after_app_id`, at most `limit`
    /// (the scan for mentors who left the app; no shadow is read).
    pub async fn link_ids_page(
        &self,
        organisation_id: &str,
        record_kind: &str,
        after_app_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Uuid)>> {
        let rows = sqlx::query(
            "SELECT app_id, dynamics_id FROM sync_link WHERE organisation_id = $1 AND record_kind = $2 AND app_id > $3
             ORDER BY app_id LIMIT $4",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(after_app_id.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading link ids")?;
        rows.iter()
            .map(|row| {
                let id = Uuid::from_str(&row.text("dynamics_id")?).map_err(|_| Error::Corrupt {
                    table: "sync_link",
                    column: "dynamics_id",
                })?;
                Ok((row.text("app_id")?, id))
            })
            .collect()
    }

    /// Removes the link of an app record only while it still points to `dynamics_id` (the record may have been
    /// linked to another row since).
    pub async fn delete_link_to(
        &self,
        organisation_id: &str,
        record_kind: &str,
        app_id: &str,
        dynamics_id: Uuid,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM sync_link WHERE organisation_id = $1 AND record_kind = $2 AND app_id = $3 AND dynamics_id = $4",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(app_id)
        .bind(dynamics_id.to_string())
        .execute(&self.pool)
        .await
        .doing("removing a link")?;
        Ok(())
    }

    /// Removes a link (the Dynamics row was deleted).
    pub async fn delete_link(&self, organisation_id: &str, record_kind: &str, app_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sync_link WHERE organisation_id = $1 AND record_kind = $2 AND app_id = $3")
            .bind(organisation_id)
            .bind(record_kind)
            .bind(app_id)
            .execute(&self.pool)
            .await
            .doing("removing a link")?;
        Ok(())
    }

    /// The time rule: app ids of links Dynamics still shows as visible whose certification expired before `today`
    /// (the organisation's local date). Changes no app row, so it must be asked on every run.
    pub async fn visible_but_expired(
        &self,
        organisation_id: &str,
        record_kind: &str,
        today: NaiveDate,
        after_app_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT app_id FROM sync_link
             WHERE organisation_id = $1 AND record_kind = $2 AND visible = $3 AND expires_on IS NOT NULL
               AND expires_on < $4 AND app_id > $5
             ORDER BY app_id LIMIT $6",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(1i64)
        .bind(date_text(today))
        .bind(after_app_id.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("finding expired mentors still visible")
    }

    // ----- released contacts -----

    /// Records a contact no mentor claims any more, to be hidden from the public site (an existing release of the
    /// same contact is kept, with its attempts).
    pub async fn add_release(&self, release: &Release) -> Result<()> {
        sqlx::query(
            "INSERT INTO sync_release (organisation_id, record_kind, dynamics_id, app_id, etag, reason, since, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0)
             ON CONFLICT (organisation_id, record_kind, dynamics_id) DO UPDATE
             SET etag = COALESCE(excluded.etag, sync_release.etag)",
        )
        .bind(&release.organisation_id)
        .bind(&release.record_kind)
        .bind(release.dynamics_id.to_string())
        .bind(&release.app_id)
        .bind(&release.etag)
        .bind(&release.reason)
        .bind(ms(release.since))
        .execute(&self.pool)
        .await
        .doing("releasing a contact")?;
        Ok(())
    }

    /// Released contacts of an organisation in Dynamics-id order after `after`, at most `limit`.
    pub async fn releases(
        &self,
        organisation_id: &str,
        record_kind: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Release>> {
        let rows = sqlx::query(
            "SELECT * FROM sync_release WHERE organisation_id = $1 AND record_kind = $2 AND dynamics_id > $3
             ORDER BY dynamics_id LIMIT $4",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(after.map(|id| id.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading released contacts")?;
        rows.iter().map(release_from).collect()
    }

    /// Forgets a released contact: it is hidden, deleted in Dynamics, or a mentor claimed it.
    pub async fn delete_release(&self, organisation_id: &str, record_kind: &str, dynamics_id: Uuid) -> Result<()> {
        sqlx::query("DELETE FROM sync_release WHERE organisation_id = $1 AND record_kind = $2 AND dynamics_id = $3")
            .bind(organisation_id)
            .bind(record_kind)
            .bind(dynamics_id.to_string())
            .execute(&self.pool)
            .await
            .doing("forgetting a released contact")?;
        Ok(())
    }

    /// Records a failed attempt to hide a released contact (it is tried again every run).
    pub async fn release_failed(
        &self,
        organisation_id: &str,
        record_kind: &str,
        dynamics_id: Uuid,
        etag: Option<&str>,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sync_release SET attempts = attempts + 1, last_error = $1, etag = COALESCE($2, etag)
             WHERE organisation_id = $3 AND record_kind = $4 AND dynamics_id = $5",
        )
        .bind(error)
        .bind(etag)
        .bind(organisation_id)
        .bind(record_kind)
        .bind(dynamics_id.to_string())
        .execute(&self.pool)
        .await
        .doing("recording a failed release")?;
        Ok(())
    }

    /// Forgets what the sync state holds about an app record that left the app: its failed records, its conflicts,
    /// its cached status. Its link is ended separately.
    pub async fn forget_record(&self, organisation_id: &str, record_kind: &str, app_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for statement in [
            "DELETE FROM failed_record WHERE organisation_id = $1 AND record_kind = $2 AND record_key = $3",
            "DELETE FROM sync_conflict WHERE organisation_id = $1 AND record_kind = $2 AND app_id = $3",
        ] {
            sqlx::query(statement)
                .bind(organisation_id)
                .bind(record_kind)
                .bind(app_id)
                .execute(&mut *tx)
                .await
                .doing("forgetting a record that left the app")?;
        }
        sqlx::query("DELETE FROM certification_cache WHERE organisation_id = $1 AND mentor_id = $2")
            .bind(organisation_id)
            .bind(app_id)
            .execute(&mut *tx)
            .await
            .doing("forgetting a record that left the app")?;
        tx.commit().await.doing("committing")?;
        Ok(())
    }

    // ----- run log -----

    /// Records the start of a run and returns its id.
    pub async fn start_run(&self, organisation_id: &str, kind: RunKind, now: DateTime<Utc>) -> Result<String> {
        let id = Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO sync_run (id, organisation_id, kind, started_at, status, metrics) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(organisation_id)
        .bind(enum_text(&kind))
        .bind(ms(now))
        .bind(enum_text(&RunStatus::Running))
        .bind(json_text(&RunMetrics::default()))
        .execute(&self.pool)
        .await
        .doing("recording a run start")?;
        Ok(id)
    }

    /// Records how a run ended.
    pub async fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        metrics: &RunMetrics,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query("UPDATE sync_run SET status = $1, metrics = $2, error = $3, finished_at = $4 WHERE id = $5")
            .bind(enum_text(&status))
            .bind(json_text(metrics))
            .bind(error)
            .bind(ms(now))
            .bind(run_id)
            .execute(&self.pool)
            .await
            .doing("recording a run end")?;
        Ok(())
    }

    /// The latest runs of an organisation, newest first.
    pub async fn recent_runs(&self, organisation_id: &str, limit: u32) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(
            "SELECT id, organisation_id, kind, started_at, finished_at, status, error, metrics FROM sync_run
             WHERE organisation_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(organisation_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading the run log")?;
        rows.iter().map(run_from).collect()
    }

    // ----- failed records -----

    /// Records a failure: the attempt count grows, and once it reaches `max_attempts` the record is dead.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_failure(
        &self,
        organisation_id: &str,
        record_kind: &str,
        record_key: &str,
        direction: Direction,
        error: &str,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<FailedRecord> {
        sqlx::query(
            "INSERT INTO failed_record (organisation_id, record_kind, record_key, direction, error, attempts,
                                        first_failed_at, last_failed_at, state)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6, 'retrying')
             ON CONFLICT (organisation_id, record_kind, record_key, direction) DO UPDATE
             SET error = excluded.error, attempts = failed_record.attempts + 1, last_failed_at = excluded.last_failed_at,
                 state = CASE WHEN failed_record.state = 'dismissed' THEN 'retrying' ELSE failed_record.state END",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(record_key)
        .bind(direction_text(direction))
        .bind(error)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .doing("recording a failed record")?;
        sqlx::query(
            "UPDATE failed_record SET state = 'dead'
             WHERE organisation_id = $1 AND record_kind = $2 AND record_key = $3 AND direction = $4 AND attempts >= $5",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(record_key)
        .bind(direction_text(direction))
        .bind(i64::from(max_attempts))
        .execute(&self.pool)
        .await
        .doing("marking a record dead")?;
        self.failure(organisation_id, record_kind, record_key, direction)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("failed record {record_key}"),
            })
    }

    /// One failed record.
    pub async fn failure(
        &self,
        organisation_id: &str,
        record_kind: &str,
        record_key: &str,
        direction: Direction,
    ) -> Result<Option<FailedRecord>> {
        let row = sqlx::query(
            "SELECT * FROM failed_record
             WHERE organisation_id = $1 AND record_kind = $2 AND record_key = $3 AND direction = $4",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(record_key)
        .bind(direction_text(direction))
        .fetch_optional(&self.pool)
        .await
        .doing("reading a failed record")?;
        row.as_ref().map(failure_from).transpose()
    }

    /// Forgets a failure: the record synced.
    pub async fn clear_failure(
        &self,
        organisation_id: &str,
        record_kind: &str,
        record_key: &str,
        direction: Direction,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM failed_record
             WHERE organisation_id = $1 AND record_kind = $2 AND record_key = $3 AND direction = $4",
        )
        .bind(organisation_id)
        .bind(record_kind)
        .bind(record_key)
        .bind(direction_text(direction))
        .execute(&self.pool)
        .await
        .doing("clearing a failed record")?;
        Ok(())
    }

    /// Failed records of an organisation in a state, oldest first.
    pub async fn failures(&self, organisation_id: &str, state: FailureState) -> Result<Vec<FailedRecord>> {
        let state = match state {
            FailureState::Retrying => "retrying",
            FailureState::Dead => "dead",
            FailureState::Dismissed => "dismissed",
        };
        let rows = sqlx::query(
            "SELECT * FROM failed_record WHERE organisation_id = $1 AND state = $2
             ORDER BY first_failed_at, record_key",
        )
        .bind(organisation_id)
        .bind(state)
        .fetch_all(&self.pool)
        .await
        .doing("listing failed records")?;
        rows.iter().map(failure_from).collect()
    }

    /// An admin sends a dead record back for another round of attempts.
    pub async fn requeue_failure(
        &self,
        organisation_id: &str,
        record_kind: &str,
        record_key: &str,
        direction: Direction,
    ) -> Result<()> {
        self.set_failure_state(organisation_id, record_kind, record_key, direction, "retrying", true)
            .await
    }

    /// An admin dismisses a failed record: it is no longer retried.
    pub async fn dismiss_failure(
        &self,
        organisation_id: &str,
        record_kind: &str,
        record_key: &str,
        direction: Direction,
    ) -> Result<()> {
        self.set_failure_state(organisation_id, record_kind, record_key, direction, "dismissed", false)
            .await
    }

    async fn set_failure_state(
        &self,
        organisation_id: &str,
        record_kind: &str,
        record_key: &str,
        direction: Direction,
        state: &str,
        reset_attempts: bool,
    ) -> Result<()> {
        let result = sqlx::query(
            "UPDATE failed_record SET state = $1, attempts = CASE WHEN $2 = 1 THEN 0 ELSE attempts END
             WHERE organisation_id = $3 AND record_kind = $4 AND record_key = $5 AND direction = $6",
        )
        .bind(state)
        .bind(i64::from(reset_attempts))
        .bind(organisation_id)
        .bind(record_kind)
        .bind(record_key)
        .bind(direction_text(direction))
        .execute(&self.pool)
        .await
        .doing("changing a failed record")?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound {
                what: format!("failed record {record_key}"),
            });
        }
        Ok(())
    }

    // ----- conflicts -----

    /// Opens a conflict, or updates the values of the one already open for the same field. Returns its id.
    pub async fn open_conflict(&self, conflict: &Conflict) -> Result<String> {
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM sync_conflict WHERE organisation_id = $1 AND record_kind = $2 AND app_id = $3
               AND field = $4 AND state IN ('open', 'resolved')",
        )
        .bind(&conflict.organisation_id)
        .bind(&conflict.record_kind)
        .bind(&conflict.app_id)
        .bind(&conflict.field)
        .fetch_optional(&self.pool)
        .await
        .doing("looking for an open conflict")?;
        let shadow = conflict.shadow_value.as_ref().map(json_text);
        if let Some(id) = existing {
            sqlx::query(
                "UPDATE sync_conflict SET app_value = $1, dynamics_value = $2, shadow_value = $3,
                   app_changed_at = $4, dynamics_changed_at = $5 WHERE id = $6 AND state = 'open'",
            )
            .bind(json_text(&conflict.app_value))
            .bind(json_text(&conflict.dynamics_value))
            .bind(shadow)
            .bind(opt_ms(conflict.app_changed_at))
            .bind(opt_ms(conflict.dynamics_changed_at))
            .bind(&id)
            .execute(&self.pool)
            .await
            .doing("updating a conflict")?;
            return Ok(id);
        }
        let id = Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO sync_conflict (id, organisation_id, record_kind, app_id, field, shadow_value, app_value,
               dynamics_value, app_changed_at, dynamics_changed_at, detected_at, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open')",
        )
        .bind(&id)
        .bind(&conflict.organisation_id)
        .bind(&conflict.record_kind)
        .bind(&conflict.app_id)
        .bind(&conflict.field)
        .bind(shadow)
        .bind(json_text(&conflict.app_value))
        .bind(json_text(&conflict.dynamics_value))
        .bind(opt_ms(conflict.app_changed_at))
        .bind(opt_ms(conflict.dynamics_changed_at))
        .bind(ms(conflict.detected_at))
        .execute(&self.pool)
        .await
        .doing("opening a conflict")?;
        Ok(id)
    }

    /// Conflicts of an organisation that are not yet closed (open or resolved), oldest first.
    pub async fn pending_conflicts(&self, organisation_id: &str) -> Result<Vec<Conflict>> {
        let rows = sqlx::query(
            "SELECT * FROM sync_conflict WHERE organisation_id = $1 AND state IN ('open', 'resolved')
             ORDER BY detected_at, id",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await
        .doing("listing conflicts")?;
        rows.iter().map(conflict_from).collect()
    }

    /// One conflict by id.
    pub async fn conflict(&self, id: &str) -> Result<Option<Conflict>> {
        let row = sqlx::query("SELECT * FROM sync_conflict WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a conflict")?;
        row.as_ref().map(conflict_from).transpose()
    }

    /// An admin picks a side. The sync writes it on its next run (or at once through the engine).
    pub async fn resolve_conflict(&self, id: &str, side: Side, by: &str, now: DateTime<Utc>) -> Result<()> {
        let result = sqlx::query(
            "UPDATE sync_conflict SET state = 'resolved', resolution = $1, resolved_by = $2, resolved_at = $3
             WHERE id = $4 AND state = 'open'",
        )
        .bind(enum_text(&side))
        .bind(by)
        .bind(ms(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .doing("resolving a conflict")?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound {
                what: format!("open conflict {id}"),
            });
        }
        Ok(())
    }

    /// Closes a held conflict whose two sides came to hold the same value, without an admin.
    pub async fn settle_conflict(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE sync_conflict SET state = 'settled', resolved_at = $1 WHERE id = $2 AND state = 'open'")
            .bind(ms(now))
            .bind(id)
            .execute(&self.pool)
            .await
            .doing("settling a conflict")?;
        Ok(())
    }

    /// Marks a resolved conflict as written to both sides.
    pub async fn mark_conflict_applied(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE sync_conflict SET state = 'applied' WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .doing("closing a conflict")?;
        Ok(())
    }

    // ----- alerts -----

    /// Raises an alert for a cause. While an alert for the cause is active, it is updated (message, occurrences)
    /// instead of a new one being made. Returns the alert and whether it is new.
    #[allow(clippy::too_many_arguments)]
    pub async fn raise_alert(
        &self,
        organisation_id: &str,
        cause: &str,
        kind: &str,
        severity: Severity,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(Alert, bool)> {
        let updated = sqlx::query(
            "UPDATE alert SET message = $1, severity = $2, updated_at = $3, occurrences = occurrences + 1
             WHERE organisation_id = $4 AND cause = $5 AND state <> 'resolved'",
        )
        .bind(message)
        .bind(enum_text(&severity))
        .bind(ms(now))
        .bind(organisation_id)
        .bind(cause)
        .execute(&self.pool)
        .await
        .doing("updating an alert")?;
        let new = updated.rows_affected() == 0;
        if new {
            sqlx::query(
                "INSERT INTO alert (id, organisation_id, cause, kind, severity, message, state, raised_at, updated_at,
                                    occurrences)
                 VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $7, 1)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(organisation_id)
            .bind(cause)
            .bind(kind)
            .bind(enum_text(&severity))
            .bind(message)
            .bind(ms(now))
            .execute(&self.pool)
            .await
            .doing("raising an alert")?;
        }
        let row = sqlx::query("SELECT * FROM alert WHERE organisation_id = $1 AND cause = $2 AND state <> 'resolved'")
            .bind(organisation_id)
            .bind(cause)
            .fetch_one(&self.pool)
            .await
            .doing("reading an alert")?;
        Ok((alert_from(&row)?, new))
    }

    /// Resolves the active alert of a cause, if any: its cause is gone. Returns whether one was resolved.
    pub async fn resolve_alert(&self, organisation_id: &str, cause: &str, now: DateTime<Utc>) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE alert SET state = 'resolved', resolved_at = $1, updated_at = $1
             WHERE organisation_id = $2 AND cause = $3 AND state <> 'resolved'",
        )
        .bind(ms(now))
        .bind(organisation_id)
        .bind(cause)
        .execute(&self.pool)
        .await
        .doing("resolving an alert")?;
        Ok(result.rows_affected() > 0)
    }

    /// An admin acknowledges an alert.
    pub async fn acknowledge_alert(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE alert SET state = 'acknowledged', updated_at = $1 WHERE id = $2 AND state = 'open'")
            .bind(ms(now))
            .bind(id)
            .execute(&self.pool)
            .await
            .doing("acknowledging an alert")?;
        Ok(())
    }

    /// Active (open or acknowledged) alerts of an organisation, most severe and newest first.
    pub async fn active_alerts(&self, organisation_id: &str) -> Result<Vec<Alert>> {
        let rows = sqlx::query(
            "SELECT * FROM alert WHERE organisation_id = $1 AND state <> 'resolved'
             ORDER BY severity, raised_at DESC",
        )
        .bind(organisation_id)
        .fetch_all(&self.pool)
        .await
        .doing("listing alerts")?;
        rows.iter().map(alert_from).collect()
    }

    // ----- notification outbox -----

    /// Queues a notification unless one with the same deduplication key was ever queued. Returns whether it was
    /// queued now.
    pub async fn enqueue_notification(&self, notification: &Notification) -> Result<bool> {
        let result = sqlx::query(
            "INSERT INTO notification_outbox (id, organisation_id, dedupe_key, channel, recipient, subject, body,
               created_at, attempts, next_attempt_at, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, 'pending')
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(&notification.id)
        .bind(&notification.organisation_id)
        .bind(&notification.dedupe_key)
        .bind(&notification.channel)
        .bind(&notification.recipient)
        .bind(&notification.subject)
        .bind(&notification.body)
        .bind(ms(notification.created_at))
        .bind(ms(notification.next_attempt_at))
        .execute(&self.pool)
        .await
        .doing("queueing a notification")?;
        Ok(result.rows_affected() == 1)
    }

    /// Notifications due for delivery, oldest first.
    pub async fn due_notifications(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Notification>> {
        let rows = sqlx::query(
            "SELECT * FROM notification_outbox WHERE state = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading due notifications")?;
        rows.iter().map(notification_from).collect()
    }

    /// Records a delivery.
    pub async fn mark_notification_sent(&self, id: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE notification_outbox SET state = 'sent', sent_at = $1, attempts = attempts + 1 WHERE id = $2",
        )
        .bind(ms(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .doing("recording a delivery")?;
        Ok(())
    }

    /// Records a failed delivery: retried at `retry_at`, or given up (`None`).
    pub async fn mark_notification_failed(&self, id: &str, error: &str, retry_at: Option<DateTime<Utc>>) -> Result<()> {
        sqlx::query(
            "UPDATE notification_outbox SET attempts = attempts + 1, last_error = $1,
               next_attempt_at = COALESCE($2, next_attempt_at),
               state = CASE WHEN $2 IS NULL THEN 'failed' ELSE 'pending' END
             WHERE id = $3",
        )
        .bind(error)
        .bind(opt_ms(retry_at))
        .bind(id)
        .execute(&self.pool)
        .await
        .doing("recording a failed delivery")?;
        Ok(())
    }

    /// Every notification of an organisation, newest first (for the dashboard and tests).
    pub async fn notifications(&self, organisation_id: &str, limit: u32) -> Result<Vec<Notification>> {
        let rows = sqlx::query(
            "SELECT * FROM notification_outbox WHERE organisation_id = $1 ORDER BY created_at DESC, id LIMIT $2",
        )
        .bind(organisation_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("listing notifications")?;
        rows.iter().map(notification_from).collect()
    }

    // ----- certification cache -----

    /// Saves many cache entries in one transaction, many rows per statement.
    pub async fn save_cache_entries(&self, entries: &[CacheEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = last_per_key(entries, |e| (e.organisation_id.as_str(), e.mentor_id.as_str()));
        let mut tx = self.begin_write().await?;
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO certification_cache (organisation_id, mentor_id, member_number, status, expires_on,
                   show_on_public_site, as_of) VALUES {}
                 ON CONFLICT (organisation_id, mentor_id) DO UPDATE
                 SET member_number = excluded.member_number, status = excluded.status,
                     expires_on = excluded.expires_on, show_on_public_site = excluded.show_on_public_site,
                     as_of = excluded.as_of",
                value_rows(chunk.len(), 7)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(self.sql(sql))).persistent(false);
            for entry in chunk {
                query = query
                    .bind(entry.organisation_id.clone())
                    .bind(entry.mentor_id.clone())
                    .bind(entry.member_number.clone())
                    .bind(entry.status.clone())
                    .bind(entry.expires_on.map(date_text))
                    .bind(i64::from(entry.show_on_public_site))
                    .bind(ms(entry.as_of));
            }
            query.execute(&mut *tx).await.doing("saving cache entries")?;
        }
        tx.commit().await.doing("committing cache entries")?;
        Ok(())
    }

    /// Saves cache entries (after a run confirmed them in sync with Dynamics).
    pub async fn save_cache_entry(&self, entry: &CacheEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO certification_cache (organisation_id, mentor_id, member_number, status, expires_on,
               show_on_public_site, as_of) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (organisation_id, mentor_id) DO UPDATE
             SET member_number = excluded.member_number, status = excluded.status, expires_on = excluded.expires_on,
                 show_on_public_site = excluded.show_on_public_site, as_of = excluded.as_of",
        )
        .bind(&entry.organisation_id)
        .bind(&entry.mentor_id)
        .bind(&entry.member_number)
        .bind(&entry.status)
        .bind(entry.expires_on.map(date_text))
        .bind(i64::from(entry.show_on_public_site))
        .bind(ms(entry.as_of))
        .execute(&self.pool)
        .await
        .doing("saving a cache entry")?;
        Ok(())
    }

    /// Marks the cache entries of an organisation's linked mentors as confirmed at `as_of`, except those with a
    /// failed record or a write whose outcome is not known yet: after a run, the others agree with Dynamics.
    pub async fn confirm_cache(&self, organisation_id: &str, as_of: DateTime<Utc>) -> Result<u64> {
        let result = sqlx::query(
            "UPDATE certification_cache SET as_of = $1
             WHERE organisation_id = $2
               AND mentor_id IN (SELECT app_id FROM sync_link
                                 WHERE organisation_id = $2 AND record_kind = 'mentor' AND pending IS NULL)
               AND mentor_id NOT IN (SELECT record_key FROM failed_record
                                     WHERE organisation_id = $2 AND record_kind = 'mentor')",
        )
        .bind(ms(as_of))
        .bind(organisation_id)
        .execute(&self.pool)
        .await
        .doing("confirming the certification cache")?;
        Ok(result.rows_affected())
    }

    /// Forgets a mentor's cached status (the contact was deleted or unlinked).
    pub async fn delete_cache_entry(&self, organisation_id: &str, mentor_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM certification_cache WHERE organisation_id = $1 AND mentor_id = $2")
            .bind(organisation_id)
            .bind(mentor_id)
            .execute(&self.pool)
            .await
            .doing("removing a cache entry")?;
        Ok(())
    }

    /// The cached certification status of a mentor.
    pub async fn cache_entry(&self, organisation_id: &str, mentor_id: &str) -> Result<Option<CacheEntry>> {
        let row = sqlx::query("SELECT * FROM certification_cache WHERE organisation_id = $1 AND mentor_id = $2")
            .bind(organisation_id)
            .bind(mentor_id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading the certification cache")?;
        row.as_ref().map(cache_from).transpose()
    }

    /// The cached certification statuses of an organisation in member-number order, at most `limit` (for the
    /// dashboard, which shows how fresh each is).
    pub async fn cache_listing(&self, organisation_id: &str, limit: u32) -> Result<Vec<CacheEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM certification_cache WHERE organisation_id = $1 ORDER BY member_number, mentor_id LIMIT $2",
        )
        .bind(organisation_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("listing the certification cache")?;
        rows.iter().map(cache_from).collect()
    }

    // ----- retention -----

    /// Deletes every row that holds personal data or refers to a person and is older than `before` (GDPR
    /// retention, `retention.days`), whatever its state: see [`RETENTION_RULES`]. Returns how many rows of each kind
    /// went. Links (and their shadows), watermarks and contacts still to be hidden are kept: the sync needs them,
    /// and they go when the mentor leaves the app or with [`Store::forget_member`].
    pub async fn purge(&self, before: DateTime<Utc>) -> Result<PurgeReport> {
        self.retention(before, true).await
    }

    /// What [`Store::purge`] would delete now, deleting nothing.
    pub async fn purge_preview(&self, before: DateTime<Utc>) -> Result<PurgeReport> {
        self.retention(before, false).await
    }

    async fn retention(&self, before: DateTime<Utc>, delete: bool) -> Result<PurgeReport> {
        let cutoff = ms(before);
        let mut report = PurgeReport::default();
        for rule in RETENTION_RULES {
            let n = if delete {
                // The table and condition are the constants of RETENTION_RULES, never input.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {} WHERE {}",
                    rule.table, rule.older_than
                )))
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .doing("purging old rows")?
                .rows_affected()
            } else {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM {} WHERE {}",
                    rule.table, rule.older_than
                )))
                .bind(cutoff)
                .fetch_one(&self.pool)
                .await
                .doing("counting old rows")?;
                u64::try_from(n).unwrap_or(0)
            };
            report.rows.insert(rule.kind, n);
        }
        Ok(report)
    }
}

/// One kind of row retention deletes: the table, and the condition (on `$1`, the cutoff in milliseconds) that makes a
/// row old enough.
#[derive(Debug, Clone, Copy)]
pub struct RetentionRule {
    /// The name reports use.
    pub kind: &'static str,
    /// The table.
    pub table: &'static str,
    /// The SQL condition on `$1`.
    pub older_than: &'static str,
    /// Why the age is measured so, for docs/privacy.md and `purge --dry-run`.
    pub what: &'static str,
}

/// Every kind of row retention deletes, and when. Each holds personal data or points at a person: run logs (errors
/// and notes name mentors by id), failed records (errors, payloads), conflicts (both sides' values: e-mail addresses,
/// phone numbers), notifications (recipients and bodies), resolved alerts, and certification-cache entries nobody
/// confirmed for the whole period (mentors who left the app).
pub const RETENTION_RULES: [RetentionRule; 6] = [
    RetentionRule {
        kind: "runs",
        table: "sync_run",
        older_than: "started_at < $1",
        what: "run log entries, by start (also runs left `running` by a crash)",
    },
    RetentionRule {
        kind: "failed records",
        table: "failed_record",
        older_than: "last_failed_at < $1",
        what: "failed records not tried for the whole period, in any state (a record still failing is tried every \
               run and stays)",
    },
    RetentionRule {
        kind: "conflicts",
        table: "sync_conflict",
        older_than: "detected_at < $1",
        what: "conflicts, by detection, in any state (one still open is found again by the next run if the sides \
               still differ)",
    },
    RetentionRule {
        kind: "notifications",
        table: "notification_outbox",
        older_than: "created_at < $1",
        what: "notifications, by creation, in any state (also those that wait for ever for a channel)",
    },
    RetentionRule {
        kind: "alerts",
        table: "alert",
        older_than: "state = 'resolved' AND resolved_at < $1",
        what: "resolved alerts, by resolution (open alerts are current and stay)",
    },
    RetentionRule {
        kind: "cache entries",
        table: "certification_cache",
        older_than: "as_of < $1",
        what: "certification-cache entries Dynamics has not confirmed for the whole period (every run confirms the \
               mentors it syncs)",
    },
];

/// What a purge deleted (or, previewed, would delete), by kind of row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PurgeReport {
    /// Rows by [`RetentionRule::kind`].
    pub rows: BTreeMap<&'static str, u64>,
}

impl PurgeReport {
    /// Rows in all.
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }
}

impl std::fmt::Display for PurgeReport {
    /// `3 runs, 0 failed records, …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.rows.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
        f.write_str(&parts.join(", "))
    }
}
