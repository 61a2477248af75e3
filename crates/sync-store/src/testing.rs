//! Test databases (feature `testing`): SQLite in a temporary file, and PostgreSQL in a fresh database created from
//! `TEST_DATABASE_URL` and dropped afterwards. When the variable is unset the PostgreSQL half is skipped with a
//! message on stderr, so a skip is never silent.

use sqlx::{AnyPool, Executor};

pub use crate::conformance::{AppFixture, ConformanceReport, app_store_conformance};
use crate::db::Store;
use crate::error::{Context, Result};

/// The variable naming the PostgreSQL server tests may create databases on.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// A store on a throwaway database.
#[derive(Debug)]
pub struct TestDatabase {
    /// `sqlite` or `postgres`, for failure messages.
    pub name: &'static str,
    /// The store.
    pub store: Store,
    /// The URL the store was opened with.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    /// A fresh SQLite database in a temporary directory.
    pub async fn sqlite() -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| crate::Error::Backend(Box::new(e)))?;
        let url = format!("sqlite://{}", dir.path().join("sync.db").display());
        Ok(TestDatabase {
            name: "sqlite",
            store: Store::connect(&url).await?,
            url,
            _dir: Some(dir),
            postgres: None,
        })
    }

    /// A fresh PostgreSQL database, or `None` (announced on stderr) when `TEST_DATABASE_URL` is unset.
    pub async fn postgres() -> Result<Option<Self>> {
        let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("SKIPPED: {TEST_DATABASE_URL} is not set, so the PostgreSQL half of this test did not run");
            }
            return Ok(None);
        };
        let database = format!("sync_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_pool(&admin_url).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .await
            .doing("creating a test database")?;
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).map_err(|e| crate::Error::Backend(Box::new(e)))?;
        url.set_path(&format!("/{database}"));
        let url = url.to_string();
        Ok(Some(TestDatabase {
            name: "postgres",
            store: Store::connect(&url).await?,
            url,
            _dir: None,
            postgres: Some((admin_url, database)),
        }))
    }

    /// SQLite, and PostgreSQL when available.
    pub async fn all() -> Result<Vec<Self>> {
        let mut out = vec![Self::sqlite().await?];
        out.extend(Self::postgres().await?);
        Ok(out)
    }

    /// Closes the store and drops the PostgreSQL database.
    pub async fn cleanup(mut self) -> Result<()> {
        self.store.close().await;
        if let Some((admin_url, database)) = self.postgres.take() {
            let admin = admin_pool(&admin_url).await?;
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                )))
                .await
                .doing("dropping a test database")?;
            admin.close().await;
        }
        Ok(())
    }
}

impl TestDatabase {
    /// How the database would run `sql` (a statement the store issues, with `$n` parameters), one line per step:
    /// SQLite's `EXPLAIN QUERY PLAN` details (`SEARCH sync_link USING INDEX ...`, `SCAN peer_mentor`), or
    /// PostgreSQL's `EXPLAIN` of the generic plan of a prepared statement with sequential scans disabled, so a `Seq
    /// Scan` in it means no index can serve the statement whatever the table's size.
    pub async fn query_plan(&self, sql: &str) -> Result<Vec<String>> {
        let mut connection = self.store.pool.acquire().await.doing("taking a connection")?;
        match self.store.backend() {
            crate::db::Backend::Sqlite => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(&mut *connection)
                    .await
                    .doing("explaining a statement")?;
                Ok(rows
                    .iter()
                    .filter_map(|row| sqlx::Row::try_get::<String, _>(row, "detail").ok())
                    .collect())
            }
            crate::db::Backend::Postgres => {
                let parameters = sql
                    .split('$')
                    .skip(1)
                    .filter_map(|rest| {
                        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse::<usize>().ok()
                    })
                    .max()
                    .unwrap_or(0);
                let nulls = vec!["NULL"; parameters].join(", ");
                let arguments = if parameters == 0 {
                    String::new()
                } else {
                    format!("({nulls})")
                };
                for setup in [
                    "SET plan_cache_mode = force_generic_plan".to_owned(),
                    "SET enable_seqscan = off".to_owned(),
                    format!("PREPARE plan_probe AS {sql}"),
                ] {
                    connection
                        .execute(sqlx::AssertSqlSafe(setup))
                        .await
                        .doing("preparing a statement to explain")?;
                }
                let explained = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE plan_probe{arguments}")))
                    .fetch_all(&mut *connection)
                    .await
                    .doing("explaining a statement");
                for reset in ["DEALLOCATE plan_probe", "RESET enable_seqscan", "RESET plan_cache_mode"] {
                    connection.execute(reset).await.doing("resetting the session")?;
                }
                Ok(explained?
                    .iter()
                    .filter_map(|row| sqlx::Row::try_get::<String, _>(row, 0usize).ok())
                    .collect())
            }
        }
    }
}

/// Terminates every other session of the PostgreSQL database at `url` that holds an advisory lock: a run lock's
/// session dying (a proxy cut, a failover, an administrator's `pg_terminate_backend`).
pub async fn terminate_advisory_lock_sessions(url: &str) -> Result<()> {
    let pool = admin_pool(url).await?;
    pool.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND pid <> pg_backend_pid()
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await
    .doing("terminating the sessions holding advisory locks")?;
    pool.close().await;
    Ok(())
}

async fn admin_pool(url: &str) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .doing("connecting to the PostgreSQL test server")
}
