//! One run per organisation at a time, across processes and machines: a PostgreSQL advisory lock (released by the
//! server when the holder's session ends, even if the process is killed), or on SQLite a lease row that expires.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Any;
use sqlx::pool::PoolConnection;

use crate::db::{Backend, Store, ms};
use crate::error::{Context, Result};

/// A held run lock. Release it with [`RunLock::release`]; dropping it also releases it (on PostgreSQL by closing
/// its session; on SQLite the lease simply expires).
#[derive(Debug)]
pub struct RunLock {
    store: Store,
    organisation_id: String,
    holder: String,
    /// The PostgreSQL session holding the advisory lock. In a mutex only so the lock can be shared between tasks
    /// (a connection is `Send` but not `Sync`); it is never used concurrently.
    connection: Mutex<Option<PoolConnection<Any>>>,
}

impl Store {
    /// Tries to take the run lock of `organisation_id` for `holder` (a name for messages, e.g. host and pid). `None`
    /// when another holder has it; the engine then waits or skips. `lease` bounds how long a SQLite lock outlives a
    /// killed holder.
    pub async fn try_lock(
        &self,
        organisation_id: &str,
        holder: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<RunLock>> {
        match self.backend {
            Backend::Postgres => {
                let mut connection = self
                    .pool
                    .acquire()
                    .await
                    .doing("taking a connection for the run lock")?;
                // Dropping the connection closes the session, which releases the lock.
                connection.close_on_drop();
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(lock_key(organisation_id))
                    .fetch_one(&mut *connection)
                    .await
                    .doing("taking the run lock")?;
                Ok(taken.then(|| RunLock {
                    store: self.clone(),
                    organisation_id: organisation_id.to_owned(),
                    holder: holder.to_owned(),
                    connection: Mutex::new(Some(connection)),
                }))
            }
            Backend::Sqlite => {
                let expires = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(15));
                let result = sqlx::query(
                    "INSERT INTO run_lock (organisation_id, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (organisation_id) DO UPDATE
                     SET holder = excluded.holder, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
                     WHERE run_lock.expires_at < $3",
                )
                .bind(organisation_id)
                .bind(holder)
                .bind(ms(now))
                .bind(ms(expires))
                .execute(&self.pool)
                .await
                .doing("taking the run lock")?;
                if result.rows_affected() == 0 && self.reclaim_dead_lease(organisation_id).await? {
                    return Box::pin(self.try_lock(organisation_id, holder, lease, now)).await;
                }
                Ok((result.rows_affected() == 1).then(|| RunLock {
                    store: self.clone(),
                    organisation_id: organisation_id.to_owned(),
                    holder: holder.to_owned(),
                    connection: Mutex::new(None),
                }))
            }
        }
    }

    /// Frees a SQLite lease whose holder was a process on this machine that no longer exists (a worker killed by
    /// SIGKILL or the OOM killer cannot release it): the next run need not wait for the lease to lapse. Holders are
    /// named `host:pid:...`; a holder on another machine, or one this cannot parse, is left to its lease.
    async fn reclaim_dead_lease(&self, organisation_id: &str) -> Result<bool> {
        let Some(holder) = self.lock_holder(organisation_id).await? else {
            return Ok(false);
        };
        if !holder_is_dead_here(&holder) {
            return Ok(false);
        }
        let freed = sqlx::query("DELETE FROM run_lock WHERE organisation_id = $1 AND holder = $2")
            .bind(organisation_id)
            .bind(&holder)
            .execute(&self.pool)
            .await
            .doing("freeing the lease of a dead worker")?;
        if freed.rows_affected() == 1 {
            tracing::warn!(org = %organisation_id, holder = %holder, "freed the run lock of a worker that died");
        }
        Ok(freed.rows_affected() == 1)
    }

    /// Who holds the SQLite lease of an organisation, for the "another run is in progress" message. PostgreSQL
    /// advisory locks carry no holder name, so this is `None` there.
    pub async fn lock_holder(&self, organisation_id: &str) -> Result<Option<String>> {
        if self.backend == Backend::Postgres {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT holder FROM run_lock WHERE organisation_id = $1")
            .bind(organisation_id)
            .fetch_optional(&self.pool)
            .await
            .doing("reading the run lock")
    }
}

impl RunLock {
    /// Extends a SQLite lease, or checks on PostgreSQL that the session holding the advisory lock is still alive
    /// and holds it (a dropped connection, a terminated backend or a database restart ends the lock with the
    /// session). [`crate::Error::LockLost`] when another worker may now hold it: the run must stop.
    pub async fn renew(&self, lease: Duration, now: DateTime<Utc>) -> Result<()> {
        if self.store.backend == Backend::Postgres {
            return self.check_session().await;
        }
        let expires = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(15));
        let renewed = sqlx::query("UPDATE run_lock SET expires_at = $1 WHERE organisation_id = $2 AND holder = $3")
            .bind(ms(expires))
            .bind(&self.organisation_id)
            .bind(&self.holder)
            .execute(&self.store.pool)
            .await
            .doing("renewing the run lock")?;
        if renewed.rows_affected() == 0 {
            return Err(crate::Error::LockLost {
                organisation: self.organisation_id.clone(),
                why: "the lease lapsed and another worker took it",
            });
        }
        Ok(())
    }

    async fn check_session(&self) -> Result<()> {
        let lost = || crate::Error::LockLost {
            organisation: self.organisation_id.clone(),
            why: "the database session holding it ended",
        };
        // The connection is taken out of the mutex for the query (a guard cannot be held across an await) and put
        // back only while it still holds the lock.
        let Some(mut connection) = self.connection.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Err(lost());
        };
        let (classid, objid) = split_key(lock_key(&self.organisation_id));
        let held: std::result::Result<bool, sqlx::Error> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
               AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1 AND granted)",
        )
        .bind(classid)
        .bind(objid)
        .fetch_one(&mut *connection)
        .await;
        match held {
            Ok(true) => {
                *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(connection);
                Ok(())
            }
            Ok(false) | Err(_) => Err(lost()),
        }
    }

    /// Releases the lock.
    pub async fn release(self) -> Result<()> {
        let connection = self.connection.lock().unwrap_or_else(|p| p.into_inner()).take();
        match connection {
            Some(mut connection) => {
                sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                    .bind(lock_key(&self.organisation_id))
                    .fetch_one(&mut *connection)
                    .await
                    .doing("releasing the run lock")?;
                Ok(())
            }
            None => {
                sqlx::query("DELETE FROM run_lock WHERE organisation_id = $1 AND holder = $2")
                    .bind(&self.organisation_id)
                    .bind(&self.holder)
                    .execute(&self.store.pool)
                    .await
                    .doing("releasing the run lock")?;
                Ok(())
            }
        }
    }
}

/// A stable 64-bit key for an organisation's advisory lock (FNV-1a, so every process computes the same key).
fn lock_key(organisation_id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "hlf-dynamics-sync:".bytes().chain(organisation_id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The two 32-bit halves of a 64-bit advisory lock key as `pg_locks` shows them (`classid`, `objid`), each as an
/// unsigned number.
fn split_key(key: i64) -> (i64, i64) {
    let bits = u64::from_ne_bytes(key.to_ne_bytes());
    (i64::from((bits >> 32) as u32), i64::from(bits as u32))
}

/// Whether `holder` (`host:pid:...`) names a process of this machine that has exited. Only Linux can tell (by
/// `/proc`); elsewhere a lease always runs its course.
fn holder_is_dead_here(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) else {
        return false;
    };
    let here = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    cfg!(target_os = "linux")
        && !here.is_empty()
        && host == here
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
