//! End-to-end tests of the sync engine: the production client and credential against the Dataverse emulator, with
//! the sync state on SQLite and, when `TEST_DATABASE_URL` is set, PostgreSQL.

// Test helpers may unwrap and panic: that is how they report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod bulk;
mod conflicts;
mod events;
mod faults;
mod merge;
mod regressions;
mod scoping;
mod sync;

#[path = "../support/mod.rs"]
mod support;

pub(crate) use support::*;
