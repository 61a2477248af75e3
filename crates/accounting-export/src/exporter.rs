//! The exporter: postings to Dynamics in batches, marked only after Dynamics confirms, and the reconciliation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono_tz::Tz;
use dynamics_client::{
    AlternateKey, BatchMode, BatchOperation, BatchSizer, DynamicsClient, Filter, Literal, Query, Row, UpsertMode,
};
use field_mapping::{AppRecord, AppValue, Decimal, RecordMapping};
use integration_config::{IntegrationConfig, OrganisationConfig};
use sync_engine::{Clock, local_today};
use sync_store::{
    Direction, FailureState, Posting, PostingMetrics, PostingStore, RunKind, RunMetrics, RunStatus, Store,
};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// The record kind of postings in the mapping and in the failed-record queue.
pub const POSTING: &str = "posting";

/// The app fields a posting mapping may name.
const POSTING_FIELDS: [&str; 6] = [
    "posting_id",
    "member_number",
    "amount",
    "account",
    "description",
    "approved_on",
];

/// Postings read from the store at a time.
const PAGE: u32 = 500;

/// Postings looked up in Dynamics per reconciliation query (keeps the `$filter` URL short).
const LOOKUP_CHUNK: usize = 50;

/// AccountingExporterService: exports one organisation's approved postings to Dynamics, exactly once.
#[derive(Clone)]
pub struct AccountingExporter {
    organisation_id: String,
    time_zone: Tz,
    mapping: RecordMapping,
    client: DynamicsClient,
    postings: Arc<dyn PostingStore>,
    store: Store,
    clock: Arc<dyn Clock>,
    batch_initial: usize,
    batch_max: usize,
    record_max_attempts: u32,
}

/// What an export did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    /// Postings Dynamics confirmed and that are now marked exported.
    pub exported: u64,
    /// Postings that failed this time and are queued for the next export (or dead, once their attempts are spent).
    pub failed: u64,
    /// Postings not tried because they are dead or dismissed in the failed-record queue.
    pub held: u64,
}

/// What a reconciliation found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reconciliation {
    /// Postings marked exported that were looked up.
    pub checked: u64,
    /// Ids of postings marked exported that Dynamics does not hold, in id order.
    pub missing: Vec<String>,
    /// Postings whose amount in Dynamics differs from the app's.
    pub differing: Vec<AmountMismatch>,
}

/// A posting run as the run log records it: an export, then a reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingRun {
    /// The run's id in the run log (kind `postings`).
    pub run_id: String,
    /// Succeeded; partial when postings were queued as failed; failed when the export or the reconciliation could
    /// not finish (Dynamics unreachable, credentials refused). Unreconciled postings do not fail the run: they raise
    /// the `postings-unreconciled` alert.
    pub status: RunStatus,
    /// What it did and found.
    pub metrics: PostingMetrics,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// What an export would do now, from `sync-worker export-postings --dry-run`: nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PostingPlan {
    /// Ids of the approved postings an export would send now.
    pub ready: Vec<String>,
    /// Postings an export would queue as failed without sending, by id with the reason.
    pub invalid: Vec<(String, String)>,
    /// Postings held back (dead or dismissed in the failed-record queue).
    pub held: u64,
}

/// A posting whose amount in Dynamics is not the app's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountMismatch {
    /// The posting id.
    pub posting_id: String,
    /// The app's amount.
    pub app: Decimal,
    /// Dynamics' amount (`None` when empty there).
    pub dynamics: Option<Decimal>,
}

impl std::fmt::Debug for AccountingExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountingExporter")
            .field("organisation", &self.organisation_id)
            .finish_non_exhaustive()
    }
}

impl AccountingExporter {
    /// An exporter for one organisation. `client` must be that organisation's client (its own credentials);
    /// `postings` reads and marks the app's postings; `store` holds the failed-record queue. The mapping's
    /// `[records.posting]` must key postings by `posting_id`.
    pub fn new(
        organisation: &OrganisationConfig,
        config: &IntegrationConfig,
        client: DynamicsClient,
        postings: Arc<dyn PostingStore>,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let mapping = organisation.mapping.record(POSTING).cloned().ok_or_else(|| {
            Error::Mapping("it has no [records.posting]; copy the one of the built-in mapping (builtin:hlf-default, described in docs/field-mapping.md)".into())
        })?;
        if mapping.alternate_key().field != "posting_id" {
            return Err(Error::Mapping(
                "[records.posting] must use `posting_id` as its alternate key, so a re-export updates the same row"
                    .into(),
            ));
        }
        if let Some(unknown) = mapping
            .fields()
            .iter()
            .find(|f| !POSTING_FIELDS.contains(&f.field.as_str()))
        {
            return Err(Error::Mapping(format!(
                "posting field `{}` is not one the app knows; use one of {}",
                unknown.field,
                POSTING_FIELDS.join(", ")
            )));
        }
        Ok(AccountingExporter {
            organisation_id: organisation.id.clone(),
            time_zone: organisation.time_zone,
            mapping,
            client,
            postings,
            store,
            clock,
            batch_initial: config.sync.batch_size_initial as usize,
            batch_max: config.sync.batch_size_max as usize,
            record_max_attempts: config.retry.record_max_attempts,
        })
    }

    /// Exports, then reconciles, recorded in the run log as one `postings` run with its figures, so the dashboard,
    /// the metrics and the health monitor see the last export and what its reconciliation found. An error that
    /// ends the export or the reconciliation is recorded as a failed run and returned in the [`PostingRun`], not as
    /// `Err`; `Err` means the run log itself could not be written.
    pub async fn run(&self) -> Result<PostingRun> {
        let org = &self.organisation_id;
        let before = self.client.metrics();
        let timer = Instant::now();
        let run_id = self.store.start_run(org, RunKind::Postings, self.clock.now()).await?;
        info!(org = %org, run = %run_id, "posting export started");
        let mut metrics = PostingMetrics::default();
        let outcome = async {
            let summary = self.export().await?;
            metrics.exported = summary.exported;
            metrics.failed = summary.failed;
            metrics.held = summary.held;
            let found = self.reconcile().await?;
            metrics.checked = found.checked;
            metrics.missing = found.missing.len() as u64;
            metrics.differing = found.differing.len() as u64;
            metrics.sample = found
                .missing
                .iter()
                .chain(found.differing.iter().map(|d| &d.posting_id))
                .take(PostingMetrics::SAMPLE)
                .cloned()
                .collect();
            Ok::<(), Error>(())
        }
        .await;
        let (status, error) = match &outcome {
            Ok(()) if metrics.failed > 0 => (RunStatus::Partial, None),
            Ok(()) => (RunStatus::Succeeded, None),
            Err(e) => (RunStatus::Failed, Some(error_chain(e))),
        };
        let after = self.client.metrics();
        let run_metrics = RunMetrics {
            requests: after.requests.saturating_sub(before.requests),
            throttled: after.throttled.saturating_sub(before.throttled),
            retried: after.retried.saturating_sub(before.retried),
            waited_ms: u64::try_from(after.waited.saturating_sub(before.waited).as_millis()).unwrap_or(u64::MAX),
            duration_ms: u64::try_from(timer.elapsed().as_millis()).unwrap_or(u64::MAX),
            postings: Some(metrics.clone()),
            ..RunMetrics::default()
        };
        self.store
            .finish_run(&run_id, status, &run_metrics, error.as_deref(), self.clock.now())
            .await?;
        match &error {
            Some(reason) => warn!(org = %org, run = %run_id, reason = %reason, "posting export failed"),
            None => info!(
                org = %org,
                run = %run_id,
                status = ?status,
                exported = metrics.exported,
                failed = metrics.failed,
                missing = metrics.missing,
                differing = metrics.differing,
                "posting export finished"
            ),
        }
        Ok(PostingRun {
            run_id,
            status,
            metrics,
            error,
        })
    }

    /// What [`AccountingExporter::export`] would send now, writing nothing anywhere.
    pub async fn plan(&self) -> Result<PostingPlan> {
        let held = self.held().await?;
        let writer = self.client.writer(&self.mapping);
        let mut plan = PostingPlan::default();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .postings
                .postings_to_export(&self.organisation_id, after.as_deref(), PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for posting in &page {
                if held.contains(&posting.id) {
                    plan.held += 1;
                    continue;
                }
                match self.operation(posting, &writer) {
                    Ok(_) => plan.ready.push(posting.id.clone()),
                    Err(reason) => plan.invalid.push((posting.id.clone(), reason)),
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        Ok(plan)
    }

    /// Postings the failed-record queue holds back: dead or dismissed.
    async fn held(&self) -> Result<BTreeSet<String>> {
        let mut held = BTreeSet::new();
        for state in [FailureState::Dead, FailureState::Dismissed] {
            held.extend(
                self.store
                    .failures(&self.organisation_id, state)
                    .await?
                    .into_iter()
                    .filter(|f| f.record_kind == POSTING && f.direction == Direction::Push)
                    .map(|f| f.record_key),
            );
        }
        Ok(held)
    }

    /// The upsert that exports `posting`, or why it cannot be sent.
    fn operation(&self, posting: &Posting, writer: &dynamics_client::TableWriter) -> Result<BatchOperation, String> {
        let (key, body) = self.body(posting)?;
        writer
            .upsert_operation(&key, &body, UpsertMode::CreateOrUpdate)
            .map_err(|e| e.to_string())
    }

    /// Exports every approved posting not yet marked exported. A batch that fails as a whole (Dynamics
    /// unreachable, authentication) ends the export with an error and marks nothing, so no posting loses an
    /// attempt to an outage; postings already confirmed stay marked.
    pub async fn export(&self) -> Result<ExportSummary> {
        let org = &self.organisation_id;
        let now = self.clock.now();
        let held = self.held().await?;
        let writer = self.client.writer(&self.mapping);
        let mut sizer = BatchSizer::new(self.batch_initial, self.batch_max);
        let mut summary = ExportSummary::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.postings.postings_to_export(org, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            let mut ready: Vec<(String, BatchOperation)> = Vec::new();
            for posting in &page {
                if held.contains(&posting.id) {
                    summary.held += 1;
                    continue;
                }
                match self.operation(posting, &writer) {
                    Ok(operation) => ready.push((posting.id.clone(), operation)),
                    Err(reason) => {
                        self.fail(&posting.id, &reason).await?;
                        summary.failed += 1;
                    }
                }
            }
            let mut rest = ready.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(sizer.size().min(rest.len()));
                rest = tail;
                let operations: Vec<BatchOperation> = chunk.iter().map(|(_, op)| op.clone()).collect();
                let throttled_before = self.client.metrics().throttled;
                let started = Instant::now();
                let parts = self
                    .client
                    .execute_batch(&operations, BatchMode::ContinueOnError)
                    .await?;
                sizer.record(self.client.metrics().throttled > throttled_before, started.elapsed());
                let mut confirmed = Vec::new();
                // Throttling beyond the retries (or any failure about the run) is no posting's fault: nothing is
                // marked failed for it, and the export stops once the confirmed postings are recorded.
                let mut run_failure = None;
                for ((id, _), part) in chunk.iter().zip(&parts) {
                    match writer.written_from_part(part) {
                        Ok(_) => confirmed.push(id.clone()),
                        Err(error) if error.is_run_level() => {
                            run_failure.get_or_insert(error);
                        }
                        Err(error) => {
                            self.fail(id, &error.to_string()).await?;
                            summary.failed += 1;
                        }
                    }
                }
                // Marked only now that Dynamics has confirmed; a crash before this line re-sends the same upserts.
                self.postings.mark_postings_exported(org, &confirmed, now).await?;
                for id in &confirmed {
                    self.store.clear_failure(org, POSTING, id, Direction::Push).await?;
                }
                summary.exported += confirmed.len() as u64;
                if let Some(error) = run_failure {
                    return Err(error.into());
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        info!(
            org = %org,
            exported = summary.exported,
            failed = summary.failed,
            held = summary.held,
            "postings exported"
        );
        Ok(summary)
    }

    /// Compares the postings marked exported with Dynamics: which are missing there, and whose amount differs.
    /// Reads only; changes nothing on either side.
    pub async fn reconcile(&self) -> Result<Reconciliation> {
        let org = &self.organisation_id;
        let key = self.mapping.alternate_key();
        let amount = self.mapping.field("amount");
        let mut select = vec![key.column.clone()];
        select.extend(amount.map(|a| a.column.clone()));
        let mut report = Reconciliation::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.postings.exported_postings(org, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for chunk in page.chunks(LOOKUP_CHUNK) {
                let Some(filter) = Filter::any_of(&key.column, chunk.iter().map(|p| Literal::Text(&p.id))) else {
                    continue;
                };
                let query = Query::new(self.mapping.entity_set()).select(&select).filter(filter);
                let rows: Vec<Row> = self.client.all_rows(&query).await?;
                let found: BTreeMap<String, Row> = rows
                    .into_iter()
                    .filter_map(|row| {
                        let id = row.get(&key.column)?.as_str()?.to_owned();
                        Some((id, row))
                    })
                    .collect();
                for posting in chunk {
                    report.checked += 1;
                    let Some(row) = found.get(&posting.id) else {
                        report.missing.push(posting.id.clone());
                        continue;
                    };
                    let Some(amount) = amount else { continue };
                    let dynamics = match amount.from_dataverse(row) {
                        Ok(AppValue::Decimal(value)) => Some(value),
                        _ => None,
                    };
                    if dynamics != Some(posting.amount) {
                        report.differing.push(AmountMismatch {
                            posting_id: posting.id.clone(),
                            app: posting.amount,
                            dynamics,
                        });
                    }
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        if !report.missing.is_empty() || !report.differing.is_empty() {
            warn!(
                org = %org,
                missing = report.missing.len(),
                differing = report.differing.len(),
                "exported postings disagree with dynamics"
            );
        }
        Ok(report)
    }

    /// The posting's alternate key and request body, or why it cannot be sent. The key column is in the address,
    /// not the body.
    fn body(&self, posting: &Posting) -> Result<(AlternateKey, Row), String> {
        let text = |value: Option<&String>| value.map_or(AppValue::Null, |v| AppValue::Text(v.clone()));
        let mut record = AppRecord::new();
        for spec in self.mapping.fields() {
            let value = match spec.field.as_str() {
                "posting_id" => AppValue::Text(posting.id.clone()),
                "member_number" => text(posting.member_number.as_ref()),
                "amount" => AppValue::Decimal(posting.amount),
                "account" => AppValue::Text(posting.account.clone()),
                "description" => text(posting.description.as_ref()),
                "approved_on" => posting
                    .approved_at
                    .map_or(AppValue::Null, |at| AppValue::Date(local_today(at, self.time_zone))),
                _ => continue,
            };
            record.insert(spec.field.clone(), value);
        }
        let key_spec = self.mapping.alternate_key();
        let value = self.mapping.key_value(&record).map_err(|e| e.to_string())?.to_owned();
        key_spec
            .to_dataverse(&AppValue::Text(value.clone()))
            .map_err(|e| e.to_string())?;
        let key = AlternateKey::new(&key_spec.column, &value).map_err(|e| e.to_string())?;
        record.remove(&key_spec.field);
        let body = self
            .mapping
            .to_dataverse(&record)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
        Ok((key, body))
    }

    /// Queues a failed posting (by id; the reason never holds the amount or other values).
    async fn fail(&self, posting_id: &str, reason: &str) -> Result<()> {
        let failure = self
            .store
            .record_failure(
                &self.organisation_id,
                POSTING,
                posting_id,
                Direction::Push,
                reason,
                self.record_max_attempts,
                self.clock.now(),
            )
            .await?;
        warn!(
            org = %self.organisation_id,
            posting = %posting_id,
            attempts = failure.attempts,
            dead = failure.state == FailureState::Dead,
            "posting not exported; queued"
        );
        Ok(())
    }
}

/// An error with its causes, for the run log (`dynamics request failed: ...: ...`).
fn error_chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
