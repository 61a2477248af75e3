//! IntegrationHealthMonitor: how healthy each organisation's sync is, the alerts that follow from it, the
//! Prometheus metrics, and delivery of the notification outbox (coordinator emails and admin alerts) by SMTP and
//! webhook.
//!
//! [`HealthMonitor::check`] only reads (the sync store, and with [`Probe::Dynamics`] a WhoAmI call): it is what
//! the `health-check` binary runs. [`HealthMonitor::evaluate`] does the same and then brings the persisted alerts in
//! line with what it found (one alert per cause, raised, updated or resolved) and queues the admin notifications.
//! [`Deliverer`] sends what the outbox holds, with retries, never two deliveries of one notification at once.
//! [`render_metrics`] and [`metrics_router`] expose the run log as Prometheus metrics.

mod alerts;
mod deliver;
mod error;
mod health;
mod metrics;
mod privileges;
mod texts;

pub use alerts::{Condition, Evaluation, MANAGED_CAUSES};
pub use deliver::{Deliverer, DeliveryReport};
pub use error::{Error, Result};
pub use health::{
    AlertView, Authentication, CacheHealth, Connectivity, DeltaTokenHealth, FailureRate, Finding, HealthMonitor,
    Mismatch, OrganisationHealth, PostingHealth, Probe, Status,
};
pub use metrics::{METRICS_CONTENT_TYPE, metrics_router, render_metrics};
pub use privileges::{Access, Need, PrivilegeFinding, PrivilegeReport, assess, check_privileges, needs};
pub use sync_store::LastSuccess;
