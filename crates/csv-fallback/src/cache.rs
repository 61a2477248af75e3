//! Certification status from the local cache, for the backend while Dynamics cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use sync_engine::Clock;
use sync_store::{Staleness, Store};

use crate::error::Result;

/// Reads cached certification status with how fresh it is. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CertificationReader {
    store: Store,
    stale_after: Duration,
    clock: Arc<dyn Clock>,
}

/// A mentor's certification status as Dynamics last confirmed it, with its staleness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedCertification {
    /// `active`, `expired`, `revoked` or `none`.
    pub status: String,
    /// The expiry date.
    pub expires_on: Option<NaiveDate>,
    /// Whether the mentor is shown on the public site.
    pub show_on_public_site: bool,
    /// When it was last confirmed, how long ago, and whether that is past the limit.
    pub staleness: Staleness,
}

impl CertificationReader {
    /// A reader flagging entries older than `stale_after` (the configuration's `cache.stale_after_hours`, in
    /// `IntegrationConfig::cache.stale_after`) as stale, at the time `clock` tells.
    pub fn new(store: Store, stale_after: Duration, clock: Arc<dyn Clock>) -> Self {
        CertificationReader {
            store,
            stale_after,
            clock,
        }
    }

    /// The cached status of a mentor of `organisation_id`, `None` when the sync has never confirmed one. Reads only
    /// the local database, so it answers while Dynamics is down; the caller shows the staleness with the value.
    pub async fn status(&self, organisation_id: &str, mentor_id: &str) -> Result<Option<CachedCertification>> {
        let now = self.clock.now();
        let entry = self.store.cache_entry(organisation_id, mentor_id).await?;
        Ok(entry.map(|e| CachedCertification {
            staleness: e.staleness(now, self.stale_after),
            status: e.status,
            expires_on: e.expires_on,
            show_on_public_site: e.show_on_public_site,
        }))
    }
}
