//! DynamicsPortalClient: the client of the Dataverse Web API v9.2 that every other crate uses to reach HLF's
//! Dynamics 365, and the only crate in the workspace that knows HTTP, OData or Dataverse JSON.
//!
//! A [`DynamicsClient`] authenticates through a [`TokenSource`] (in production [`AzureAdTokenSource`]: azure_identity's
//! client-credentials flow), stays inside Dynamics' service-protection limits with a shared client-side budget,
//! retries throttled (429, honouring `Retry-After`) and transient (502/503/504, timeouts, resets) failures within a
//! time budget, and decodes Dataverse's error bodies into [`Error`] variants a caller can branch on. On top of that:
//! OData queries with correctly quoted literals and paging ([`Query`], [`DynamicsClient::pages`]); writes through a
//! [`TableWriter`] that refuses every column the field mapping does not declare writable; `$batch` with per-operation
//! results and an adaptive batch size; change tracking with deletions and "full resync needed"; table metadata for
//! the schema-drift check; and `WhoAmI`.
//!
//! Invariants: no secret or bearer token appears in an error, a log line or a `Debug` output; links returned by
//! Dynamics are followed only to the same instance; nothing here decides what to sync.

mod auth;
mod batch;
mod budget;
mod changes;
mod client;
mod clock;
mod error;
mod metadata;
mod query;
mod write;

/// Thin wrappers around the crate-private decoders for the fuzz targets under `fuzz/`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use auth::{AzureAdTokenSource, BearerToken, StaticTokenSource, TokenSource};
pub use batch::{BatchMode, BatchOperation, BatchSizer, MAX_BATCH_OPERATIONS, PartResult};
pub use changes::{Change, ChangePage, ChangeRead};
pub use client::{ClientMetrics, ClientOptions, DynamicsClient, RawAnswer};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use error::{AuthError, Error, Result};
pub use field_mapping::Row;
pub use metadata::{PrivilegeDepth, RolePrivilege, WhoAmI};
pub use query::{Filter, IN_VALUES_PER_REQUEST, Literal, Order, Page, Query};
pub use write::{AlternateKey, TableWriter, UpsertMode, WriteOutcome, Written};
