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
