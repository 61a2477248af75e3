//! The service a backend calls: run a sync, plan one, reconcile, resolve conflicts, requeue or dismiss failed
//! records, read cached certification status, and sync one mentor now.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use dynamics_client::DynamicsClient;
use field_mapping::RecordMapping;
use integration_config::{ConflictPolicy, IntegrationConfig, OrganisationConfig, RetrySettings, SyncSettings};
use sync_store::{AppStore, CacheEntry, Direction, RunKind, RunMetrics, RunStatus, Side, Store};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::record::check_fields;
use crate::run::{Mode, Run};

/// The record kind the engine syncs.
pub(crate) const MENTOR: &str = "mentor";

/// Run-log note set when a run's pull (Dynamics to app) completed, even if the push failed afterwards.
pub const NOTE_PULL_COMPLETED: &str = "pull_completed";

/// Run-log note holding the `$batch` size a run ended with: the next run's first batch starts there, so a run
/// after one that grew its batches unthrottled does not climb from `sync.batch_size_initial` again, and one after
/// throttling starts where Dynamics was content.
pub const NOTE_BATCH_SIZE: &str = "batch_size";

/// Run-log note holding the AADSTS code of the Azure AD refusal that failed a run.
pub const NOTE_AADSTS: &str = "aadsts";

/// HLFDynamicsSyncService: the bidirectional delta sync for one organisation, with its own Dynamics client and
/// credentials.
#[derive(Clone)]
pub struct SyncService {
    pub(crate) organisation: OrganisationConfig,
    pub(crate) mapping: RecordMapping,
    pub(crate) sync: SyncSettings,
    pub(crate) conflicts: ConflictPolicy,
    pub(crate) retry: RetrySettings,
    pub(crate) stale_after: Duration,
    pub(crate) client: DynamicsClient,
    pub(crate) app: Arc<dyn AppStore>,
    pub(crate) store: Store,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) holder: String,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) progress: Option<ProgressObserver>,
}

/// Called after each page read and each batch written, for a progress display.
pub type ProgressObserver = Arc<dyn Fn(&Progress<'_>) + Send + Sync>;

/// How far a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The organisation.
    pub organisation: &'a str,
    /// Rows read from Dynamics so far.
    pub pulled: u64,
    /// Records written to Dynamics (or failed) so far.
    pub pushed: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run's id in the run log.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// What it did.
    pub metrics: RunMetrics,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Schema drift found before writing; non-empty means nothing was written to Dynamics.
    pub drift: Vec<String>,
}

/// A certification status for the backend, with how fresh it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificationStatus {
    /// `active`, `expired`, `revoked` or `none`.
    pub status: String,
    /// The expiry date.
    pub expires_on: Option<NaiveDate>,
    /// Whether the mentor is shown on the public site.
    pub show_on_public_site: bool,
    /// When Dynamics last confirmed these values.
    pub as_of: DateTime<Utc>,
    /// Whether `as_of` is older than the configured staleness limit.
    pub stale: bool,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService")
            .field("organisation", &self.organisation.id)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl SyncService {
    /// A service for one organisation. `client` must be that organisation's client (its own credentials); `app`
    /// reads and writes the app's data; `store` keeps the sync state.
    pub fn new(
        organisation: &OrganisationConfig,
        config: &IntegrationConfig,
        client: DynamicsClient,
        app: Arc<dyn AppStore>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let mapping = organisation
            .mapping
            .record(MENTOR)
            .cloned()
            .ok_or_else(|| Error::Mapping("it has no [records.mentor]".to_owned()))?;
        check_fields(&mapping)?;
        Ok(SyncService {
            organisation: organisation.clone(),
            mapping,
            sync: config.sync.clone(),
            conflicts: config.conflicts.clone(),
            retry: config.retry.clone(),
            stale_after: config.cache.stale_after,
            client,
            app,
            store,
            clock,
            holder: format!("{}:{}", hostname(), std::process::id()),
            stop: Arc::new(AtomicBool::new(false)),
            progress: None,
        })
    }

    /// Shares a stop flag with this service: once it is set, a running sync finishes the page it is on, saves what
    /// that page covered, and ends with [`Error::Stopped`] (for a graceful shutdown on SIGTERM).
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
    }

    /// Reports progress to `observe` after each page read and each batch written (for a progress bar; it must be
    /// quick, as the run waits for it).
    pub fn with_progress(mut self, observe: ProgressObserver) -> Self {
        self.progress = Some(observe);
        self
    }

    /// The organisation this service syncs.
    pub fn organisation_id(&self) -> &str {
        &self.organisation.id
    }

    /// The Dynamics client (for its metrics).
    pub fn client(&self) -> &DynamicsClient {
        &self.client
    }

    /// Runs one sync in both directions, holding the organisation's run lock. A second concurrent call (in this
    /// process or any other) gets [`Error::AlreadyRunning`].
    pub async fn run(&self) -> Result<RunReport> {
        let org = &self.organisation.id;
        let lease = Duration::from_secs(30 * 60);
        // A nonce per run: two services in one process never mistake each other's lease for their own.
        let holder = format!("{}:{}", self.holder, uuid::Uuid::new_v4().simple());
        let Some(lock) = self.store.try_lock(org, &holder, lease, self.clock.now()).await? else {
            let holder = self.store.lock_holder(org).await?;
            return Err(Error::AlreadyRunning {
                organisation: org.clone(),
                holder,
            });
        };
        let started = self.clock.now();
        let timer = std::time::Instant::now();
        let run_id = self.store.start_run(org, RunKind::Sync, started).await?;
        info!(org = %org, run = %run_id, "sync run started");
        let mut run = Run::new(self, Mode::Apply, Some(&lock));
        let outcome = run.sync().await;
        let mut metrics = run.finish_metrics();
        // Wall time from a monotonic timer: the engine's clock may be injected and stand still.
        metrics.duration_ms = u64::try_from(timer.elapsed().as_millis()).unwrap_or(u64::MAX);
        let drift = run.drift.clone();
        if let Err(e) = &outcome
            && let Some(code) = e.aadsts_code()
        {
            metrics.notes.insert(NOTE_AADSTS.to_owned(), code.to_string());
        }
        let (status, error) = match &outcome {
            Ok(()) if metrics.push.failed + metrics.pull.failed > 0 => (RunStatus::Partial, None),
            Ok(()) if !drift.is_empty() => (RunStatus::Partial, Some(format!("schema drift: {}", drift.join("; ")))),
            Ok(()) => (RunStatus::Succeeded, None),
            // A requested stop is not a failure: the next run continues from what was saved.
            Err(Error::Stopped) => (RunStatus::Partial, Some(Error::Stopped.to_string())),
            Err(e) => (RunStatus::Failed, Some(error_chain(e))),
        };
        self.store
            .finish_run(&run_id, status, &metrics, error.as_deref(), self.clock.now())
            .await?;
        lock.release().await?;
        match &error {
            Some(reason) if status == RunStatus::Failed => {
                warn!(org = %org, run = %run_id, reason = %reason, "sync run failed; watermarks left where they were");
            }
            _ => info!(
                org = %org,
                run = %run_id,
                status = ?status,
                pulled = metrics.pull.written,
                pushed = metrics.push.written,
                failed = metrics.push.failed + metrics.pull.failed,
                conflicts = metrics.push.conflicts + metrics.pull.conflicts,
                requests = metrics.requests,
                "sync run finished"
            ),
        }
        Ok(RunReport {
            run_id,
            status,
            metrics,
            error,
            drift,
        })
    }

    /// Computes every change a run would make now, and writes nothing to either side or to the sync state.
    pub async fn plan(&self) -> Result<Plan> {
        let mut run = Run::new(self, Mode::Plan, None);
        run.sync().await?;
        Ok(run.into_plan())
    }

    /// An admin resolves a conflict. With `apply_now` the chosen value is written at once (through a sync of that
    /// mentor); otherwise the next run writes it.
    pub async fn resolve_conflict(&self, conflict_id: &str, side: Side, by: &str, apply_now: bool) -> Result<()> {
        let conflict = self
            .store
            .conflict(conflict_id)
            .await?
            .filter(|c| c.organisation_id == self.organisation.id)
            .ok_or_else(|| Error::NotFound(format!("conflict {conflict_id}")))?;
        self.store
            .resolve_conflict(conflict_id, side, by, self.clock.now())
            .await?;
        if apply_now {
            self.sync_mentor_now(&conflict.app_id).await?;
        }
        Ok(())
    }

    /// An admin sends a dead failed record back for another round of attempts.
    pub async fn requeue(&self, record_key: &str, direction: Direction) -> Result<()> {
        Ok(self
            .store
            .requeue_failure(&self.organisation.id, MENTOR, record_key, direction)
            .await?)
    }

    /// An admin dismisses a failed record.
    pub async fn dismiss(&self, record_key: &str, direction: Direction) -> Result<()> {
        Ok(self
            .store
            .dismiss_failure(&self.organisation.id, MENTOR, record_key, direction)
            .await?)
    }

    /// The certification status last confirmed with Dynamics, for reads while Dynamics cannot be reached.
    pub async fn certification_status(&self, mentor_id: &str) -> Result<Option<CertificationStatus>> {
        let entry: Option<CacheEntry> = self.store.cache_entry(&self.organisation.id, mentor_id).await?;
        let now = self.clock.now();
        Ok(entry.map(|e| CertificationStatus {
            stale: e.staleness(now, self.stale_after).stale,
            status: e.status,
            expires_on: e.expires_on,
            show_on_public_site: e.show_on_public_site,
            as_of: e.as_of,
        }))
    }

    /// Syncs one mentor now, in both directions (the optional near-real-time mode). Takes the run lock, so it
    /// waits for no run and never overlaps one: it answers [`Error::AlreadyRunning`] instead.
    pub async fn sync_mentor_now(&self, mentor_id: &str) -> Result<RunReport> {
        let org = &self.organisation.id;
        let lease = Duration::from_secs(5 * 60);
        let holder = format!("{}:{}", self.holder, uuid::Uuid::new_v4().simple());
        let Some(lock) = self.store.try_lock(org, &holder, lease, self.clock.now()).await? else {
            return Err(Error::AlreadyRunning {
                organisation: org.clone(),
                holder: self.store.lock_holder(org).await?,
            });
        };
        let mut run = Run::new(self, Mode::Apply, Some(&lock));
        let outcome = run.sync_one(mentor_id).await;
        let metrics = run.finish_metrics();
        let drift = std::mem::take(&mut run.drift);
        drop(run);
        lock.release().await?;
        outcome?;
        Ok(RunReport {
            run_id: String::new(),
            status: if metrics.push.failed + metrics.pull.failed > 0 {
                RunStatus::Partial
            } else {
                RunStatus::Succeeded
            },
            metrics,
            error: None,
            drift,
        })
    }
}

/// The error and its causes on one line, for the run log.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
