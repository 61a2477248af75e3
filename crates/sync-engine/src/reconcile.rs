//! Reconcile: a full compare of every linked record, reporting the divergence between the two sides.

use std::collections::BTreeMap;

use dynamics_client::{Query, Row};
use futures::StreamExt;
use sync_store::{Divergence, RunKind, RunMetrics, RunStatus};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::plan::show;
use crate::record::{SYNC_STAMP, app_record, local_today};
use crate::service::{MENTOR, SyncService, error_chain};

/// One field that differs between the app and Dynamics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The mentor's app id.
    pub mentor_id: String,
    /// Their member number.
    pub member_number: String,
    /// The field.
    pub field: String,
    /// The app's value.
    pub app: String,
    /// Dynamics' value.
    pub dynamics: String,
}

/// What a reconcile found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconcileReport {
    /// The counts.
    pub divergence: Divergence,
    /// Every differing field.
    pub differences: Vec<Difference>,
    /// Mentors of the organisation with no linked contact.
    pub unlinked_mentors: u64,
}

impl SyncService {
    /// Compares every linked record field by field (reading all contacts page by page) and records the divergence
    /// in the run log. Writes nothing to either side.
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        let org = self.organisation.id.clone();
        let started = self.clock.now();
        let timer = std::time::Instant::now();
        let run_id = self.store.start_run(&org, RunKind::Reconcile, started).await?;
        let outcome = self.compare_all().await;
        let mut metrics = RunMetrics::default();
        let (status, error) = match &outcome {
            Ok(report) => {
                metrics.divergence = Some(report.divergence);
                (RunStatus::Succeeded, None)
            }
            Err(e) => (RunStatus::Failed, Some(error_chain(e))),
        };
        metrics.duration_ms = u64::try_from(timer.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.store
            .finish_run(&run_id, status, &metrics, error.as_deref(), self.clock.now())
            .await?;
        outcome
    }

    async fn compare_all(&self) -> Result<ReconcileReport> {
        let org = &self.organisation.id;
        let today = local_today(self.clock.now(), self.organisation.time_zone);
        let mapping = &self.mapping;
        let query = Query::new(mapping.entity_set()).select(&mapping.select_columns());
        let mut pages = Box::pin(self.client.pages::<Row>(&query));
        let mut report = ReconcileReport::default();
        let dynamics_error = |source| Error::Dynamics {
            organisation: org.clone(),
            source,
        };
        while let Some(page) = pages.next().await {
            let page = page.map_err(dynamics_error)?;
            let rows: BTreeMap<Uuid, Row> = page
                .rows
                .into_iter()
                .filter_map(|row| {
                    let id = row
                        .get(mapping.primary_id())?
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s).ok())?;
                    Some((id, row))
                })
                .collect();
            let ids: Vec<Uuid> = rows.keys().copied().collect();
            let links = self.store.links_by_dynamics_ids(org, MENTOR, &ids).await?;
            let app_ids: Vec<String> = links.iter().map(|l| l.app_id.clone()).collect();
            let snapshots: BTreeMap<String, _> = self
                .app
                .mentors(org, &app_ids)
                .await?
                .into_iter()
                .map(|s| (s.mentor.id.clone(), s))
                .collect();
            for link in links {
                let (Some(row), Some(snapshot)) = (rows.get(&link.dynamics_id), snapshots.get(&link.app_id)) else {
                    continue;
                };
                report.divergence.records_compared += 1;
                let app = app_record(mapping, snapshot, today, Some(&link.shadow));
                let mut differs = false;
                for spec in mapping.fields() {
                    if spec.field == SYNC_STAMP {
                        continue;
                    }
                    let dynamics = spec.from_dataverse(row).ok();
                    let app_value = app.get(&spec.field);
                    if dynamics.as_ref() != app_value {
                        differs = true;
                        report.divergence.fields_differing += 1;
                        report.differences.push(Difference {
                            mentor_id: link.app_id.clone(),
                            member_number: link.alternate_key.clone(),
                            field: spec.field.clone(),
                            app: app_value.map(show).unwrap_or_default(),
                            dynamics: dynamics.as_ref().map(show).unwrap_or_else(|| "(unreadable)".to_owned()),
                        });
                    }
                }
                if differs {
                    report.divergence.records_differing += 1;
                }
            }
        }
        let mentors = self.app_mentor_count().await?;
        report.unlinked_mentors = mentors.saturating_sub(report.divergence.records_compared);
        Ok(report)
    }

    async fn app_mentor_count(&self) -> Result<u64> {
        let mut count = 0u64;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .app
                .all_mentors(&self.organisation.id, after.as_deref(), 1000)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.mentor.id.clone());
            count += page.len() as u64;
            if page.len() < 1000 {
                break;
            }
        }
        Ok(count)
    }
}
