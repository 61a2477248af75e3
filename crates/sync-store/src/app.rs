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
///
/// With the `mock` feature, `MockAppStore` is a mockall mock of this trait for a backend's own unit tests.
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

    /// [`AppStore::apply_pull`] for many mentors at once (the engine sends a page's worth), one result per update
    /// in order: a refused or missing mentor is its own `Err`, and the others are still written. An `Err` for the
    /// whole call fails the run. The default calls `apply_pull` for each; implement it to save round trips.
    async fn apply_pulls(
        &self,
        organisation_id: &str,
        updates: &[(String, PullUpdate)],
    ) -> Result<Vec<Result<PullOutcome>>> {
        let mut out = Vec::with_capacity(updates.len());
        for (mentor_id, update) in updates {
            match self.apply_pull(organisation_id, mentor_id, update).await {
                Err(e) if !e.is_record_level() => return Err(e),
                result => out.push(result),
            }
        }
        Ok(out)
    }

    /// [`AppStore::set_dynamics_contact`] for many mentors at once. The default calls it for each.
    async fn set_dynamics_contacts(&self, organisation_id: &str, contacts: &[(String, Option<Uuid>)]) -> Result<()> {
        for (mentor_id, contact) in contacts {
            self.set_dynamics_contact(organisation_id, mentor_id, *contact).await?;
        }
        Ok(())
    }
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

/// Mentors per statement when pulled values are written in bulk.
const APPLY_CHUNK: usize = 50;

/// The mentor columns a pull writes.
const PULLED_MENTOR_COLUMNS: [&str; 5] = ["given_name", "family_name", "email", "phone", "member_number"];

fn pulled_mentor_value<'u>(update: &'u PullUpdate, column: &str) -> Option<&'u Option<String>> {
    match column {
        "given_name" => update.given_name.as_ref(),
        "family_name" => update.family_name.as_ref(),
        "email" => update.email.as_ref(),
        "phone" => update.phone.as_ref(),
        "member_number" => update.member_number.as_ref(),
        _ => None,
    }
}

/// A value to bind in a statement built for a chunk of mentors.
#[derive(Debug, Clone)]
enum Bind {
    Text(Option<String>),
    Int(i64),
}

/// The membership columns a pull writes for one update, in column order.
fn pulled_membership(update: &PullUpdate) -> Vec<(&'static str, Bind)> {
    let mut out = Vec::new();
    let text = [
        ("contact_state", &update.contact_state),
        ("membership_type", &update.membership_type),
        ("status", &update.membership_status),
    ];
    for (column, value) in text {
        if let Some(value) = value {
            out.push((column, Bind::Text(value.clone())));
        }
    }
    if let Some(paid_until) = update.paid_until {
        out.push(("paid_until", Bind::Text(paid_until.map(date_text))));
    }
    if let Some(at) = update.source_modified_on {
        out.push(("source_modified_on", Bind::Int(ms(at))));
    }
    out.sort_by_key(|(column, _)| *column);
    out
}

/// The statement text the backend of `tx` takes (see [`Store::sql`]).
fn tx_sql(tx: &sqlx::Transaction<'_, sqlx::Any>, text: String) -> String {
    if tx.backend_name() == "PostgreSQL" {
        text
    } else {
        crate::db::anonymous_parameters(&text)
    }
}

/// Writes the pulled values of up to [`APPLY_CHUNK`] distinct mentors inside `tx`: one guarded `UPDATE ...
/// RETURNING id` for their rows (a mentor whose `updated_at` moved since the engine read it is not written: stale),
/// then the memberships of the mentors written, one statement per set of columns.
async fn apply_chunk(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    organisation_id: &str,
    chunk: &[(String, PullUpdate)],
) -> Result<Vec<Result<PullOutcome>>> {
    let mut sets = vec!["updated_at = updated_at".to_owned()];
    let mut binds: Vec<Bind> = Vec::new();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    for column in PULLED_MENTOR_COLUMNS {
        let given: Vec<(&String, &Option<String>)> = chunk
            .iter()
            .filter_map(|(id, update)| pulled_mentor_value(update, column).map(|v| (id, v)))
            .collect();
        if given.is_empty() {
            continue;
        }
        let mut case = format!("{column} = CASE id");
        for (id, value) in given {
            let (when, then) = (next(), next());
            case.push_str(&format!(" WHEN {when} THEN {then}"));
            binds.push(Bind::Text(Some(id.clone())));
            binds.push(Bind::Text(value.clone()));
        }
        case.push_str(&format!(" ELSE {column} END"));
        sets.push(case);
    }
    let org = next();
    binds.push(Bind::Text(Some(organisation_id.to_owned())));
    let ids: Vec<String> = chunk
        .iter()
        .map(|(id, _)| {
            binds.push(Bind::Text(Some(id.clone())));
            next()
        })
        .collect();
    let mut guard = String::new();
    let guarded: Vec<(&String, i64)> = chunk
        .iter()
        .filter_map(|(id, update)| update.if_updated_at.map(|at| (id, ms(at))))
        .collect();
    if !guarded.is_empty() {
        guard.push_str(" AND updated_at = CASE id");
        for (id, at) in guarded {
            let (when, then) = (next(), next());
            guard.push_str(&format!(" WHEN {when} THEN {then}"));
            binds.push(Bind::Text(Some(id.clone())));
            binds.push(Bind::Int(at));
        }
        guard.push_str(" ELSE updated_at END");
    }
    let sql = format!(
        "UPDATE peer_mentor SET {} WHERE organisation_id = {org} AND id IN ({}){guard} RETURNING id",
        sets.join(", "),
        ids.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(tx_sql(tx, sql))).persistent(false);
    for bind in binds {
        query = match bind {
            Bind::Text(value) => query.bind(value),
            Bind::Int(value) => query.bind(value),
        };
    }
    let written: std::collections::BTreeSet<String> = match query.fetch_all(&mut **tx).await {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) => {
            return Err(refused_if_constraint(
                e,
                "Dynamics gave this member a member number that another mentor in the app already has; correct \
                 one of the two member numbers",
                "writing pulled contact fields",
            ));
        }
    };
    // The memberships of the mentors written, one statement per set of columns.
    let mut groups: BTreeMap<Vec<&'static str>, Vec<(&String, Vec<Bind>)>> = BTreeMap::new();
    for (id, update) in chunk.iter().filter(|(id, _)| written.contains(id)) {
        let values = pulled_membership(update);
        if values.is_empty() {
            continue;
        }
        let columns: Vec<&'static str> = values.iter().map(|(c, _)| *c).collect();
        groups
            .entry(columns)
            .or_default()
            .push((id, values.into_iter().map(|(_, v)| v).collect()));
    }
    for (columns, rows) in groups {
        let width = columns.len() + 1;
        let values: Vec<String> = (0..rows.len())
            .map(|r| {
                let row: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
                format!("({})", row.join(", "))
            })
            .collect();
        let updates: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        let sql = format!(
            "INSERT INTO membership (mentor_id, {}) VALUES {} ON CONFLICT (mentor_id) DO UPDATE SET {}",
            columns.join(", "),
            values.join(", "),
            updates.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(tx_sql(tx, sql))).persistent(false);
        for (id, values) in rows {
            query = query.bind(id.clone());
            for value in values {
                query = match value {
                    Bind::Text(text) => query.bind(text),
                    Bind::Int(at) => query.bind(at),
                };
            }
        }
        query.execute(&mut **tx).await.doing("writing pulled memberships")?;
    }
    // The mentors not written changed since they were read (stale), or are not there.
    let missing: Vec<&String> = chunk
        .iter()
        .map(|(id, _)| id)
        .filter(|id| !written.contains(*id))
        .collect();
    let mut present = std::collections::BTreeSet::new();
    if !missing.is_empty() {
        let sql = format!(
            "SELECT id FROM peer_mentor WHERE organisation_id = $1 AND id IN ({})",
            placeholders(2, missing.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(tx_sql(tx, sql)))
            .persistent(false)
            .bind(organisation_id);
        for id in &missing {
            query = query.bind((*id).clone());
        }
        present.extend(query.fetch_all(&mut **tx).await.doing("checking mentors")?);
    }
    Ok(chunk
        .iter()
        .map(|(id, _)| {
            if written.contains(id) {
                Ok(PullOutcome::Applied)
            } else if present.contains(id) {
                Ok(PullOutcome::Stale)
            } else {
                Err(Error::NotFound {
                    what: format!("mentor {id} of organisation {organisation_id}"),
                })
            }
        })
        .collect())
}

/// Writes one mentor's pulled values inside `tx`: one statement for the mentor's row (which also checks the
/// `updated_at` guard and locks the row, or on SQLite the database, until the commit, so an app edit cannot slip in
/// between) and one for the membership.
async fn apply_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    organisation_id: &str,
    mentor_id: &str,
    update: &PullUpdate,
) -> Result<PullOutcome> {
    let text_fields: [(&str, &Option<Option<String>>); 5] = [
        ("given_name", &update.given_name),
        ("family_name", &update.family_name),
        ("email", &update.email),
        ("phone", &update.phone),
        ("member_number", &update.member_number),
    ];
    let given: Vec<(&str, Option<String>)> = text_fields
        .iter()
        .filter_map(|(column, value)| value.as_ref().map(|v| (*column, v.clone())))
        .collect();
    // `updated_at = updated_at` writes nothing but takes the lock when no column changes.
    let mut sets: Vec<String> = vec!["updated_at = updated_at".to_owned()];
    for (i, (column, _)) in given.iter().enumerate() {
        sets.push(format!("{column} = ${}", i + 3));
    }
    let guard = update
        .if_updated_at
        .map(|_| format!(" AND updated_at = ${}", given.len() + 3))
        .unwrap_or_default();
    let sql = format!(
        "UPDATE peer_mentor SET {} WHERE id = $1 AND organisation_id = $2{guard}",
        sets.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(mentor_id).bind(organisation_id);
    for (_, value) in &given {
        query = query.bind(value.clone());
    }
    if let Some(seen) = update.if_updated_at {
        query = query.bind(ms(seen));
    }
    let written = match query.execute(&mut **tx).await {
        Ok(done) => done.rows_affected(),
        Err(e) => {
            return Err(refused_if_constraint(
                e,
                "Dynamics gave this member a member number that another mentor in the app already has; correct \
                 one of the two member numbers",
                "writing pulled contact fields",
            ));
        }
    };
    if written == 0 {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM peer_mentor WHERE id = $1 AND organisation_id = $2")
                .bind(mentor_id)
                .bind(organisation_id)
                .fetch_optional(&mut **tx)
                .await
                .doing("checking a mentor")?;
        return match exists {
            None => Err(Error::NotFound {
                what: format!("mentor {mentor_id} of organisation {organisation_id}"),
            }),
            Some(_) => Ok(PullOutcome::Stale),
        };
    }
    let text: [(&str, Option<Option<String>>); 4] = [
        ("status", update.membership_status.clone()),
        ("membership_type", update.membership_type.clone()),
        ("paid_until", update.paid_until.map(|d| d.map(date_text))),
        ("contact_state", update.contact_state.clone()),
    ];
    let given: Vec<(&str, Option<String>)> = text
        .into_iter()
        .filter_map(|(column, value)| value.map(|v| (column, v)))
        .collect();
    if given.is_empty() && update.source_modified_on.is_none() {
        return Ok(PullOutcome::Applied);
    }
    // Insert with the given columns, or set only those on the existing row.
    let mut columns: Vec<&str> = given.iter().map(|(c, _)| *c).collect();
    if update.source_modified_on.is_some() {
        columns.push("source_modified_on");
    }
    let values: Vec<String> = (0..columns.len()).map(|i| format!("${}", i + 2)).collect();
    let updates: Vec<String> = columns.iter().map(|c| format!("{c} = excluded.{c}")).collect();
    let sql = format!(
        "INSERT INTO membership (mentor_id, {}) VALUES ($1, {}) ON CONFLICT (mentor_id) DO UPDATE SET {}",
        columns.join(", "),
        values.join(", "),
        updates.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(mentor_id);
    for (_, value) in given {
        query = query.bind(value);
    }
    if let Some(at) = update.source_modified_on {
        query = query.bind(ms(at));
    }
    query.execute(&mut **tx).await.doing("writing pulled membership")?;
    Ok(PullOutcome::Applied)
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
/// Sets a mentor's `changed_at`: the later of its `updated_at` and its certifications'.
async fn note_change(tx: &mut sqlx::Transaction<'_, sqlx::Any>, mentor_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE peer_mentor SET changed_at = COALESCE(
             (SELECT CASE WHEN MAX(c.updated_at) > peer_mentor.updated_at THEN MAX(c.updated_at) END
              FROM certification c WHERE c.mentor_id = peer_mentor.id),
             updated_at)
         WHERE id = $1",
    )
    .bind(mentor_id)
    .execute(&mut **tx)
    .await
    .doing("noting when a mentor changed")?;
    Ok(())
}

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
            let mut query = sqlx::query(AssertSqlSafe(self.sql(format!(
                "SELECT {MENTOR_COLUMNS} FROM peer_mentor WHERE organisation_id = $1 AND id IN ({list})"
            ))))
            .persistent(false)
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
            let mut query = sqlx::query(AssertSqlSafe(self.sql(format!(
                "SELECT id, mentor_id, kind, issued_on, expires_on, revoked_at, updated_at FROM certification
                 WHERE mentor_id IN ({list}) ORDER BY mentor_id, expires_on, id"
            ))))
            .persistent(false);
            for id in &found {
                query = query.bind(*id);
            }
            let certifications = query.fetch_all(&self.pool).await.doing("reading certifications")?;
            let mut query = sqlx::query(AssertSqlSafe(self.sql(format!(
                "SELECT mentor_id, status, membership_type, paid_until, contact_state, source_modified_on
                 FROM membership WHERE mentor_id IN ({list})"
            ))))
            .persistent(false);
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
        let mut tx = self.begin_app_write().await?;
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
        .execute(&mut *tx)
        .await
        .doing("saving a mentor")?;
        note_change(&mut tx, &mentor.id).await?;
        tx.commit().await.doing("saving a mentor")?;
        Ok(())
    }

    /// Creates or replaces a certification (reference schema; the app's own writes).
    pub async fn upsert_certification(&self, certification: &Certification) -> Result<()> {
        let mut tx = self.begin_app_write().await?;
        let before: Option<String> = sqlx::query_scalar("SELECT mentor_id FROM certification WHERE id = $1")
            .bind(&certification.id)
            .fetch_optional(&mut *tx)
            .await
            .doing("reading a certification")?;
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
        .execute(&mut *tx)
        .await
        .doing("saving a certification")?;
        // A certification moved to another mentor changes both; they are updated in the order of their ids, one
        // fixed order for every writer.
        let mut changed: Vec<&str> = [Some(certification.mentor_id.as_str()), before.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        changed.sort_unstable();
        changed.dedup();
        for mentor_id in changed {
            note_change(&mut tx, mentor_id).await?;
        }
        tx.commit().await.doing("saving a certification")?;
        Ok(())
    }

    /// Removes a mentor with their certifications, membership and postings (reference schema; the app's own write,
    /// e.g. a mentor who leaves). The sync hides their contact from the public site on its next run.
    pub async fn delete_mentor(&self, organisation_id: &str, id: &str) -> Result<()> {
        let mut tx = self.begin_app_write().await?;
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
        // A mentor changed when its row or any of its certifications did; the later time counts (`changed_at`, kept
        // by the writes above), read through the index on (organisation_id, changed_at, id).
        let rows = sqlx::query(
            "SELECT id, changed_at FROM peer_mentor
             WHERE organisation_id = $1 AND (changed_at, id) > ($2, $3)
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
            let mut query = sqlx::query_scalar(AssertSqlSafe(self.sql(format!(
                "SELECT id FROM peer_mentor WHERE organisation_id = $1 AND member_number IN ({list})"
            ))))
            .persistent(false)
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
            let mut query = sqlx::query_scalar(AssertSqlSafe(self.sql(format!(
                "SELECT id FROM peer_mentor WHERE organisation_id = $1 AND id IN ({list})"
            ))))
            .persistent(false)
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
        let mut tx = self.begin_app_write().await?;
        let outcome = apply_one(&mut tx, organisation_id, mentor_id, update).await?;
        tx.commit().await.doing("committing pulled values")?;
        Ok(outcome)
    }

    async fn apply_pulls(
        &self,
        organisation_id: &str,
        updates: &[(String, PullUpdate)],
    ) -> Result<Vec<Result<PullOutcome>>> {
        // One transaction for the page, a few statements per 50 mentors. Should one mentor's update be refused
        // (rare), that transaction is rolled back and each update is applied in its own, so only that one fails.
        let distinct: std::collections::BTreeSet<&str> = updates.iter().map(|(id, _)| id.as_str()).collect();
        if distinct.len() == updates.len() {
            let mut tx = self.begin_app_write().await?;
            let mut out = Vec::with_capacity(updates.len());
            let mut refused = false;
            for chunk in updates.chunks(APPLY_CHUNK) {
                match apply_chunk(&mut tx, organisation_id, chunk).await {
                    Ok(outcomes) => out.extend(outcomes),
                    Err(e) if e.is_record_level() => {
                        refused = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !refused {
                tx.commit().await.doing("committing pulled values")?;
                return Ok(out);
            }
            tx.rollback().await.doing("rolling back pulled values")?;
        }
        let mut out = Vec::with_capacity(updates.len());
        for (mentor_id, update) in updates {
            match self.apply_pull(organisation_id, mentor_id, update).await {
                Err(e) if !e.is_record_level() => return Err(e),
                result => out.push(result),
            }
        }
        Ok(out)
    }

    async fn set_dynamics_contact(&self, organisation_id: &str, mentor_id: &str, contact: Option<Uuid>) -> Result<()> {
        self.set_dynamics_contacts(organisation_id, &[(mentor_id.to_owned(), contact)])
            .await
    }

    async fn set_dynamics_contacts(&self, organisation_id: &str, contacts: &[(String, Option<Uuid>)]) -> Result<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_app_write().await?;
        // One statement per 100 mentors: `CASE id WHEN .. THEN .. END`.
        for chunk in contacts.chunks(100) {
            let cases: Vec<String> = (0..chunk.len())
                .map(|i| format!("WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2))
                .collect();
            let first = 2 * chunk.len() + 1;
            let ids = placeholders(first + 1, chunk.len());
            let sql = format!(
                "UPDATE peer_mentor SET dynamics_contact_id = CASE id {} END WHERE organisation_id = ${first} AND id IN ({ids})",
                cases.join(" ")
            );
            let mut query = sqlx::query(AssertSqlSafe(self.sql(sql))).persistent(false);
            for (mentor_id, contact) in chunk {
                query = query.bind(mentor_id.clone()).bind(contact.map(|c| c.to_string()));
            }
            query = query.bind(organisation_id);
            for (mentor_id, _) in chunk {
                query = query.bind(mentor_id.clone());
            }
            query.execute(&mut *tx).await.doing("linking mentors to contacts")?;
        }
        tx.commit().await.doing("committing contact links")?;
        Ok(())
    }
}
