//! The connection pool, migrations, and conversions between Rust values and the portable column types.

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Connection, Executor, Row};

use crate::error::{Context, Error, Result};

/// The advisory lock the writers of the reference schema's app tables take in turn on PostgreSQL ("HLF", 1).
const APP_WRITES_LOCK: (i32, i32) = (0x0048_4C46, 1);

/// The embedded migrations, shared by SQLite and PostgreSQL.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite: the embedded default (WAL mode).
    Sqlite,
    /// PostgreSQL: the production store.
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// The sync store: the app-side reference schema and the sync state in one database, SQLite or PostgreSQL. Cheap
/// to clone; clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
}

impl Store {
    /// Connects to `url` (`sqlite://PATH`, created if missing, or `postgres://...`) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let store = Store::open(url, Access::ReadWrite).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects for reading only, for probes such as `health-check` that must need no write access: SQLite opens
    /// the file read-only (it must exist) and PostgreSQL sessions are read-only. Fails with
    /// [`Error::NotMigrated`] when the schema is missing or older than this build's.
    pub async fn connect_read_only(url: &str) -> Result<Self> {
        let store = Store::open(url, Access::ReadOnly).await?;
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&store.pool)
            .await
            .map_err(|_| Error::NotMigrated)?;
        let latest = MIGRATOR.iter().map(|m| m.version).max();
        if applied < latest {
            return Err(Error::NotMigrated);
        }
        Ok(store)
    }

    async fn open(url: &str, access: Access) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::UnsupportedUrl);
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let mode = match access {
                    Access::ReadWrite => "rwc",
                    Access::ReadOnly => "ro",
                };
                format!("{url}{}mode={mode}", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        // A connection left inside a transaction (a future dropped between `BEGIN` and the transaction's guard, as
        // when a caller gives up on a request) must never serve anyone again: its locks would block every writer
        // and its statements would run in a transaction nobody commits. Such a connection is closed instead.
        let mut options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }));
        options = match (backend, access) {
            // SQLite allows one writer at a time; a small pool avoids needless lock waits.
            (Backend::Sqlite, Access::ReadWrite) => options.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            }),
            (Backend::Sqlite, Access::ReadOnly) => options.max_connections(2).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA query_only = ON").await?;
                    Ok(())
                })
            }),
            // Every statement is planned for its values. The store's hot statements take lists of up to 500 ids
            // (`... IN ($2, ..., $501)`); once PostgreSQL switches a prepared statement to its generic plan, which
            // it does after five runs whenever its statistics say the table is small (a first sync fills empty
            // tables faster than autovacuum analyses them), each row is compared with every id in turn and the index
            // on the listed column goes unused: 50 to 90 ms per statement instead of under 1 ms, most of a first
            // sync's time on PostgreSQL. A plan for the values hashes the list and picks the index.
            (Backend::Postgres, Access::ReadWrite) => options.max_connections(8).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET plan_cache_mode = force_custom_plan").await?;
                    Ok(())
                })
            }),
            (Backend::Postgres, Access::ReadOnly) => options.max_connections(2).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .await?;
                    conn.execute("SET plan_cache_mode = force_custom_plan").await?;
                    Ok(())
                })
            }),
        };
        let pool = options.connect(&url).await.doing("connecting to the database")?;
        Ok(Store { pool, backend })
    }

    /// A statement with many parameters as the backend takes it best. Its text numbers them `$1, $2, ...` in the
    /// order they are bound, each once; SQLite gets anonymous `?` instead, because binding a `$N` parameter costs a
    /// search through every parameter name, which makes a statement of a few hundred parameters cost hundreds of
    /// thousands of steps. Such a statement runs with `.persistent(false)`: each list length is a statement of its
    /// own, and caching them filled every connection's statement cache with programs of hundreds of parameters
    /// (about 15 MB in a first sync of 50,000 mentors) that were rarely run again.
    pub(crate) fn sql(&self, text: String) -> String {
        match self.backend {
            Backend::Postgres => text,
            Backend::Sqlite => anonymous_parameters(&text),
        }
    }

    /// Starts a transaction that writes. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), waiting up
    /// to the busy timeout for another writer: a deferred transaction that reads before it writes fails outright
    /// with `SQLITE_BUSY_SNAPSHOT` ("database is locked", which no busy timeout retries) when another connection
    /// committed in between, as the worker and the app's backend do all the time.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.backend {
            Backend::Postgres => self.pool.begin().await,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
        }
        .doing("starting a transaction")
    }

    /// Starts a transaction that writes the reference schema's app tables (mentors, certifications, memberships):
    /// the app's own writes and the sync's pulls. On PostgreSQL it first takes a transaction-level advisory lock, so
    /// these writers take their turn as they do on SQLite. Without it, two writers that each lock rows of two
    /// mentors (a certification moved between them, a batch of pulls) can wait on each other, and PostgreSQL breaks
    /// the deadlock by failing one of them after a second.
    pub(crate) async fn begin_app_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // The two-key form: its keys never meet the run lock's one-key locks.
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1, $2)) AS taken")
                .bind(APP_WRITES_LOCK.0)
                .bind(APP_WRITES_LOCK.1)
                .execute(&mut *tx)
                .await
                .doing("waiting for the other writers of the app tables")?;
        }
        Ok(tx)
    }

    /// Applies any migrations not yet applied. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(Error::Migrate)
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn opt_ms(at: Option<DateTime<Utc>>) -> Option<i64> {
    at.map(ms)
}

pub(crate) fn from_ms(value: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(value).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Column readers that name the table and column in errors.
pub(crate) trait RowExt {
    fn text(&self, column: &'static str) -> Result<String>;
    fn opt_text(&self, column: &'static str) -> Result<Option<String>>;
    fn int(&self, column: &'static str) -> Result<i64>;
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>>;
    fn flag(&self, column: &'static str) -> Result<bool>;
    fn at(&self, column: &'static str) -> Result<DateTime<Utc>> {
        self.int(column).map(from_ms)
    }
    fn opt_at(&self, column: &'static str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.opt_int(column)?.map(from_ms))
    }
    fn opt_date(&self, table: &'static str, column: &'static str) -> Result<Option<NaiveDate>> {
        self.opt_text(column)?
            .map(|t| NaiveDate::from_str(&t).map_err(|_| Error::Corrupt { table, column }))
            .transpose()
    }
}

impl RowExt for AnyRow {
    fn text(&self, column: &'static str) -> Result<String> {
        self.try_get(column).doing(column)
    }
    fn opt_text(&self, column: &'static str) -> Result<Option<String>> {
        self.try_get(column).doing(column)
    }
    fn int(&self, column: &'static str) -> Result<i64> {
        self.try_get(column).doing(column)
    }
    fn opt_int(&self, column: &'static str) -> Result<Option<i64>> {
        self.try_get(column).doing(column)
    }
    fn flag(&self, column: &'static str) -> Result<bool> {
        // Flags are stored as 0/1 integers on both databases.
        self.try_get::<i64, _>(column).map(|n| n != 0).doing(column)
    }
}

/// `$1 ... $n` (in order, each once) as `?`.
pub(crate) fn anonymous_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut expected = 1usize;
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            debug_assert_eq!(
                digits.parse::<usize>().ok(),
                Some(expected),
                "parameters out of order in {text}"
            );
            expected += 1;
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn numbered_parameters_become_anonymous_for_sqlite() {
        assert_eq!(
            super::anonymous_parameters("SELECT a FROM t WHERE b = $1 AND c IN ($2, $3) LIMIT $4"),
            "SELECT a FROM t WHERE b = ? AND c IN (?, ?) LIMIT ?"
        );
    }

    #[tokio::test]
    async fn a_connection_left_inside_a_transaction_never_serves_again() {
        let dir = std::env::temp_dir().join(format!("sync-store-db-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.join("t.db").display()))
            .await
            .unwrap();
        // A transaction whose guard never runs (as when a future is dropped between `BEGIN` and the guard): the
        // connection goes back to the pool inside it, holding the write lock of an uncommitted row.
        let mut conn = store.pool.acquire().await.unwrap();
        let tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
        std::mem::forget(tx);
        sqlx::query("INSERT INTO organisation (id, name) VALUES ('stuck', 'Stuck')")
            .execute(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        // Another writer goes through at once (not after the 10 s busy timeout), and the stuck row never lands.
        tokio::time::timeout(Duration::from_secs(5), store.upsert_organisation("next", "Next"))
            .await
            .expect("a writer waited for a lock nobody would release")
            .unwrap();
        let names: Vec<String> = sqlx::query_scalar("SELECT id FROM organisation ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(names, ["next"]);
        store.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
