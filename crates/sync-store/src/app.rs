//! The app side: the [`AppStore`] trait the engine reads and writes mentors through, and its implementation on
//! the reference schema. A backend with its own tables implements the trait instead.

use std::collections::BTreeMap;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::db::{RowExt, Store, date_text, from_ms, ms, opt_ms};
use crate::error::{Context, Error, Result};
use crate::model::{Certification, ChangeCursor, Membership, Mentor, MentorSnapshot, PullOutcome, PullUpdate};

/// What the sync engine needs from the app's data. Implementations must not change a mentor's `updated_at` when
/// the sync writes to it (that would echo the sync's own writes back as app changes).
///
/// Errors: return [`crate::Error::Refused`] when the app refuses a change for one record (a constraint, a
/// validation): the engine queues that record with the reason and the run goes on. Any other error fails the run.
#[async_trait]
pub trait AppStore: Send + Sync {
    /// Mentors of `organisation_id` whose row or certifications changed at or after `since`, in change order,
    /// continuing after `after`, at most `limit`. Each comes with the cursor to continue after it.
    async fn changed_mentors(
        &self,
        organisation_id: &str,
        since: Option<DateTime<Utc>>,
        after: Option<&ChangeCursor>,
        limit: u32,
    ) -> Result<Vec<(ChangeCursor, MentorSnapshot)>>;

    /// The given mentors of `organisation_id`; ids of other organisations or unknown ids are left out.
    async fn mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<MentorSnapshot>>;

    /// Every mentor of `organisation_id` in id order after `after_id`, at most `limit` (for reconcile and export).
    async fn all_mentors(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MentorSnapshot>>;

    /// The mentor of `organisation_id` with this member number.
    async fn mentor_by_member_number(
        &self,
        organisation_id: &str,
        member_number: &str,
    ) -> Result<Option<MentorSnapshot>>;

    /// The mentors of `organisation_id` with these member numbers (unknown numbers are left out).
    async fn mentors_by_member_numbers(
        &self,
        organisation_id: &str,
        member_numbers: &[String],
    ) -> Result<Vec<MentorSnapshot>>;

    /// Ids among `ids` of mentors of `organisation_id` that exist (a link whose mentor is missing is released).
    async fn existing_mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<String>> {
        Ok(self
            .mentors(organisation_id, ids)
            .await?
            .into_iter()
            .map(|s| s.mentor.id)
            .collect())
    }

    /// Writes Dynamics-owned values into the app, atomically: when [`PullUpdate::if_updated_at`] is set and the
    /// mentor's `updated_at` is no longer that value (the app edited the mentor after the engine read it), write
    /// nothing and answer [`PullOutcome::Stale`]. A missing mentor is [`crate::Error::NotFound`]; a refused value
    /// (e.g. a member number another mentor has) is [`crate::Error::Refused`].
    async fn apply_pull(&self, organisation_id: &str, mentor_id: &str, update: &PullUpdate) -> Result<PullOutcome>;

    /// Records (or clears) the Dynamics contact a mentor is linked to.
    async fn set_dynamics_contact(&self, organisation_id: &str, mentor_id: &str, contact: Option<Uuid>) -> Result<()>;
}

const MENTOR_COLUMNS: &str = "id, organisation_id, member_number, given_name, family_name, email, phone, \
     coordinator_email, dynamics_contact_id, updated_at";

fn mentor_from(row: &AnyRow) -> Result<Mentor> {
    Ok(Mentor {
        id: row.text("id")?,
        organisation_id: row.text("organisation_id")?,
        member_number: row.opt_text("member_number")?,
        given_name: row.opt_text("given_name")?,
        family_name: row.opt_text("family_name")?,
        email: row.opt_text("email")?,
        phone: row.opt_text("phone")?,
        coordinator_email: row.opt_text("coordinator_email")?,
        dynamics_contact_id: row
            .opt_text("dynamics_contact_id")?
            .map(|t| {
                Uuid::from_str(&t).map_err(|_| Error::Corrupt {
                    table: "peer_mentor",
                    column: "dynamics_contact_id",
                })
            })
            .transpose()?,
        updated_at: row.at("updated_at")?,
    })
}

fn certification_from(row: &AnyRow) -> Result<Certification> {
    let date = |column: &'static str| {
        row.opt_date("certification", column)?.ok_or(Error::Corrupt {
            table: "certification",
            column,
        })
    };
    Ok(Certification {
        id: row.text("id")?,
        mentor_id: row.text("mentor_id")?,
        kind: row.text("kind")?,
        issued_on: date("issued_on")?,
        expires_on: date("expires_on")?,
        revoked_at: row.opt_at("revoked_at")?,
        updated_at: row.at("updated_at")?,
    })
}

fn membership_from(row: &AnyRow) -> Result<Membership> {
    Ok(Membership {
        status: row.opt_text("status")?,
        membership_type: row.opt_text("membership_type")?,
        paid_until: row.opt_date("membership", "paid_until")?,
        contact_state: row.opt_text("contact_state")?,
        source_modified_on: row.opt_at("source_modified_on")?,
    })
}

/// A constraint violation becomes [`Error::Refused`] with `reason` (it concerns one record); anything else stays a
/// database error.
fn refused_if_constraint(error: sqlx::Error, reason: &str, doing: &str) -> Error {
    match &error {
        sqlx::Error::Database(db) if !matches!(db.kind(), sqlx::error::ErrorKind::Other) => Error::Refused {
            reason: reason.to_owned(),
        },
        _ => Error::Database {
            doing: doing.to_owned(),
            source: error,
        },
    }
}

/// `$first, $first+1, ...` for an `IN (...)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Loads full snapshots for mentor ids of one organisation, in the order of `ids`.
    async fn snapshots(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<MentorSnapshot>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let list = placeholders(2, chunk.len());
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT {MENTOR_COLUMNS} FROM peer_mentor WHERE organisation_id = $1 AND id IN ({list})"
            )))
            .bind(organisation_id);
            for id in chunk {
                query = query.bind(id);
            }
            let mentors = query.fetch_all(&self.pool).await.doing("reading mentors")?;
            let mut by_id: BTreeMap<String, MentorSnapshot> = BTreeMap::new();
            for row in &mentors {
                let mentor = mentor_from(row)?;
                by_id.insert(
                    mentor.id.clone(),
                    MentorSnapshot {
                        mentor,
                        certifications: Vec::new(),
                        membership: None,
                    },
                );
            }
            if by_id.is_empty() {
                continue;
            }
            let found: Vec<&String> = by_id.keys().collect();
            let list = placeholders(1, found.len());
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT id, mentor_id, kind, issued_on, expires_on, revoked_at, updated_at FROM certification
                 WHERE mentor_id IN ({list}) ORDER BY mentor_id, expires_on, id"
            )));
            for id in &found {
                query = query.bind(*id);
            }
            let certifications = query.fetch_all(&self.pool).await.doing("reading certifications")?;
            let mut query = sqlx::query(AssertSqlSafe(format!(
                "SELECT mentor_id, status, membership_type, paid_until, contact_state, source_modified_on
                 FROM membership WHERE mentor_id IN ({list})"
            )));
            for id in &found {
                query = query.bind(*id);
            }
            let memberships = query.fetch_all(&self.pool).await.doing("reading memberships")?;
            for row in &certifications {
                let certification = certification_from(row)?;
                if let Some(snapshot) = by_id.get_mut(&certification.mentor_id) {
                    snapshot.certifications.push(certification);
                }
            }
            for row in &memberships {
                let mentor_id = row.text("mentor_id")?;
                if let Some(snapshot) = by_id.get_mut(&mentor_id) {
                    snapshot.membership = Some(membership_from(row)?);
                }
            }
            for id in chunk {
                if let Some(snapshot) = by_id.remove(id) {
                    out.push(snapshot);
                }
            }
        }
        Ok(out)
    }

    /// Creates or renames an organisation (reference schema).
    pub async fn upsert_organisation(&self, id: &str, name: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO organisation (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(id)
        .bind(name)
        .execute(&self.pool)
        .await
        .doing("saving an organisation")?;
        Ok(())
    }

    /// Creates or replaces a mentor row (reference schema; the app's own writes).
    pub async fn upsert_mentor(&self, mentor: &Mentor) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO peer_mentor ({MENTOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO UPDATE SET organisation_id = excluded.organisation_id,
               member_number = excluded.member_number, given_name = excluded.given_name,
               family_name = excluded.family_name, email = excluded.email, phone = excluded.phone,
               coordinator_email = excluded.coordinator_email, dynamics_contact_id = excluded.dynamics_contact_id,
               updated_at = excluded.updated_at"
        )))
        .bind(&mentor.id)
        .bind(&mentor.organisation_id)
        .bind(&mentor.member_number)
        .bind(&mentor.given_name)
        .bind(&mentor.family_name)
        .bind(&mentor.email)
        .bind(&mentor.phone)
        .bind(&mentor.coordinator_email)
        .bind(mentor.dynamics_contact_id.map(|id| id.to_string()))
        .bind(ms(mentor.updated_at))
        .execute(&self.pool)
        .await
        .doing("saving a mentor")?;
        Ok(())
    }

    /// Creates or replaces a certification (reference schema; the app's own writes).
    pub async fn upsert_certification(&self, certification: &Certification) -> Result<()> {
        sqlx::query(
            "INSERT INTO certification (id, mentor_id, kind, issued_on, expires_on, revoked_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET mentor_id = excluded.mentor_id, kind = excluded.kind,
               issued_on = excluded.issued_on, expires_on = excluded.expires_on, revoked_at = excluded.revoked_at,
               updated_at = excluded.updated_at",
        )
        .bind(&certification.id)
        .bind(&certification.mentor_id)
        .bind(&certification.kind)
        .bind(date_text(certification.issued_on))
        .bind(date_text(certification.expires_on))
        .bind(opt_ms(certification.revoked_at))
        .bind(ms(certification.updated_at))
        .execute(&self.pool)
        .await
        .doing("saving a certification")?;
        Ok(())
    }

    /// Removes a mentor with their certifications, membership and postings (reference schema; the app's own write,
    /// e.g. a mentor who leaves). The sync hides their contact from the public site on its next run.
    pub async fn delete_mentor(&self, organisation_id: &str, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await.doing("starting a transaction")?;
        let owned: Option<String> =
            sqlx::query_scalar("SELECT id FROM peer_mentor WHERE id = $1 AND organisation_id = $2")
                .bind(id)
                .bind(organisation_id)
                .fetch_optional(&mut *tx)
                .await
                .doing("finding a mentor")?;
        if owned.is_none() {
            return Err(Error::NotFound {
                what: format!("mentor {id} of organisation {organisation_id}"),
            });
        }
        for statement in [
            "DELETE FROM certification WHERE mentor_id = $1",
            "DELETE FROM membership WHERE mentor_id = $1",
            "DELETE FROM posting WHERE mentor_id = $1",
            "DELETE FROM peer_mentor WHERE id = $1",
        ] {
            sqlx::query(statement)
                .bind(id)
                .execute(&mut *tx)
                .await
                .doing("removing a mentor")?;
        }
        tx.commit().await.doing("committing a removal")?;
        Ok(())
    }

    /// Counts the mentors of an organisation (reference schema).
    pub async fn count_mentors(&self, organisation_id: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM peer_mentor WHERE organisation_id = $1")
            .bind(organisation_id)
            .fetch_one(&self.pool)
            .await
            .doing("counting mentors")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[async_trait]
impl AppStore for Store {
    async fn changed_mentors(
        &self,
        organisation_id: &str,
        since: Option<DateTime<Utc>>,
        after: Option<&ChangeCursor>,
        limit: u32,
    ) -> Result<Vec<(ChangeCursor, MentorSnapshot)>> {
        let (from, after_id) = match after {
            Some(cursor) => (ms(cursor.changed_at), cursor.id.clone()),
            None => (since.map_or(i64::MIN, ms), String::new()),
        };
        // A mentor changed when its row or any of its certifications did; the later time counts.
        let rows = sqlx::query(
            "SELECT id, changed_at FROM (
                 SELECT m.id AS id,
                        CASE WHEN c.latest IS NOT NULL AND c.latest > m.updated_at THEN c.latest ELSE m.updated_at END
                          AS changed_at
                 FROM peer_mentor m
                 LEFT JOIN (SELECT mentor_id, MAX(updated_at) AS latest FROM certification GROUP BY mentor_id) c
                   ON c.mentor_id = m.id
                 WHERE m.organisation_id = $1
             ) t
             WHERE changed_at > $2 OR (changed_at = $2 AND id > $3)
             ORDER BY changed_at, id
             LIMIT $4",
        )
        .bind(organisation_id)
        .bind(from)
        .bind(&after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("reading changed mentors")?;
        let mut cursors = Vec::with_capacity(rows.len());
        for row in &rows {
            cursors.push(ChangeCursor {
                id: row.text("id")?,
                changed_at: from_ms(row.int("changed_at")?),
            });
        }
        let ids: Vec<String> = cursors.iter().map(|c| c.id.clone()).collect();
        let snapshots = self.snapshots(organisation_id, &ids).await?;
        Ok(cursors.into_iter().zip(snapshots).collect())
    }

    async fn mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<MentorSnapshot>> {
        self.snapshots(organisation_id, ids).await
    }

    async fn all_mentors(
        &self,
        organisation_id: &str,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MentorSnapshot>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM peer_mentor WHERE organisation_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(organisation_id)
        .bind(after_id.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .doing("listing mentors")?;
        self.snapshots(organisation_id, &ids).await
    }

    async fn mentor_by_member_number(
        &self,
        organisation_id: &str,
        member_number: &str,
    ) -> Result<Option<MentorSnapshot>> {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM peer_mentor WHERE organisation_id = $1 AND member_number = $2")
                .bind(organisation_id)
                .bind(member_number)
                .fetch_optional(&self.pool)
                .await
                .doing("finding a mentor by member number")?;
        match id {
            Some(id) => Ok(self.snapshots(organisation_id, &[id]).await?.into_iter().next()),
            None => Ok(None),
        }
    }

    async fn mentors_by_member_numbers(
        &self,
        organisation_id: &str,
        member_numbers: &[String],
    ) -> Result<Vec<MentorSnapshot>> {
        let mut ids = Vec::new();
        for chunk in member_numbers.chunks(500) {
            let list = placeholders(2, chunk.len());
            let mut query = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT id FROM peer_mentor WHERE organisation_id = $1 AND member_number IN ({list})"
            )))
            .bind(organisation_id);
            for number in chunk {
                query = query.bind(number);
            }
            let found: Vec<String> = query
                .fetch_all(&self.pool)
                .await
                .doing("finding mentors by member number")?;
            ids.extend(found);
        }
        self.snapshots(organisation_id, &ids).await
    }

    async fn existing_mentors(&self, organisation_id: &str, ids: &[String]) -> Result<Vec<String>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let list = placeholders(2, chunk.len());
            let mut query = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT id FROM peer_mentor WHERE organisation_id = $1 AND id IN ({list})"
            )))
            .bind(organisation_id);
            for id in chunk {
                query = query.bind(id);
            }
            let ids: Vec<String> = query.fetch_all(&self.pool).await.doing("checking mentors")?;
            found.extend(ids);
        }
        Ok(found)
    }

    async fn apply_pull(&self, organisation_id: &str, mentor_id: &str, update: &PullUpdate) -> Result<PullOutcome> {
        let mut tx = self.pool.begin().await.doing("starting a transaction")?;
        // A write first, so the row (PostgreSQL) or the database (SQLite) is locked from the check to the commit
        // and an app edit cannot slip in between; it changes nothing and checks the guard at once.
        let guard = match update.if_updated_at {
            Some(seen) => sqlx::query(
                "UPDATE peer_mentor SET updated_at = updated_at WHERE id = $1 AND organisation_id = $2
                 AND updated_at = $3",
            )
            .bind(mentor_id)
            .bind(organisation_id)
            .bind(ms(seen)),
            None => {
                sqlx::query("UPDATE peer_mentor SET updated_at = updated_at WHERE id = $1 AND organisation_id = $2")
                    .bind(mentor_id)
                    .bind(organisation_id)
            }
        };
        let guarded = guard.execute(&mut *tx).await.doing("checking a mentor")?;
        if guarded.rows_affected() == 0 {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM peer_mentor WHERE id = $1 AND organisation_id = $2")
                    .bind(mentor_id)
                    .bind(organisation_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .doing("checking a mentor")?;
            return match exists {
                None => Err(Error::NotFound {
                    what: format!("mentor {mentor_id} of organisation {organisation_id}"),
                }),
                Some(_) => Ok(PullOutcome::Stale),
            };
        }
        if let Some(number) = &update.member_number {
            let result = sqlx::query("UPDATE peer_mentor SET member_number = $1 WHERE id = $2")
                .bind(number.clone())
                .bind(mentor_id)
                .execute(&mut *tx)
                .await;
            if let Err(e) = result {
                return Err(refused_if_constraint(
                    e,
                    "Dynamics gave this member a member number that another mentor in the app already has; correct \
                     one of the two member numbers",
                    "writing a pulled member number",
                ));
            }
        }
        // Each given field is set; the others keep their values. updated_at is left alone on purpose.
        let text_fields = [
            ("given_name", &update.given_name),
            ("family_name", &update.family_name),
            ("email", &update.email),
            ("phone", &update.phone),
        ];
        for (column, value) in text_fields {
            if let Some(value) = value {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE peer_mentor SET {column} = $1 WHERE id = $2"
                )))
                .bind(value.clone())
                .bind(mentor_id)
                .execute(&mut *tx)
                .await
                .doing("writing pulled contact fields")?;
            }
        }
        let touches_membership = update.membership_status.is_some()
            || update.membership_type.is_some()
            || update.paid_until.is_some()
            || update.contact_state.is_some()
            || update.source_modified_on.is_some();
        if touches_membership {
            sqlx::query("INSERT INTO membership (mentor_id) VALUES ($1) ON CONFLICT (mentor_id) DO NOTHING")
                .bind(mentor_id)
                .execute(&mut *tx)
                .await
                .doing("creating a membership")?;
            let membership_fields = [
                ("status", update.membership_status.clone()),
                ("membership_type", update.membership_type.clone()),
                ("paid_until", update.paid_until.map(|d| d.map(date_text))),
                ("contact_state", update.contact_state.clone()),
            ];
            for (column, value) in membership_fields {
                if let Some(value) = value {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE membership SET {column} = $1 WHERE mentor_id = $2"
                    )))
                    .bind(value)
                    .bind(mentor_id)
                    .execute(&mut *tx)
                    .await
                    .doing("writing pulled membership")?;
                }
            }
            if let Some(at) = update.source_modified_on {
                sqlx::query("UPDATE membership SET source_modified_on = $1 WHERE mentor_id = $2")
                    .bind(ms(at))
                    .bind(mentor_id)
                    .execute(&mut *tx)
                    .await
                    .doing("writing pulled membership")?;
            }
        }
        tx.commit().await.doing("committing pulled values")?;
        Ok(PullOutcome::Applied)
    }

    async fn set_dynamics_contact(&self, organisation_id: &str, mentor_id: &str, contact: Option<Uuid>) -> Result<()> {
        sqlx::query("UPDATE peer_mentor SET dynamics_contact_id = $1 WHERE id = $2 AND organisation_id = $3")
            .bind(contact.map(|c| c.to_string()))
            .bind(mentor_id)
            .bind(organisation_id)
            .execute(&self.pool)
            .await
            .doing("linking a mentor to a contact")?;
        Ok(())
    }
}
