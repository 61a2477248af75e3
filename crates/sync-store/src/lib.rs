//! Persistence for the HLF Dynamics sync: the app-side reference schema (organisations, peer mentors,
//! certifications, memberships, postings) and the sync state (watermarks and delta links, links with their shadow
//! values, the run log, the failed-record queue, conflicts, alerts, the notification outbox, the certification cache
//! and the per-organisation run lock), on SQLite (the embedded default) or PostgreSQL with the same migrations.
//!
//! The engine reads and writes the app side only through the [`AppStore`] trait, so a backend with its own tables
//! implements that trait and keeps [`Store`] for the sync state.

mod app;
#[cfg(feature = "testing")]
mod conformance;
mod db;
mod demo;
mod erasure;
mod error;
mod lock;
#[cfg(feature = "mock")]
mod mock;
mod model;
mod monitor;
mod posting;
mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use app::AppStore;
pub use db::{Backend, Store};
pub use demo::{DemoSpec, DemoSummary};
pub use erasure::ForgetReport;
pub use error::{Error, Result};
pub use lock::RunLock;
#[cfg(feature = "mock")]
pub use mock::MockAppStore;
pub use model::*;
pub use monitor::{CacheSummary, LastSuccess};
pub use posting::PostingStore;
pub use state::{PurgeReport, RETENTION_RULES, RetentionRule};
