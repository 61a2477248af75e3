//! A faithful local emulator of the Dataverse (Dynamics 365) Web API v9.2 and the Azure AD v2.0 client-credentials
//! token endpoint, for the demo, integration tests, benchmarks and fault injection. It serves HTTPS on loopback with
//! a certificate generated at start (or plain HTTP), keeps tables in memory seeded from `EntityDefinitions`-format
//! fixtures, and answers queries, paging, upserts, `$batch`, change tracking, metadata, service-protection limits
//! and injected faults the way Dataverse documents them. Start one with [`Simulator::builder`]; see
//! `docs/emulator.md` for what it does and does not emulate.

mod api;
mod auth;
mod batch;
mod clock;
pub mod conformance;
mod dverror;
mod error;
mod faults;
mod generate;
mod limits;
mod metadata;
mod metadata_api;
mod odata;
mod oidc;
mod role;
mod server;
mod store;

pub use auth::AppRegistration;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use faults::FaultConfig;
pub use generate::GenerateSpec;
pub use limits::ServiceLimits;
pub use role::{PrivilegeDepth, RolePrivilege, hlf_sync_role};
pub use server::{
    API_PATH, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Faults, RunningSimulator, SimState,
    Simulator, SimulatorBuilder, Stats, Transport,
};
