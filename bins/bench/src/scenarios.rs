//! What a child process of the bench measures, against an emulator its parent started: the hlf-50k runs, one full
//! sync (a point of the growth curve), or a full read of the contacts. Each prints one JSON result.

use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use dynamics_client::{Filter, Literal, Query, Row};
use field_mapping::{AppRecord, AppValue};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sync_engine::{FixedClock, SyncService, certification_view, local_today};
use sync_store::{AppStore, Direction, FailureState, RunStatus};
use uuid::Uuid;

use crate::harness::{FIRST_MEMBER, Harness, ORGANISATION, PhaseCost};

/// The record kind the engine syncs (the mapping's `[records.mentor]`).
const MENTOR: &str = "mentor";
/// Records (g) puts in the failed-record queue before its run.
const RETRIED_RECORDS: usize = 500;
/// The naive integration's requests in flight: one, as a hand-written loop over the mentors does.
pub(crate) const NAIVE_CONCURRENCY: usize = 1;

/// One sync run, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SyncPhase {
    /// Requests, throttling, wall, CPU and memory.
    pub(crate) cost: PhaseCost,
    /// Contacts the run read from Dynamics.
    pub(crate) rows_read: u64,
    /// Mentors written to Dynamics.
    pub(crate) written_to_dynamics: u64,
    /// Mentors written to the app.
    pub(crate) written_to_app: u64,
    /// Whether a delta link was stored before the run (so the run could follow it).
    pub(crate) delta_link_before: bool,
    /// Full resyncs the run had to do because its delta token expired.
    pub(crate) full_resyncs: u64,
    /// Seconds the engine spent deciding (reading rows into values and the three-way decisions), its own measure.
    #[serde(default)]
    pub(crate) decide_s: f64,
}

/// The naive way, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NaivePhase {
    /// Mentors the scenario has.
    pub(crate) mentors_total: usize,
    /// Mentors the naive loop went through (all of them, or a documented subset).
    pub(crate) mentors_done: usize,
    /// Mentors with no contact in Dynamics (GET answered no row, so no PATCH).
    pub(crate) not_found: usize,
    /// Requests, throttling, wall, CPU and memory.
    pub(crate) cost: PhaseCost,
}

/// The hlf-50k scenario, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HlfResult {
    /// Contacts generated in the emulator.
    pub(crate) contacts: usize,
    /// Mentors in the app.
    pub(crate) mentors: usize,
    /// (a) the initial full sync.
    pub(crate) full: SyncPhase,
    /// (c) a delta with nothing changed, right after (a).
    pub(crate) quiet_after_full: SyncPhase,
    /// (b) the nightly delta.
    pub(crate) nightly: SyncPhase,
    /// (c) again, right after (b).
    pub(crate) quiet_after_nightly: SyncPhase,
    /// (e) the delta after as many mentors again were added in the app.
    #[serde(default)]
    pub(crate) added: Option<SyncPhase>,
    /// How many mentors (e) added.
    #[serde(default)]
    pub(crate) added_mentors: usize,
    /// (g) the run after an outage left mentors in the failed-record queue.
    #[serde(default)]
    pub(crate) retried: Option<SyncPhase>,
    /// How many records (g) retried.
    #[serde(default)]
    pub(crate) retried_records: usize,
    /// (h) the run after an admin resolved many conflicts at once (filled in by the child after the rest).
    #[serde(default)]
    pub(crate) resolved: Option<ResolvedResult>,
    /// (f) the reruns after the first full sync was killed, one per point (filled in by the parent).
    #[serde(default)]
    pub(crate) killed: Vec<KilledResult>,
    /// (d) the naive way.
    pub(crate) naive: NaivePhase,
    /// Contacts edited in Dynamics before (b).
    pub(crate) edited_in_dynamics: usize,
    /// Mentors whose certification the app changed before (b).
    pub(crate) renewed_in_app: usize,
    /// Certifications that expired by the passing of time before (b).
    pub(crate) expired_by_time: usize,
}

/// A full read of the contacts by this project's client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReadResult {
    /// Rows read.
    pub(crate) rows: u64,
    /// The `$select` used (so the other client can use the same).
    pub(crate) select: Vec<String>,
    /// Requests, wall, CPU and memory.
    pub(crate) cost: PhaseCost,
}

/// How this project's client reads every contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum ReadMode {
    /// Page by page, as the engine reads (`DynamicsClient::pages`), keeping one page at a time, and of each row the
    /// values the engine reads of every contact: id, etag, modification time and member number.
    Streamed,
    /// Page by page, every value of every row read.
    EveryValue,
    /// Every row in one list (`DynamicsClient::all_rows`), as `retrieveAll` returns them.
    Collected,
}

/// The hlf-50k runs, in this order: (a) full sync, (c) nothing changed, the night's changes, (b) nightly delta,
/// (c) nothing changed again, (d) the naive way over the first `naive_mentors` mentors.
pub(crate) async fn hlf(
    h: &Harness,
    contacts: usize,
    mentors: usize,
    naive_mentors: usize,
) -> anyhow::Result<HlfResult> {
    let now = scenario_start(h);
    let today = local_today(now, h.organisation.time_zone);
    eprintln!("bench: seeding the app with {mentors} mentors");
    h.seed_mentors(mentors, now, today).await?;
    let clock = Arc::new(FixedClock::new(now));
    let service = h.service(clock.clone())?;

    eprintln!("bench: (a) initial full sync");
    let full = sync_phase(h, &service).await?;
    eprintln!("bench: (c) delta with nothing changed");
    let quiet_after_full = sync_phase(h, &service).await?;

    // The night's changes: 1% of contacts edited in Dynamics (every 100th member number from the 50th), 2% of
    // mentors changed in the app (every 50th from the 25th), and the clock moved to the next day so the 1% whose
    // certification expires today (every 100th from the first) expire by time with no app row changed. The three
    // sets are disjoint.
    let edited: Vec<String> = (50..contacts)
        .step_by(100)
        .map(|i| (FIRST_MEMBER + i).to_string())
        .collect();
    for chunk in edited.chunks(dynamics_client::MAX_BATCH_OPERATIONS) {
        h.edit_in_dynamics(chunk, "firstname", "Endret").await?;
    }
    let renewed: Vec<usize> = (25..mentors).step_by(50).collect();
    for &i in &renewed {
        h.renew_certification(i, now, today).await?;
    }
    let expired_by_time = (0..mentors).step_by(100).count();
    clock.set(now + Duration::days(1));

    eprintln!("bench: (b) nightly delta");
    let nightly = sync_phase(h, &service).await?;
    eprintln!("bench: (c) delta with nothing changed, after (b)");
    let quiet_after_nightly = sync_phase(h, &service).await?;

    // (e) As many mentors again added in the app after the first syncs (go-live after a trial, bulk onboarding),
    // each with a contact in Dynamics: changed after the last run, so the next delta pushes them all.
    let added_mentors = mentors.min(contacts.saturating_sub(mentors));
    let added_at = now + Duration::days(1) + Duration::minutes(1);
    eprintln!("bench: (e) {added_mentors} mentors added after the first sync");
    h.seed_mentors_from(mentors, added_mentors, added_at, today).await?;
    clock.set(added_at + Duration::minutes(1));
    let added = sync_phase(h, &service).await?;

    // (g) An outage's leftovers: 500 mentors renewed in the app whose writes failed and now wait in the
    // failed-record queue (every 10th from the 7th: none of the sets above). The run reads their contacts again in
    // bulk, decides each and writes them.
    let queued: Vec<usize> = (7..mentors).step_by(10).take(RETRIED_RECORDS).collect();
    let failed_at = added_at + Duration::hours(1);
    eprintln!("bench: (g) {} records in the failed-record queue retried", queued.len());
    for &i in &queued {
        h.renew_certification(i, failed_at, today).await?;
        h.store
            .record_failure(
                ORGANISATION,
                MENTOR,
                &format!("m{i}"),
                Direction::Push,
                "Dynamics could not be reached: timed out (the outage the bench stands for)",
                h.config.retry.record_max_attempts,
                failed_at,
            )
            .await?;
    }
    clock.set(failed_at + Duration::hours(1));
    let retried = sync_phase(h, &service).await?;
    let still_failing = h.store.failures(ORGANISATION, FailureState::Retrying).await?.len();
    if still_failing > 0 {
        bail!("(g) left {still_failing} records in the failed-record queue");
    }

    let naive_mentors = naive_mentors.min(mentors);
    eprintln!("bench: (d) the naive way over {naive_mentors} mentors (one GET and one PATCH each, one at a time)");
    let next_day = now + Duration::days(1);
    let naive = naive(h, mentors, naive_mentors, next_day).await?;
    Ok(HlfResult {
        contacts,
        mentors,
        full,
        quiet_after_full,
        nightly,
        quiet_after_nightly,
        added: Some(added),
        added_mentors,
        retried: Some(retried),
        retried_records: queued.len(),
        resolved: None,
        killed: Vec::new(),
        naive,
        edited_in_dynamics: edited.len(),
        renewed_in_app: renewed.len(),
        expired_by_time,
    })
}

/// How much of its clock a scenario spans within one day: hlf-50k's (g) runs 2 h 1 min after (b), and (f)'s rerun
/// 31 minutes after the killed run started.
const SCENARIO_SPAN: Duration = Duration::minutes(150);

/// Where a scenario's clock starts: now, or [`SCENARIO_SPAN`] later when the organisation's day ends within it, so
/// that no run of the scenario crosses a local midnight. Crossing one expires by time the certifications that end on
/// the seeding day and adds writes the scenario does not expect (a run of (f) started at 23:45 in Oslo failed that
/// way: its rerun, on a clock 31 minutes later, hid 50 contacts).
fn scenario_start(h: &Harness) -> DateTime<Utc> {
    start_within_a_day(Utc::now(), h.organisation.time_zone)
}

fn start_within_a_day(now: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
    if local_today(now + SCENARIO_SPAN, tz) == local_today(now, tz) {
        now
    } else {
        now + SCENARIO_SPAN
    }
}

/// One initial full sync with `mentors` mentors in the app: a point of the growth curve.
pub(crate) async fn full_sync(h: &Harness, mentors: usize) -> anyhow::Result<SyncPhase> {
    let now = scenario_start(h);
    h.seed_mentors(mentors, now, local_today(now, h.organisation.time_zone))
        .await?;
    eprintln!("bench: seeded {mentors} mentors; initial full sync");
    let service = h.service(Arc::new(FixedClock::new(now)))?;
    sync_phase(h, &service).await
}

/// Every contact read with the mapping's `$select`, streamed or collected.
pub(crate) async fn read_all(h: &Harness, mode: ReadMode) -> anyhow::Result<ReadResult> {
    let mapping = h
        .organisation
        .mapping
        .record(MENTOR)
        .context("the mapping has no mentor record")?;
    let select = mapping.select_columns();
    let query = Query::new(mapping.entity_set()).select(&select);
    let identity = [
        mapping.primary_id().to_owned(),
        "@odata.etag".to_owned(),
        mapping.modified_on().to_owned(),
        mapping.alternate_key().read_key(),
    ];
    let (rows, cost) = h
        .phase(async {
            match mode {
                ReadMode::Streamed | ReadMode::EveryValue => {
                    let mut pages = Box::pin(h.client.pages::<Row>(&query));
                    let (mut rows, mut values) = (0u64, 0u64);
                    while let Some(page) = pages.next().await {
                        for row in page?.rows {
                            rows += 1;
                            values += if mode == ReadMode::Streamed {
                                identity.iter().filter(|c| !row[c.as_str()].is_null()).count()
                            } else {
                                row.iter().filter(|(_, v)| !v.is_null()).count()
                            } as u64;
                        }
                    }
                    if values == 0 {
                        bail!("the read found no values");
                    }
                    Ok(rows)
                }
                ReadMode::Collected => {
                    let all: Vec<Row> = h.client.all_rows(&query).await?;
                    Ok(all.len() as u64)
                }
            }
        })
        .await?;
    Ok(ReadResult { rows, select, cost })
}

async fn sync_phase(h: &Harness, service: &SyncService) -> anyhow::Result<SyncPhase> {
    let table = h
        .organisation
        .mapping
        .record(MENTOR)
        .context("the mapping has no mentor record")?
        .table()
        .to_owned();
    let before = h.store.watermark(ORGANISATION, Direction::Pull, &table).await?;
    let (report, cost) = h.phase(async { Ok(service.run().await?) }).await?;
    if report.status != RunStatus::Succeeded {
        bail!(
            "the run ended {:?}: {}",
            report.status,
            report
                .error
                .as_deref()
                .unwrap_or("records failed; see the failed-record queue")
        );
    }
    Ok(SyncPhase {
        cost,
        rows_read: report.metrics.pull.read,
        written_to_dynamics: report.metrics.push.written,
        written_to_app: report.metrics.pull.written,
        delta_link_before: before.delta_link.is_some(),
        full_resyncs: report.metrics.full_resyncs,
        decide_s: report.metrics.decide_us as f64 / 1e6,
    })
}

/// The way a typical hand-written integration does the nightly push: for each mentor, look the contact up by member
/// number (`GET contacts?$filter=hlf_membernumber eq '...'`) and write the certification columns to it
/// (`PATCH contacts(id)`), one request at a time, through the same `DynamicsClient` (its rate budget and retries
/// apply). It reads nothing back from Dynamics and pushes every mentor whether or not anything changed.
async fn naive(h: &Harness, mentors_total: usize, count: usize, now: DateTime<Utc>) -> anyhow::Result<NaivePhase> {
    let mapping = h
        .organisation
        .mapping
        .record(MENTOR)
        .context("the mapping has no mentor record")?;
    let writer = h.client.writer(mapping);
    let key_column = mapping.alternate_key().column.clone();
    let primary_id = mapping.primary_id().to_owned();
    let today = local_today(now, h.organisation.time_zone);
    let (not_found, cost) = h
        .phase(async {
            let ids: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
            let mut not_found = 0;
            for chunk in ids.chunks(500) {
                for snapshot in h.store.mentors(ORGANISATION, chunk).await? {
                    let Some(member) = snapshot.mentor.member_number.as_deref() else {
                        continue;
                    };
                    let body = certification_body(mapping, &snapshot.certifications, today, now)?;
                    let query = Query::new(mapping.entity_set())
                        .select(std::slice::from_ref(&primary_id))
                        .filter(Filter::eq(&key_column, Literal::Text(member)));
                    let rows: Vec<Row> = h.client.all_rows(&query).await?;
                    let Some(row) = rows.first() else {
                        not_found += 1;
                        continue;
                    };
                    let id = row
                        .get(&primary_id)
                        .and_then(|v| v.as_str())
                        .and_then(|v| Uuid::parse_str(v).ok())
                        .context("a contact without an id")?;
                    let etag = row.get("@odata.etag").and_then(|v| v.as_str()).unwrap_or("*");
                    writer.update_if_unchanged(id, &body, etag).await?;
                }
            }
            Ok(not_found)
        })
        .await?;
    Ok(NaivePhase {
        mentors_total,
        mentors_done: count,
        not_found,
        cost,
    })
}

/// The certification columns for one mentor, converted by the mapping (the same status rule as the engine's).
fn certification_body(
    mapping: &field_mapping::RecordMapping,
    certifications: &[sync_store::Certification],
    today: NaiveDate,
    now: DateTime<Utc>,
) -> anyhow::Result<Row> {
    let view = certification_view(certifications, today);
    let record: AppRecord = [
        ("certification_status", AppValue::Choice(view.status.to_owned())),
        (
            "certification_expiry",
            view.expires_on.map_or(AppValue::Null, AppValue::Date),
        ),
        ("show_on_public_site", AppValue::Bool(view.status == "active")),
        ("app_synced_on", AppValue::DateTime(now)),
    ]
    .into_iter()
    .map(|(field, value)| (field.to_owned(), value))
    .collect();
    mapping.to_dataverse(&record).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the certification columns do not convert: {}", text.join("; "))
    })
}

/// (h), measured: the run after an admin resolved every held conflict at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResolvedResult {
    /// Mentors in the app (each with a conflict on its phone).
    pub(crate) mentors: usize,
    /// Conflicts the first sync held and the admin resolved.
    pub(crate) resolved: usize,
    /// The run that writes the chosen values.
    pub(crate) run: SyncPhase,
}

/// (h) With the phone shared and conflicts on it left to an admin (`manual`), `mentors` mentors whose phone in the
/// app differs from their contact's: the first sync holds a conflict for each; an admin keeps the app's value for
/// all of them at once (as the dashboard does, one resolution each, nothing written yet); the next run, measured,
/// reads the contacts again in bulk and writes every chosen value. A store of its own, against the same emulator.
pub(crate) async fn resolved_conflicts(
    target: &crate::harness::Target,
    mentors: usize,
) -> anyhow::Result<ResolvedResult> {
    let mapping = field_mapping::HLF_DEFAULT_MAPPING.replace(
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"dynamics\"",
        "field = \"phone\"\ncolumn = \"mobilephone\"\nowner = \"shared\"",
    );
    if !mapping.contains("owner = \"shared\"") {
        bail!("the default mapping no longer has the phone field this scenario shares");
    }
    let h = Harness::connect_with(target, Some(&mapping), "\n[conflicts.fields]\nphone = \"manual\"\n").await?;
    let now = scenario_start(&h);
    let today = local_today(now, h.organisation.time_zone);
    eprintln!("bench: (h) {mentors} mentors whose phone differs between the app and Dynamics");
    h.seed_mentors(mentors, now, today).await?;
    let ids: Vec<String> = (0..mentors).map(|i| format!("m{i}")).collect();
    for chunk in ids.chunks(500) {
        for snapshot in h.store.mentors(ORGANISATION, chunk).await? {
            let mut mentor = snapshot.mentor;
            let number = mentor.member_number.clone().unwrap_or_default();
            mentor.phone = Some(format!("+47 9{number}"));
            h.store.upsert_mentor(&mentor).await?;
        }
    }
    let clock = Arc::new(FixedClock::new(now));
    let service = h.service(clock.clone())?;
    service.run().await?;
    let held = h.store.pending_conflicts(ORGANISATION).await?;
    if held.len() != mentors {
        bail!("(h) the first sync held {} conflicts, not {mentors}", held.len());
    }
    for conflict in &held {
        service
            .resolve_conflict(&conflict.id, sync_store::Side::App, "bench admin", false)
            .await?;
    }
    clock.set(now + Duration::hours(1));
    eprintln!(
        "bench: (h) the run after {} conflicts were resolved at once",
        held.len()
    );
    let run = sync_phase(&h, &service).await?;
    let left = h.store.pending_conflicts(ORGANISATION).await?.len();
    if left > 0 {
        bail!("(h) left {left} conflicts pending");
    }
    drop(service);
    h.cleanup().await?;
    Ok(ResolvedResult {
        mentors,
        resolved: held.len(),
        run,
    })
}

/// Where (f) kills the first full sync with SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub(crate) enum KillPoint {
    /// Half the contacts read.
    Pull,
    /// Half the mentors written.
    Writes,
    /// Every contact read and the last mentors written, no watermark stored yet.
    Watermark,
}

impl KillPoint {
    /// Every point, in the order a run reaches them.
    pub(crate) const ALL: [KillPoint; 3] = [KillPoint::Pull, KillPoint::Writes, KillPoint::Watermark];

    /// The flag value, for a child's command line.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            KillPoint::Pull => "pull",
            KillPoint::Writes => "writes",
            KillPoint::Watermark => "watermark",
        }
    }

    /// The point in words, for the report.
    pub(crate) fn description(self) -> &'static str {
        match self {
            KillPoint::Pull => "during the pull (half the contacts read)",
            KillPoint::Writes => "during the writes (half the mentors written)",
            KillPoint::Watermark => "before the watermark (every contact read and the last mentors written)",
        }
    }

    /// Whether a run with this progress has reached the point. A first sync writes a page's mentors as soon as it
    /// has read them, so the writes may come before, between or after the pages: each point holds whichever way. A
    /// few generated mentors need no write, so the last point is all but 1% written; [`killed_rerun`] checks that
    /// the rerun after it wrote nothing, which proves the kill came after the last write.
    fn reached(self, pulled: u64, pushed: u64, contacts: u64, mentors: u64) -> bool {
        match self {
            KillPoint::Pull => pulled >= contacts / 2 && pulled < contacts,
            KillPoint::Writes => pushed >= mentors / 2 && pushed < mentors * 99 / 100,
            KillPoint::Watermark => pulled >= contacts && pushed >= mentors * 99 / 100,
        }
    }
}

/// The line the run to be killed prints when it reaches its point (and then waits there to be killed).
const AT_KILL_POINT: &str = "bench: at the kill point";

/// (f), one point: the rerun after the first full sync was killed there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KilledResult {
    /// Where the first sync was killed.
    pub(crate) point: KillPoint,
    /// What the emulator served the killed run.
    pub(crate) killed: crate::harness::SimCounts,
    /// The rerun, measured.
    pub(crate) rerun: SyncPhase,
}

/// (f) at one point: seeds the app, starts the first full sync in a process of its own (this binary's
/// `killed-run`), kills that process with SIGKILL when it reports the point, then measures the rerun in this
/// process on the same store, and checks that it finished the job: every mentor linked, and a delta right after it
/// writes nothing.
pub(crate) async fn killed_rerun(
    target: &crate::harness::Target,
    h: &Harness,
    point: KillPoint,
    contacts: usize,
    mentors: usize,
) -> anyhow::Result<KilledResult> {
    use std::io::BufRead;

    let now = scenario_start(h);
    h.seed_mentors(mentors, now, local_today(now, h.organisation.time_zone))
        .await?;
    eprintln!("bench: (f) the first full sync, killed {}", point.description());
    let before = h.sim_counts().await?;
    let exe = std::env::current_exe().context("finding the bench binary's own path")?;
    let mut child = std::process::Command::new(exe)
        .arg("child")
        .arg("--instance")
        .arg(&target.instance)
        .arg("--ca-file")
        .arg(&target.ca_file)
        .arg("--store-url")
        .arg(&h.store_url)
        .args(["killed-run", "--point", point.flag()])
        .args(["--contacts", &contacts.to_string(), "--mentors", &mentors.to_string()])
        .args(["--now", &now.to_rfc3339()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .context("starting the run to be killed")?;
    let stdout = child.stdout.take().context("the killed run's output")?;
    let reached = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line == AT_KILL_POINT)
    })
    .await?;
    if !reached {
        let status = child.wait()?;
        bail!("the run to be killed ended ({status}) before it reached the point");
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no rollback, no goodbye to the database.
    child.kill().context("killing the run")?;
    let status = child.wait()?;
    let killed = h.sim_counts().await?.since(before);

    // A SQLite lease outlives its killed holder: the rerun's clock is past it. A PostgreSQL lock goes with the
    // killed session a moment after the socket closes: the rerun tries again until then.
    let clock = Arc::new(FixedClock::new(now + Duration::minutes(31)));
    let service = h.service(clock.clone())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let rerun = loop {
        match sync_phase(h, &service).await {
            Err(e)
                if matches!(
                    e.downcast_ref::<sync_engine::Error>(),
                    Some(sync_engine::Error::AlreadyRunning { .. })
                ) && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    eprintln!(
        "bench: (f) killed ({status}), then the rerun read {} contacts and wrote {}",
        rerun.rows_read, rerun.written_to_dynamics
    );
    if point == KillPoint::Watermark && rerun.written_to_dynamics > 0 {
        bail!(
            "(f) the run was killed before its last write: the rerun wrote {} contacts",
            rerun.written_to_dynamics
        );
    }
    let ids: Vec<String> = (0..mentors).map(|i| format!("m{i}")).collect();
    let linked = h.store.links(ORGANISATION, MENTOR, &ids).await?.len();
    if linked != mentors {
        bail!("(f) after the rerun {linked} of {mentors} mentors are linked");
    }
    clock.set(now + Duration::minutes(32));
    let after = sync_phase(h, &service).await?;
    if after.written_to_dynamics > 0 {
        bail!(
            "(f) the delta after the rerun still wrote {} contacts",
            after.written_to_dynamics
        );
    }
    Ok(KilledResult { point, killed, rerun })
}

/// The run (f) kills: the first full sync on the store the parent seeded, which prints [`AT_KILL_POINT`] when it
/// reaches `point` and waits there for the SIGKILL. Its clock starts at `now`, the parent's, so the lease it leaves
/// ends when the parent expects.
pub(crate) async fn killed_run(
    h: &Harness,
    point: KillPoint,
    contacts: usize,
    mentors: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (contacts, mentors) = (contacts as u64, mentors as u64);
    let service =
        h.service(Arc::new(FixedClock::new(now)))?
            .with_progress(Arc::new(move |p: &sync_engine::Progress<'_>| {
                if point.reached(p.pulled, p.pushed, contacts, mentors) {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{AT_KILL_POINT}");
                    let _ = out.flush();
                    // The run waits here (its progress observer is called inline) until the parent kills it.
                    std::thread::sleep(std::time::Duration::from_secs(600));
                }
            }));
    let report = service.run().await?;
    bail!("the run ended {:?} without reaching the kill point", report.status)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::{KillPoint, SCENARIO_SPAN, local_today, start_within_a_day};

    #[test]
    fn a_scenario_never_crosses_the_organisations_midnight() {
        let oslo = chrono_tz::Europe::Oslo;
        let at = |text: &str| text.parse::<DateTime<Utc>>().expect("a time");
        // 13:00 in Oslo (winter time, UTC+1): the scenario starts now.
        assert_eq!(
            start_within_a_day(at("2026-12-04T12:00:00Z"), oslo),
            at("2026-12-04T12:00:00Z")
        );
        // 23:45 in Oslo, the run of (f) that failed: it starts after midnight instead.
        for now in ["2026-12-04T22:45:00Z", "2026-12-04T20:31:00Z", "2026-12-04T22:59:59Z"] {
            let start = start_within_a_day(at(now), oslo);
            assert!(start > at(now), "{now}");
            assert_eq!(
                local_today(start, oslo),
                local_today(start + SCENARIO_SPAN, oslo),
                "{now}: the scenario's span stays in one day"
            );
        }
    }

    /// Each point is reached in a run's progress of (a), at the step its name says, whether the mentors are written
    /// after every page was read or as soon as the first page (which holds them all) was: 50,000 contacts in pages
    /// of 5,000, 5,000 mentors in batches of 1,000.
    #[test]
    fn each_kill_point_is_reached_where_its_name_says() {
        let (contacts, mentors) = (50_000, 5_000);
        let pages = |from: u64, pushed: u64| (from..=10).map(move |page| (page * 5_000, pushed));
        let batches = |pulled: u64| (1..=5).map(move |batch| (pulled, batch * 1_000));
        let writes_last: Vec<(u64, u64)> = pages(1, 0).chain(batches(50_000)).collect();
        let writes_first: Vec<(u64, u64)> = pages(1, 0)
            .take(1)
            .chain(batches(5_000))
            .chain(pages(2, 5_000))
            .collect();
        for (progress, expected) in [
            (writes_last, [(25_000, 0), (50_000, 3_000), (50_000, 5_000)]),
            (writes_first, [(25_000, 5_000), (5_000, 3_000), (50_000, 5_000)]),
        ] {
            for (point, first) in KillPoint::ALL.into_iter().zip(expected) {
                let reached = progress
                    .iter()
                    .copied()
                    .find(|&(pulled, pushed)| point.reached(pulled, pushed, contacts, mentors));
                assert_eq!(reached, Some(first), "{point:?} in {progress:?}");
            }
        }
    }
}
