//! The backend's own tables, shaped as a real app would have them rather than as the reference schema: `users`
//! (with the membership the sync pulls) and `certificates` (state `gyldig` or `tilbakekalt`), and the durable queue
//! of mentors to push at once. [`BackendStore`] implements [`AppStore`] over them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use sync_store::{
    AppStore, Certification, ChangeCursor, Error, Membership, Mentor, MentorSnapshot, PullOutcome, PullUpdate, Result,
};
use uuid::Uuid;

/// The backend's schema. Idempotent: run at every start.
const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY,
        org TEXT NOT NULL,
        medlemsnr TEXT,
        first_name TEXT,
        last_name TEXT,
        email TEXT,
        mobile TEXT,
        coordinator TEXT,
        crm_contact TEXT,
        changed_ms BIGINT NOT NULL,
        membership_status TEXT,
        membership_type TEXT,
        paid_until TEXT,
        contact_state TEXT,
        membership_modified_ms BIGINT
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS users_medlemsnr ON users (org, medlemsnr)",
    "CREATE TABLE IF NOT EXISTS certificates (
        cert_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        valid_from TEXT NOT NULL,
        valid_to TEXT NOT NULL,
        state TEXT NOT NULL,
        revoked_ms BIGINT,
        changed_ms BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS push_queue (
        user_id TEXT PRIMARY KEY,
        org TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_ms BIGINT NOT NULL,
        last_error TEXT
    )",
];

/// A user of the app as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The app's id.
    pub user_id: String,
    /// The organisation (`hlf`, ...).
    pub org: String,
    /// The HLF member number.
    pub medlemsnr: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Mobile phone.
    pub mobile: Option<String>,
    /// The coordinator's e-mail address.
    pub coordinator: Option<String>,
    /// When the app last changed the user.
    pub changed: DateTime<Utc>,
}

/// A peer-mentor certificate as the backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The app's id.
    pub cert_id: String,
    /// Its holder.
    pub user_id: String,
    /// The kind.
    pub kind: String,
    /// First valid day.
    pub valid_from: NaiveDate,
    /// Last valid day.
    pub valid_to: NaiveDate,
    /// When it was revoked (state `tilbakekalt`); `None` while `gyldig`.
    pub revoked: Option<DateTime<Utc>>,
    /// When the app last changed it.
    pub changed: DateTime<Utc>,
}

/// A mentor waiting to be pushed to Dynamics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPush {
    /// The mentor.
    pub user_id: String,
    /// Their organisation.
    pub org: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// The backend's database.
#[derive(Debug, Clone)]
pub struct BackendStore {
    pool: AnyPool,
    postgres: bool,
}

fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_ms(value: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(value).single().unwrap_or_default()
}

fn db(doing: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |source| Error::Database {
        doing: doing.to_owned(),
        source,
    }
}

fn date(text: &str) -> Result<NaiveDate> {
    text.parse().map_err(|_| Error::Corrupt {
        table: "certificates",
        column: "valid_to",
    })
}

impl BackendStore {
    /// Opens (and sets up) the database at `url` (`sqlite://PATH` or `postgres://...`).
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres");
        let url = if postgres || url.contains('?') {
            url.to_owned()
        } else {
            format!("{url}?mode=rwc")
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 5 } else { 1 })
            .connect(&url)
            .await
            .map_err(db("connecting to the backend database"))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(db("creating the backend tables"))?;
        }
        Ok(Self { pool, postgres })
    }

    /// `$1, $2, ...` from `first`, `n` of them.
    fn list(first: usize, n: usize) -> String {
        (first..first + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The app's own write of a user (registration, profile edit): `changed` moves.
    pub async fn upsert_user(&self, user: &User) -> Result<()> {
        sqlx::query(
            "INSERT INTO users (user_id, org, medlemsnr, first_name, last_name, email, mobile, coordinator, changed_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (user_id) DO UPDATE SET org = excluded.org, medlemsnr = excluded.medlemsnr,
               first_name = excluded.first_name, last_name = excluded.last_name, email = excluded.email,
               mobile = excluded.mobile, coordinator = excluded.coordinator, changed_ms = excluded.changed_ms",
        )
        .bind(&user.user_id)
        .bind(&user.org)
        .bind(&user.medlemsnr)
        .bind(&user.first_name)
        .bind(&user.last_name)
        .bind(&user.email)
        .bind(&user.mobile)
        .bind(&user.coordinator)
        .bind(ms(user.changed))
        .execute(&self.pool)
        .await
        .map_err(db("writing a user"))?;
        Ok(())
    }

    /// The app's own write of a certificate (issue, renew, revoke).
    pub async fn upsert_certificate(&self, certificate: &Certificate) -> Result<()> {
        let state = if certificate.revoked.is_some() {
            "tilbakekalt"
        } else {
            "gyldig"
        };
        sqlx::query(
            "INSERT INTO certificates (cert_id, user_id, kind, valid_from, valid_to, state, revoked_ms, changed_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (cert_id) DO UPDATE SET user_id = excluded.user_id, kind = excluded.kind,
               valid_from = excluded.valid_from, valid_to = excluded.valid_to, state = excluded.state,
               revoked_ms = excluded.revoked_ms, changed_ms = excluded.changed_ms",
        )
        .bind(&certificate.cert_id)
        .bind(&certificate.user_id)
        .bind(&certificate.kind)
        .bind(certificate.valid_from.to_string())
        .bind(certificate.valid_to.to_string())
        .bind(state)
        .bind(certificate.revoked.map(ms))
        .bind(ms(certificate.changed))
        .execute(&self.pool)
        .await
        .map_err(db("writing a certificate"))?;
        Ok(())
    }

    /// The certificates a user holds.
    pub async fn certificates_of(&self, user_id: &str) -> Result<Vec<Certificate>> {
        let rows = sqlx::query("SELECT * FROM certificates WHERE user_id = $1 ORDER BY cert_id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading certificates"))?;
        rows.iter().map(certificate_from).collect()
    }

    /// The organisation of a user, when it exists.
    pub async fn org_of(&self, user_id: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT org FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a user"))
    }

    /// Queues a mentor for an immediate push (kept until Dynamics has it; a second event for the same mentor while
    /// one waits makes it due now).
    pub async fn enqueue_push(&self, org: &str, user_id: &str, now: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO push_queue (user_id, org, attempts, next_ms) VALUES ($1, $2, 0, $3)
             ON CONFLICT (user_id) DO UPDATE SET next_ms = excluded.next_ms",
        )
        .bind(user_id)
        .bind(org)
        .bind(ms(now))
        .execute(&self.pool)
        .await
        .map_err(db("queueing a push"))?;
        Ok(())
    }

    /// Pushes due at `now`, oldest first.
    pub async fn due_pushes(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<QueuedPush>> {
        let rows = sqlx::query(
            "SELECT user_id, org, attempts FROM push_queue WHERE next_ms <= $1 ORDER BY next_ms, user_id LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the push queue"))?;
        rows.iter()
            .map(|row| {
                Ok(QueuedPush {
                    user_id: row.try_get("user_id").map_err(db("reading the push queue"))?,
                    org: row.try_get("org").map_err(db("reading the push queue"))?,
                    attempts: u32::try_from(
                        row.try_get::<i64, _>("attempts")
                            .map_err(db("reading the push queue"))?,
                    )
                    .unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// The earliest time a queued push is due, if any waits.
    pub async fn next_push_due(&self) -> Result<Option<DateTime<Utc>>> {
        let next: Option<i64> = sqlx::query_scalar("SELECT MIN(next_ms) FROM push_queue")
            .fetch_one(&self.pool)
            .await
            .map_err(db("reading the push queue"))?;
        Ok(next.map(from_ms))
    }

    /// A push went through: forgotten, unless a newer event came meanwhile (`queued_due` is the due time it had).
    pub async fn push_done(&self, user_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM push_queue WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db("clearing a push"))?;
        Ok(())
    }

    /// A push failed: tried again at `next`, with the reason kept for the operator.
    pub async fn push_failed(&self, user_id: &str, next: DateTime<Utc>, reason: &str) -> Result<()> {
        sqlx::query("UPDATE push_queue SET attempts = attempts + 1, next_ms = $1, last_error = $2 WHERE user_id = $3")
            .bind(ms(next))
            .bind(reason)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(db("rescheduling a push"))?;
        Ok(())
    }

    /// How many pushes wait.
    pub async fn queued_pushes(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM push_queue")
            .fetch_one(&self.pool)
            .await
            .map_err(db("counting the push queue"))?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    async fn snapshots(&self, org: &str, ids: &[String]) -> Result<Vec<MentorSnapshot>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(400) {
            let sql = format!(
                "SELECT * FROM users WHERE org = $1 AND user_id IN ({})",
                Self::list(2, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql)).bind(org);
            for id in chunk {
                query = query.bind(id);
            }
            let users = query.fetch_all(&self.pool).await.map_err(db("reading users"))?;
            let sql = format!(
                "SELECT * FROM certificates WHERE user_id IN ({}) ORDER BY cert_id",
                Self::list(1, chunk.len())
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(id);
            }
            let mut certificates: BTreeMap<String, Vec<Certification>> = BTreeMap::new();
            for row in query.fetch_all(&self.pool).await.map_err(db("reading certificates"))? {
                let certificate = certificate_from(&row)?;
                certificates
                    .entry(certificate.user_id.clone())
                    .or_default()
                    .push(certification(certificate));
            }
            let mut by_id = BTreeMap::new();
            for row in &users {
                let snapshot = snapshot_from(row, &mut certificates)?;
                by_id.insert(snapshot.mentor.id.clone(), snapshot);
            }
            // In the order asked for.
            out.extend(chunk.iter().filter_map(|id| by_id.remove(id)));
        }
        Ok(out)
    }

    async fn ids(&self, sql: String, org: &str, values: &[String]) -> Result<Vec<String>> {
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql)).bind(org);
        for value in values {
            query = query.bind(value);
        }
        query.fetch_all(&self.pool).await.map_err(db("finding users"))
    }

    fn is_unique_violation(&self, e: &sqlx::Error) -> bool {
        match e {
            sqlx::Error::Database(d) => {
                matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation)
                    || d.message().contains("UNIQUE constraint failed")
                    || (self.postgres && d.code().as_deref() == Some("23505"))
            }
            _ => false,
        }
    }
}

fn certificate_from(row: &AnyRow) -> Result<Certificate> {
    let get = |column: &str| row.try_get::<String, _>(column).map_err(db("reading a certificate"));
    let state = get("state")?;
    let revoked_ms: Option<i64> = row.try_get("revoked_ms").map_err(db("reading a certificate"))?;
    Ok(Certificate {
        cert_id: get("cert_id")?,
        user_id: get("user_id")?,
        kind: get("kind")?,
        valid_from: date(&get("valid_from")?)?,
        valid_to: date(&get("valid_to")?)?,
        revoked: (state == "tilbakekalt").then(|| from_ms(revoked_ms.unwrap_or_default())),
        changed: from_ms(row.try_get("changed_ms").map_err(db("reading a certificate"))?),
    })
}

fn certification(certificate: Certificate) -> Certification {
    Certification {
        id: certificate.cert_id,
        mentor_id: certificate.user_id,
        kind: certificate.kind,
        issued_on: certificate.valid_from,
        expires_on: certificate.valid_to,
        revoked_at: certificate.revoked,
        updated_at: certificate.changed,
    }
}

fn snapshot_from(row: &AnyRow, certificates: &mut BTreeMap<String, Vec<Certification>>) -> Result<MentorSnapshot> {
    let text = |column: &str| row.try_get::<Option<String>, _>(column).map_err(db("reading a user"));
    let user_id: String = row.try_get("user_id").map_err(db("reading a user"))?;
    let contact = text("crm_contact")?
        .map(|t| {
            t.parse::<Uuid>().map_err(|_| Error::Corrupt {
                table: "users",
                column: "crm_contact",
            })
        })
        .transpose()?;
    let modified: Option<i64> = row.try_get("membership_modified_ms").map_err(db("reading a user"))?;
    let membership = Membership {
        status: text("membership_status")?,
        membership_type: text("membership_type")?,
        paid_until: text("paid_until")?.map(|d| date(&d)).transpose()?,
        contact_state: text("contact_state")?,
        source_modified_on: modified.map(from_ms),
    };
    let pulled = membership != Membership::default();
    Ok(MentorSnapshot {
        certifications: certificates.remove(&user_id).unwrap_or_default(),
        mentor: Mentor {
            id: user_id,
            organisation_id: row.try_get("org").map_err(db("reading a user"))?,
            member_number: text("medlemsnr")?,
            given_name: text("first_name")?,
            family_name: text("last_name")?,
            email: text("email")?,
            phone: text("mobile")?,
            coordinator_email: text("coordinator")?,
            dynamics_contact_id: contact,
            updated_at: from_ms(row.try_get("changed_ms").map_err(db("reading a user"))?),
        },
        membership: pulled.then_some(membership),
    })
}

/// One value to bind in a pull's `UPDATE`.
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

#[async_trait]
impl AppStore for BackendStore {
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
        // A user changed when the row or any certificate did; the later time counts.
        let rows = sqlx::query(
            "SELECT user_id, changed FROM (
                 SELECT u.user_id AS user_id,
                        CASE WHEN c.latest IS NOT NULL AND c.latest > u.changed_ms THEN c.latest ELSE u.changed_ms END
                          AS changed
                 FROM users u
                 LEFT JOIN (SELECT user_id, MAX(changed_ms) AS latest FROM certificates GROUP BY user_id) c
                   ON c.user_id = u.user_id
                 WHERE u.org = $1
             ) t
             WHERE changed > $2 OR (changed = $3 AND user_id > $4)
             ORDER BY changed, user_id
             LIMIT $5",
        )
        .bind(organisation_id)
        .bind(from)
        .bind(from)
        .bind(&after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading changed users"))?;
        let mut cursors = Vec::with_capacity(rows.len());
        for row in &rows {
            cursors.push(ChangeCursor {
                id: row.try_get("user_id").map_err(db("reading changed users"))?,
                changed_at: from_ms(row.try_get("changed").map_err(db("reading changed users"))?),
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
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM users WHERE org = $1 AND user_id > $2 ORDER BY user_id LIMIT $3")
                .bind(organisation_id)
                .bind(after_id.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db("listing users"))?;
        self.snapshots(organisation_id, &ids).await
    }

    async fn mentor_by_member_number(
        &self,
        organisation_id: &str,
        member_number: &str,
    ) -> Result<Option<MentorSnapshot>> {
        Ok(self
            .mentors_by_member_numbers(organisation_id, &[member_number.to_owned()])
            .await?
            .pop())
    }

    async fn mentors_by_member_numbers(
        &self,
        organisation_id: &str,
        member_numbers: &[String],
    ) -> Result<Vec<MentorSnapshot>> {
        let mut ids = Vec::new();
        for chunk in member_numbers.chunks(400) {
            let sql = format!(
                "SELECT user_id FROM users WHERE org = $1 AND medlemsnr IN ({})",
                Self::list(2, chunk.len())
            );
            ids.extend(self.ids(sql, organisation_id, chunk).await?);
        }
        self.snapshots(organisation_id, &ids).await
    }

    async fn apply_pull(&self, organisation_id: &str, mentor_id: &str, update: &PullUpdate) -> Result<PullOutcome> {
        let mut sets = Vec::new();
        let mut values = Vec::new();
        let text = [
            ("first_name", &update.given_name),
            ("last_name", &update.family_name),
            ("email", &update.email),
            ("mobile", &update.phone),
            ("medlemsnr", &update.member_number),
            ("membership_status", &update.membership_status),
            ("membership_type", &update.membership_type),
            ("contact_state", &update.contact_state),
        ];
        for (column, value) in text {
            if let Some(value) = value {
                sets.push(column);
                values.push(Value::Text(value.clone()));
            }
        }
        if let Some(paid_until) = update.paid_until {
            sets.push("paid_until");
            values.push(Value::Text(paid_until.map(|d| d.to_string())));
        }
        if let Some(at) = update.source_modified_on {
            sets.push("membership_modified_ms");
            values.push(Value::Int(Some(ms(at))));
        }
        // `changed_ms = changed_ms`: the sync's writes never move the app's change time.
        let mut assignments = vec!["changed_ms = changed_ms".to_owned()];
        for (i, column) in sets.iter().enumerate() {
            assignments.push(format!("{column} = ${}", i + 1));
        }
        let n = sets.len();
        let guard = if update.if_updated_at.is_some() {
            format!(" AND changed_ms = ${}", n + 3)
        } else {
            String::new()
        };
        let sql = format!(
            "UPDATE users SET {} WHERE user_id = ${} AND org = ${}{guard}",
            assignments.join(", "),
            n + 1,
            n + 2
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in values {
            query = match value {
                Value::Text(v) => query.bind(v),
                Value::Int(v) => query.bind(v),
            };
        }
        query = query.bind(mentor_id).bind(organisation_id);
        if let Some(seen) = update.if_updated_at {
            query = query.bind(ms(seen));
        }
        let written = match query.execute(&self.pool).await {
            Ok(done) => done.rows_affected(),
            Err(e) if self.is_unique_violation(&e) => {
                return Err(Error::Refused {
                    reason: "Dynamics gave this member a member number another user of the organisation has; correct \
                             one of the two"
                        .to_owned(),
                });
            }
            Err(e) => return Err(db("writing pulled values")(e)),
        };
        if written > 0 {
            return Ok(PullOutcome::Applied);
        }
        let exists: Option<String> = sqlx::query_scalar("SELECT user_id FROM users WHERE user_id = $1 AND org = $2")
            .bind(mentor_id)
            .bind(organisation_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a user"))?;
        match exists {
            Some(_) => Ok(PullOutcome::Stale),
            None => Err(Error::NotFound {
                what: format!("user {mentor_id}"),
            }),
        }
    }

    async fn set_dynamics_contact(&self, organisation_id: &str, mentor_id: &str, contact: Option<Uuid>) -> Result<()> {
        sqlx::query("UPDATE users SET crm_contact = $1, changed_ms = changed_ms WHERE user_id = $2 AND org = $3")
            .bind(contact.map(|c| c.to_string()))
            .bind(mentor_id)
            .bind(organisation_id)
            .execute(&self.pool)
            .await
            .map_err(db("linking a user"))?;
        Ok(())
    }
}
