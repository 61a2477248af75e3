//! The lower bound of a run's requests, the targets of issue 9, and the Markdown the bench writes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::harness::PhaseCost;
use crate::scenarios::{HlfResult, NAIVE_CONCURRENCY, ReadResult, SyncPhase};

/// Rows per page: Dataverse's maximum.
pub(crate) const PAGE_ROWS: u64 = 5_000;
/// Operations per `$batch`: Dataverse's maximum.
pub(crate) const BATCH_OPERATIONS: u64 = 1_000;
/// Metadata requests every run makes before it reads or writes: the table definition (its change-tracking flag),
/// its attributes, and the option sets of the two kinds of choice column the mapping uses (picklist and yes/no).
/// They are the schema-drift guard (nothing is written to a table that no longer matches the mapping; see
/// docs/ARCHITECTURE.md) and they prove the token works, so no WhoAmI is spent. The token request goes to Azure AD, not to
/// Dynamics, and is not counted.
pub(crate) const METADATA_REQUESTS: u64 = 4;

/// The fewest requests a run can make: `ceil(rows read / 5,000)` pages (at least one, the delta read that finds
/// nothing), `ceil(writes / 1,000)` batches, and the metadata constant.
pub(crate) fn lower_bound(rows_read: u64, writes: u64) -> u64 {
    rows_read.div_ceil(PAGE_ROWS).max(1) + writes.div_ceil(BATCH_OPERATIONS) + METADATA_REQUESTS
}

/// The request target: at most 1.2 times the lower bound, plus 5.
pub(crate) fn request_target(bound: u64) -> f64 {
    1.2 * bound as f64 + 5.0
}

/// Peak memory allowed to a run, in MB.
pub(crate) const PEAK_MEMORY_TARGET_MB: f64 = 150.0;
/// Requests allowed to a delta with nothing changed.
pub(crate) const QUIET_TARGET: u64 = 5;
/// How many times fewer requests than the naive way.
pub(crate) const NAIVE_FACTOR_TARGET: f64 = 20.0;
/// (a)'s CPU time at most this (issue 15).
pub(crate) const FULL_CPU_TARGET_S: f64 = 2.0;
/// (a)'s wall time at most this (issue 15).
pub(crate) const FULL_WALL_TARGET_S: f64 = 5.0;
/// (b)'s CPU time at most this (issue 15).
pub(crate) const NIGHTLY_CPU_TARGET_S: f64 = 0.3;

/// One point of the growth curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrowthPoint {
    /// Contacts in the emulator.
    pub(crate) contacts: usize,
    /// Mentors in the app.
    pub(crate) mentors: usize,
    /// The full sync.
    pub(crate) run: SyncPhase,
    /// The emulator process's own peak memory, in MB (not part of the sync's).
    pub(crate) emulator_peak_rss_mb: f64,
}

/// DynamicsWebApi's `retrieveAll`, as its script reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NodeRead {
    /// Rows read.
    pub(crate) rows: u64,
    /// Wall seconds.
    pub(crate) wall_s: f64,
    /// CPU seconds (user + system).
    pub(crate) cpu_s: f64,
    /// Peak resident memory of the node process, in MB.
    pub(crate) peak_rss_mb: f64,
}

/// A reader run several times: the run of median CPU time, and the least and most CPU time of all runs.
#[derive(Debug, Clone)]
pub(crate) struct Repeated<T> {
    pub(crate) median: T,
    pub(crate) runs: usize,
    pub(crate) cpu_min_s: f64,
    pub(crate) cpu_max_s: f64,
}

impl<T> Repeated<T> {
    /// The run of median CPU time (the lower middle one of an even number) among `runs`.
    pub(crate) fn median_of(mut runs: Vec<T>, cpu: impl Fn(&T) -> f64) -> anyhow::Result<Repeated<T>> {
        runs.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
        let count = runs.len();
        let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
            anyhow::bail!("no run to take the median of");
        };
        let (cpu_min_s, cpu_max_s) = (cpu(first), cpu(last));
        let median = runs.swap_remove((count - 1) / 2);
        Ok(Repeated {
            median,
            runs: count,
            cpu_min_s,
            cpu_max_s,
        })
    }
}

/// The side-by-side full read.
#[derive(Debug, Clone)]
pub(crate) struct RetrieveAllResult {
    /// Contacts in the emulator.
    pub(crate) contacts: usize,
    /// This project's client, page by page, reading what the engine reads of every row.
    pub(crate) streamed: Repeated<ReadResult>,
    /// This project's client, page by page, every value read.
    pub(crate) every_value: Repeated<ReadResult>,
    /// This project's client, every row in one list.
    pub(crate) collected: Repeated<ReadResult>,
    /// DynamicsWebApi.
    pub(crate) node: Repeated<NodeRead>,
    /// `node --version`.
    pub(crate) node_version: String,
}

/// How the figures were produced, stated at the top of each section.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    /// The command line.
    pub(crate) command: String,
    /// `release` or `debug`.
    pub(crate) profile: &'static str,
    /// When, UTC.
    pub(crate) date: String,
    /// Injected latency per request.
    pub(crate) latency_ms: u64,
    /// The machine and its load when the run started.
    pub(crate) machine: String,
    /// The sync store, in words.
    pub(crate) store: &'static str,
}

/// A target check for the table.
struct Check {
    target: String,
    measured: String,
    pass: bool,
}

/// The targets and what was measured against them, as a table.
fn checks_table(out: &mut String, checks: &[Check]) {
    let _ = writeln!(out, "| target | measured | result |");
    let _ = writeln!(out, "| --- | --- | --- |");
    for check in checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            check.target,
            check.measured,
            verdict(check.pass)
        );
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn header(out: &mut String, info: &RunInfo) {
    let _ = writeln!(out, "Command: `{}` ({} build).\n", info.command, info.profile);
    let _ = writeln!(
        out,
        "Measured {} on {}: wall times depend on what else the machine does; CPU time, requests and memory hardly \
         do. The emulator (`dataverse-sim`) runs as \
         a separate process on loopback over HTTPS with {} ms of latency injected into every request and Dataverse's \
         service-protection limits (6,000 requests, 1,200 s of execution time and 52 concurrent requests per user \
         per 5 minutes); every scenario runs in a child process of the bench, so peak memory is the sync's alone.\n",
        info.date, info.machine, info.latency_ms
    );
}

fn mb(value: f64) -> String {
    format!("{value:.1} MB")
}

fn secs(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} s")
    } else {
        format!("{value:.2} s")
    }
}

fn phase_row(out: &mut String, name: &str, phase: &SyncPhase) {
    let bound = lower_bound(phase.rows_read, phase.written_to_dynamics);
    let c = &phase.cost;
    let _ = writeln!(
        out,
        "| {name} | {} / {} | {} | {} + {} + {METADATA_REQUESTS} = {bound} | {:.2} | {} | {} | {} | {} ({}) |",
        phase.rows_read,
        phase.written_to_dynamics,
        c.requests,
        phase.rows_read.div_ceil(PAGE_ROWS).max(1),
        phase.written_to_dynamics.div_ceil(BATCH_OPERATIONS),
        c.requests as f64 / bound as f64,
        c.throttled,
        secs(c.cost.wall_s),
        secs(c.cost.cpu_s),
        mb(c.cost.peak_rss_mb),
        mb(c.cost.rss_growth_mb),
    );
}

fn request_check(name: &str, phase: &SyncPhase) -> Check {
    let bound = lower_bound(phase.rows_read, phase.written_to_dynamics);
    let limit = request_target(bound);
    Check {
        target: format!("{name}: requests within 1.2 x lower bound + 5"),
        measured: format!("{} <= {limit:.1}", phase.cost.requests),
        pass: phase.cost.requests as f64 <= limit,
    }
}

fn memory_check(name: &str, cost: &PhaseCost) -> Check {
    Check {
        target: format!("{name}: peak memory under {PEAK_MEMORY_TARGET_MB:.0} MB"),
        measured: mb(cost.cost.peak_rss_mb),
        pass: cost.cost.peak_rss_mb < PEAK_MEMORY_TARGET_MB,
    }
}

/// The naive way's wall time over every mentor: measured when it ran over all of them, otherwise extrapolated
/// linearly from the subset (the only figure that is extrapolated; flagged as such in the output).
fn naive_wall(result: &HlfResult) -> (f64, bool) {
    let naive = &result.naive;
    if naive.mentors_done >= naive.mentors_total || naive.mentors_done == 0 {
        (naive.cost.cost.wall_s, false)
    } else {
        (
            naive.cost.cost.wall_s * naive.mentors_total as f64 / naive.mentors_done as f64,
            true,
        )
    }
}

/// Where one run's CPU went: decoding answers and deciding (measured by the client and the engine themselves on the
/// thread that drives the run), the SQLite store's worker threads, the runtime's worker threads (the HTTP connections:
/// TLS and HTTP), and the rest.
pub(crate) fn cpu_row(out: &mut String, name: &str, phase: &SyncPhase) {
    let c = &phase.cost.cost;
    let decode = phase.cost.decode_s;
    let decide = phase.decide_s;
    let other = (c.cpu_s - decode - decide - c.database_s - c.io_s).max(0.0);
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} | {} |",
        secs(c.cpu_s),
        secs(decode),
        secs(decide),
        secs(c.database_s),
        secs(c.io_s),
        secs(other)
    );
}

/// The header of the CPU table.
pub(crate) fn cpu_header(out: &mut String) {
    let _ = writeln!(
        out,
        "\n| run | CPU | decode | decide | store (database threads) | TLS and HTTP (I/O threads) | other (store calls, \
         bookkeeping, allocation) |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- |");
}

/// The hlf-50k section.
pub(crate) fn hlf_markdown(info: &RunInfo, r: &HlfResult) -> String {
    let mut out = String::new();
    header(&mut out, info);
    let _ = writeln!(
        out,
        "Scenario `hlf-50k`: {} contacts in Dynamics (plus the emulator's 5 demo rows), {} mentors in the app ({}), \
         change tracking on, the production wiring (configuration, Azure AD credential, \
         `DynamicsClient`, `SyncService`, `Store`). Run order: (a), (c), the night's changes, (b), (c) again, (e) as \
         many mentors again added in the app, (g) 500 records of an outage retried, (d), then (h) in a store of its own, then (f): for each of three \
         points, (a) from the start in an emulator and a store of their own, its process killed with SIGKILL at the \
         point, and the rerun measured (checked after it: every mentor linked, and a delta right after writes \
         nothing).\n",
        r.contacts, r.mentors, info.store
    );
    let _ = writeln!(
        out,
        "| run | rows read / written to Dynamics | API requests | lower bound (pages + batches + metadata) | ratio | \
         throttled (429) | wall | CPU | peak memory (growth) |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    phase_row(&mut out, "(a) initial full sync", &r.full);
    phase_row(
        &mut out,
        &format!(
            "(b) nightly delta: {} contacts changed in Dynamics, {} mentors in the app, {} expired by time",
            r.edited_in_dynamics, r.renewed_in_app, r.expired_by_time
        ),
        &r.nightly,
    );
    phase_row(
        &mut out,
        "(c) delta with nothing changed, after (a)",
        &r.quiet_after_full,
    );
    phase_row(
        &mut out,
        "(c) delta with nothing changed, after (b)",
        &r.quiet_after_nightly,
    );
    if let Some(added) = &r.added {
        phase_row(
            &mut out,
            &format!("(e) {} mentors added after the first sync", r.added_mentors),
            added,
        );
    }
    if let Some(retried) = &r.retried {
        phase_row(
            &mut out,
            &format!(
                "(g) {} records in the failed-record queue retried (renewed in the app during an outage)",
                r.retried_records
            ),
            retried,
        );
    }
    if let Some(resolved) = &r.resolved {
        phase_row(
            &mut out,
            &format!(
                "(h) {} conflicts resolved by an admin at once (phone shared, `manual`; {} mentors, a store of its own)",
                resolved.resolved, resolved.mentors
            ),
            &resolved.run,
        );
    }
    for killed in &r.killed {
        phase_row(
            &mut out,
            &format!(
                "(f) rerun after (a) was killed with SIGKILL {} (the killed run: {} requests, {} rows served)",
                killed.point.description(),
                killed.killed.requests,
                killed.killed.rows
            ),
            &killed.rerun,
        );
    }
    let naive = &r.naive;
    let mut cpu = String::new();
    cpu_header(&mut cpu);
    cpu_row(&mut cpu, "(a)", &r.full);
    cpu_row(&mut cpu, "(b)", &r.nightly);
    cpu_row(&mut cpu, "(c) after (a)", &r.quiet_after_full);
    cpu_row(&mut cpu, "(c) after (b)", &r.quiet_after_nightly);
    if let Some(added) = &r.added {
        cpu_row(&mut cpu, "(e)", added);
    }
    if let Some(retried) = &r.retried {
        cpu_row(&mut cpu, "(g)", retried);
    }
    if let Some(resolved) = &r.resolved {
        cpu_row(&mut cpu, "(h)", &resolved.run);
    }
    for killed in &r.killed {
        cpu_row(&mut cpu, &format!("(f) {}", killed.point.flag()), &killed.rerun);
    }
    let (naive_wall_s, extrapolated) = naive_wall(r);
    let naive_requests = naive.cost.requests;
    let _ = writeln!(
        out,
        "| (d) the naive way: GET + PATCH per mentor, {} mentors | - / {} | {naive_requests} | - | - | {} | {}{} | {} | \
         {} ({}) |",
        naive.mentors_done,
        naive.mentors_done - naive.not_found,
        naive.cost.throttled,
        secs(naive_wall_s),
        if extrapolated { " (extrapolated)" } else { "" },
        secs(naive.cost.cost.cpu_s),
        mb(naive.cost.cost.peak_rss_mb),
        mb(naive.cost.cost.rss_growth_mb),
    );
    let _ = writeln!(out);

    let mut checks = vec![
        request_check("(a)", &r.full),
        request_check("(b)", &r.nightly),
        request_check("(c) after (a)", &r.quiet_after_full),
        request_check("(c) after (b)", &r.quiet_after_nightly),
    ];
    if let Some(added) = &r.added {
        checks.push(request_check("(e)", added));
    }
    if let Some(retried) = &r.retried {
        checks.push(request_check("(g)", retried));
    }
    if let Some(resolved) = &r.resolved {
        checks.push(request_check("(h)", &resolved.run));
    }
    for killed in &r.killed {
        checks.push(request_check(&format!("(f) {}", killed.point.flag()), &killed.rerun));
    }
    // Issue 15's targets for a run's CPU and wall time.
    for (name, phase, cpu_s, wall_s) in [
        ("(a)", &r.full, FULL_CPU_TARGET_S, Some(FULL_WALL_TARGET_S)),
        ("(b)", &r.nightly, NIGHTLY_CPU_TARGET_S, None),
    ] {
        checks.push(Check {
            target: format!("{name}: CPU at most {cpu_s} s"),
            measured: secs(phase.cost.cost.cpu_s),
            pass: phase.cost.cost.cpu_s <= cpu_s,
        });
        if let Some(wall_s) = wall_s {
            checks.push(Check {
                target: format!("{name}: wall time at most {wall_s} s"),
                measured: secs(phase.cost.cost.wall_s),
                pass: phase.cost.cost.wall_s <= wall_s,
            });
        }
    }
    for (name, phase) in [
        ("(c) after (a)", &r.quiet_after_full),
        ("(c) after (b)", &r.quiet_after_nightly),
    ] {
        checks.push(Check {
            target: format!("{name}: a delta with nothing changed makes at most {QUIET_TARGET} requests"),
            measured: phase.cost.requests.to_string(),
            pass: phase.cost.requests <= QUIET_TARGET,
        });
    }
    for (name, phase) in [
        ("(a)", &r.full),
        ("(b)", &r.nightly),
        ("(c) after (a)", &r.quiet_after_full),
        ("(c) after (b)", &r.quiet_after_nightly),
    ] {
        checks.push(memory_check(name, &phase.cost));
    }
    // The naive request count is only comparable when the naive loop covered every mentor; a shortened loop (as
    // `--naive-mentors` asks) checks nothing rather than failing a target it did not measure.
    let naive_complete = naive.mentors_done >= naive.mentors_total;
    let naive_checks = [("(b) nightly delta", &r.nightly), ("(a) initial full sync", &r.full)];
    for (name, phase) in naive_checks.into_iter().filter(|_| naive_complete) {
        let factor = naive_requests as f64 / phase.cost.requests.max(1) as f64;
        checks.push(Check {
            target: format!("{name}: at least {NAIVE_FACTOR_TARGET:.0}x fewer requests than the naive way"),
            measured: format!("{factor:.0}x ({naive_requests} / {})", phase.cost.requests),
            pass: factor >= NAIVE_FACTOR_TARGET,
        });
    }
    for (name, phase) in [
        ("(b)", &r.nightly),
        ("(c) after (a)", &r.quiet_after_full),
        ("(c) after (b)", &r.quiet_after_nightly),
    ] {
        let followed = phase.delta_link_before && phase.full_resyncs == 0 && (phase.rows_read as usize) < r.contacts;
        checks.push(Check {
            target: format!("{name}: followed the stored delta link (change tracking)"),
            measured: format!(
                "delta link stored: {}, full resyncs: {}, rows read: {}",
                if phase.delta_link_before { "yes" } else { "no" },
                phase.full_resyncs,
                phase.rows_read
            ),
            pass: followed,
        });
    }
    checks_table(&mut out, &checks);
    let _ = writeln!(out);

    let _ = writeln!(
        out,
        "- API requests are the client's own count (a `$batch` is one request, a retry counts again). The \
         emulator counted {}, {}, {}, {} and {} requests for (a), (b), (c) after (a), (c) after (b) and (d); its \
         count includes the Azure AD token requests (one per token, made when the client first needs one), which go \
         to the token endpoint rather than to Dynamics' Web API.",
        r.full.cost.sim.requests,
        r.nightly.cost.sim.requests,
        r.quiet_after_full.cost.sim.requests,
        r.quiet_after_nightly.cost.sim.requests,
        naive.cost.sim.requests
    );
    let _ = writeln!(
        out,
        "- The lower bound's constant is {METADATA_REQUESTS} metadata requests per run: the table definition (which \
         says whether change tracking is on), its attributes, and the option sets of the picklist and yes/no \
         columns the mapping uses. They are the schema-drift guard (nothing is written to a table that no longer \
         matches the mapping) and prove the token, so no WhoAmI is needed."
    );
    let echoes = r.nightly.rows_read.saturating_sub(r.edited_in_dynamics as u64);
    let _ = writeln!(
        out,
        "- (b) read {} contacts through the delta link: the {} edited in Dynamics{}. It wrote {} mentors to the app \
         and {} to Dynamics ({} changed in the app, {} expired overnight with no app row changed). (c) after (a) \
         read {} rows and (c) after (b) {}: a run's own writes to Dynamics come back once in the next delta, because \
         the delta token is taken when a read starts.",
        r.nightly.rows_read,
        r.edited_in_dynamics,
        if echoes == 0 {
            String::new()
        } else {
            format!(" and {echoes} rows an earlier run wrote itself")
        },
        r.nightly.written_to_app,
        r.nightly.written_to_dynamics,
        r.renewed_in_app,
        r.expired_by_time,
        r.quiet_after_full.rows_read,
        r.quiet_after_nightly.rows_read
    );
    let _ = writeln!(
        out,
        "- (d) runs through the same `DynamicsClient` (its rate budget, which keeps 10% headroom under the 6,000 \
         requests per 5 minutes, and its retries), {} request at a time, as a hand-written loop does. It made {} \
         requests for {} mentors; the client waited {:.0} s for its rate budget and Dynamics answered {} requests \
         with 429 ({:.1} requests/s on average; 6,000 per 5 minutes is 20 per second).{}",
        NAIVE_CONCURRENCY,
        naive_requests,
        naive.mentors_done,
        naive.cost.waited_s,
        naive.cost.sim.throttled,
        naive_requests as f64 / naive.cost.cost.wall_s.max(0.001),
        if extrapolated {
            format!(
                " It ran over the first {} of the {} mentors only: its wall time is extrapolated linearly to all of \
                 them (which understates it, since the rate budget bites harder the longer it runs); its request \
                 count is not extrapolated and the request-ratio targets are not judged.",
                naive.mentors_done, naive.mentors_total
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "- Peak memory is the bench process's resident set at its highest during the run (VmHWM, reset before each \
         run); the figure in parentheses is its growth over the resident set at the start of the run."
    );
    let _ = writeln!(
        out,
        "\nWhere each run's CPU went (seconds). Decode and decide are measured by the client and the engine on the \
         thread that drives the run; the store column is the CPU of SQLite's worker threads, the TLS and HTTP column \
         that of the async runtime's worker threads, where the connections run; other is the rest of the driving \
         thread (the store calls' own overhead, bookkeeping, allocation). Thread CPU is counted in 10 ms ticks."
    );
    out.push_str(&cpu);
    out
}

/// The growth-curve section.
pub(crate) fn growth_markdown(info: &RunInfo, points: &[GrowthPoint]) -> String {
    let mut out = String::new();
    header(&mut out, info);
    let _ = writeln!(
        out,
        "The initial full sync at growing table sizes, each in a fresh emulator and a fresh child process. The app \
         has 5,000 mentors (or as many as there are contacts); only the contact table grows, so the writes stay the \
         same and the pages grow as rows / 5,000.\n"
    );
    let _ = writeln!(
        out,
        "| contacts | mentors | rows read | API requests | lower bound | ratio | throttled | wall | CPU | peak memory \
         (growth) | emulator's own peak |"
    );
    let _ = writeln!(
        out,
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for p in points {
        let r = &p.run;
        let bound = lower_bound(r.rows_read, r.written_to_dynamics);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {bound} | {:.2} | {} | {} | {} | {} ({}) | {} |",
            p.contacts,
            p.mentors,
            r.rows_read,
            r.cost.requests,
            r.cost.requests as f64 / bound as f64,
            r.cost.throttled,
            secs(r.cost.cost.wall_s),
            secs(r.cost.cost.cpu_s),
            mb(r.cost.cost.peak_rss_mb),
            mb(r.cost.cost.rss_growth_mb),
            mb(p.emulator_peak_rss_mb),
        );
    }
    let _ = writeln!(out);
    let mut checks = Vec::new();
    for p in points {
        checks.push(request_check(&format!("{} contacts", p.contacts), &p.run));
        checks.push(memory_check(&format!("{} contacts", p.contacts), &p.run.cost));
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let (low, high) = (first.run.cost.cost.peak_rss_mb, last.run.cost.cost.peak_rss_mb);
        let rows = last.contacts as f64 / first.contacts.max(1) as f64;
        checks.push(Check {
            target: format!(
                "memory stays flat: peak at {} contacts within 1.5x of the peak at {}",
                last.contacts, first.contacts
            ),
            measured: format!(
                "{} vs {} ({:.2}x for {rows:.0}x the rows)",
                mb(high),
                mb(low),
                high / low.max(0.1)
            ),
            pass: high <= 1.5 * low,
        });
    }
    checks_table(&mut out, &checks);
    out
}

/// The full read's CPU time at most this share of DynamicsWebApi's (issue 15).
pub(crate) const READ_CPU_RATIO_TARGET: f64 = 0.2;
/// The full read's peak memory at most this share of DynamicsWebApi's (issue 15).
pub(crate) const READ_MEMORY_RATIO_TARGET: f64 = 0.35;

/// The least and most CPU time of a repeated reader's runs.
fn range<T>(r: &Repeated<T>) -> String {
    format!("{:.2} to {:.2} s", r.cpu_min_s, r.cpu_max_s)
}

/// The side-by-side full read section.
pub(crate) fn retrieve_all_markdown(info: &RunInfo, r: &RetrieveAllResult) -> String {
    let mut out = String::new();
    header(&mut out, info);
    let _ = writeln!(
        out,
        "A full read of the {} contacts with the engine's `$select` ({} columns, pages of 5,000) against the same \
         emulator instance, each reader in its own process: this project's `DynamicsClient` page by page (`pages`) \
         reading what the engine reads of every contact (id, etag, modification time and member number; the client \
         keeps a row's values as text and decodes each when it is first read), the same reading every value of \
         every row, and into one list (`all_rows`); and DynamicsWebApi 2.5.0's `retrieveAll` (node {}, \
         `bins/bench/node/retrieve-all.mjs`), which returns every row in one array, every value decoded. The four \
         readers run in turn, {} rounds; each line shows the run of median CPU time, and the least and most CPU \
         time of the {} runs. Wall and CPU time cover the read alone (token request included, process start \
         excluded; CPU from the process's CPU clock on both sides); peak memory is the whole process's (VmHWM for \
         ours, `process.resourceUsage().maxRSS` for node).\n",
        r.contacts,
        r.streamed.median.select.len(),
        r.node_version,
        r.streamed.runs,
        r.streamed.runs,
    );
    let _ = writeln!(
        out,
        "| reader | rows | wall | CPU | CPU, least-most | peak memory | wall vs DynamicsWebApi | CPU vs \
         DynamicsWebApi | memory vs DynamicsWebApi |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let node = &r.node.median;
    for (name, read) in [
        (
            "this project's client, streamed (`pages`), as the engine reads",
            &r.streamed,
        ),
        ("this project's client, streamed, every value read", &r.every_value),
        (
            "this project's client, collected (`all_rows`), no value read",
            &r.collected,
        ),
    ] {
        let c = &read.median.cost.cost;
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {:.2}x | {:.2}x | {:.2}x |",
            read.median.rows,
            secs(c.wall_s),
            secs(c.cpu_s),
            range(read),
            mb(c.peak_rss_mb),
            c.wall_s / node.wall_s,
            c.cpu_s / node.cpu_s.max(0.001),
            c.peak_rss_mb / node.peak_rss_mb.max(0.1),
        );
    }
    let _ = writeln!(
        out,
        "| DynamicsWebApi `retrieveAll` | {} | {} | {} | {} | {} | 1x | 1x | 1x |",
        node.rows,
        secs(node.wall_s),
        secs(node.cpu_s),
        range(&r.node),
        mb(node.peak_rss_mb)
    );
    let _ = writeln!(out);
    let streamed = &r.streamed.median.cost.cost;
    let cpu_ratio = streamed.cpu_s / node.cpu_s.max(0.001);
    let memory_ratio = streamed.peak_rss_mb / node.peak_rss_mb.max(0.1);
    let wall_ratio = streamed.wall_s / node.wall_s.max(0.001);
    checks_table(
        &mut out,
        &[
            Check {
                target: format!("the read as the engine reads: CPU at most {READ_CPU_RATIO_TARGET}x DynamicsWebApi's"),
                measured: format!("{cpu_ratio:.2}x"),
                pass: cpu_ratio <= READ_CPU_RATIO_TARGET,
            },
            Check {
                target: format!(
                    "the read as the engine reads: peak memory at most {READ_MEMORY_RATIO_TARGET}x DynamicsWebApi's"
                ),
                measured: format!("{memory_ratio:.2}x"),
                pass: memory_ratio <= READ_MEMORY_RATIO_TARGET,
            },
            Check {
                target: "the read as the engine reads: wall time no more than DynamicsWebApi's".to_owned(),
                measured: format!("{wall_ratio:.2}x"),
                pass: wall_ratio <= 1.0,
            },
        ],
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Ratios below 1 mean this project's client used less. This project's client made {} requests for the read \
         (one per page of 5,000); wall time is mostly the injected latency and the emulator's serving time, the same \
         for both readers.",
        r.streamed.median.cost.requests
    );
    out
}

/// The growth-in-mentors section: the initial full sync over the same contacts with more and more mentors.
pub(crate) fn mentor_growth_markdown(info: &RunInfo, points: &[GrowthPoint]) -> String {
    let mut out = String::new();
    header(&mut out, info);
    let contacts = points.first().map_or(0, |p| p.contacts);
    let _ = writeln!(
        out,
        "The initial full sync over {contacts} contacts with more and more of them mentors in the app, each in a fresh \
         emulator and a fresh child process: the pages stay the same, the writes grow as mentors / 1,000.\n"
    );
    let _ = writeln!(
        out,
        "| contacts | mentors | rows read / written | API requests | lower bound | ratio | wall | CPU | CPU per 1,000 \
         mentors | peak memory (growth) |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for p in points {
        let r = &p.run;
        let bound = lower_bound(r.rows_read, r.written_to_dynamics);
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} | {} | {bound} | {:.2} | {} | {} | {} | {} ({}) |",
            p.contacts,
            p.mentors,
            r.rows_read,
            r.written_to_dynamics,
            r.cost.requests,
            r.cost.requests as f64 / bound as f64,
            secs(r.cost.cost.wall_s),
            secs(r.cost.cost.cpu_s),
            secs(r.cost.cost.cpu_s * 1000.0 / p.mentors.max(1) as f64),
            mb(r.cost.cost.peak_rss_mb),
            mb(r.cost.cost.rss_growth_mb),
        );
    }
    let _ = writeln!(out);
    let mut checks = Vec::new();
    for p in points {
        checks.push(request_check(&format!("{} mentors", p.mentors), &p.run));
    }
    // Linear: each step's CPU per added mentor within 1.5x of the first step's (a cost that grows with the square of
    // the mentors shows as a steeper later step).
    let slopes: Vec<(usize, usize, f64)> = points
        .windows(2)
        .map(|w| {
            let added = w[1].mentors.saturating_sub(w[0].mentors).max(1);
            let slope = (w[1].run.cost.cost.cpu_s - w[0].run.cost.cost.cpu_s) * 1000.0 / added as f64;
            (w[0].mentors, w[1].mentors, slope)
        })
        .collect();
    if let (Some(first), Some(last)) = (slopes.first(), slopes.last())
        && slopes.len() > 1
    {
        checks.push(Check {
            target: "CPU grows linearly: CPU per 1,000 added mentors of the last step within 1.5x of the first step's"
                .to_owned(),
            measured: format!(
                "{} ({} to {} mentors) vs {} ({} to {})",
                secs(last.2),
                last.0,
                last.1,
                secs(first.2),
                first.0,
                first.1
            ),
            pass: last.2 <= 1.5 * first.2.max(0.001),
        });
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let (low, high) = (first.run.cost.cost.peak_rss_mb, last.run.cost.cost.peak_rss_mb);
        checks.push(Check {
            target: format!(
                "peak memory at {} mentors within ±20% of the peak at {}",
                last.mentors, first.mentors
            ),
            measured: format!(
                "{} vs {} ({:+.0}%)",
                mb(high),
                mb(low),
                (high / low.max(0.1) - 1.0) * 100.0
            ),
            pass: (high / low.max(0.1) - 1.0).abs() <= 0.2,
        });
    }
    checks_table(&mut out, &checks);
    cpu_header(&mut out);
    for p in points {
        cpu_row(&mut out, &format!("{} mentors", p.mentors), &p.run);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(rows_read: u64, writes: u64, expected: u64) {
        assert_eq!(
            lower_bound(rows_read, writes),
            expected,
            "rows {rows_read}, writes {writes}"
        );
    }

    #[test]
    fn lower_bound_is_pages_plus_batches_plus_metadata() {
        check(50_000, 5_000, 10 + 5 + 4);
        check(50_005, 5_000, 11 + 5 + 4);
        check(5_500, 150, 2 + 1 + 4);
        check(4_999, 1_000, 1 + 1 + 4);
        check(5_001, 1_001, 2 + 2 + 4);
        // A delta that finds nothing still reads one (empty) page.
        check(0, 0, 1 + 4);
        check(500_000, 5_000, 100 + 5 + 4);
    }

    #[test]
    fn request_target_allows_a_fifth_more_plus_five() {
        assert!((request_target(19) - 27.8).abs() < 1e-9);
        assert!((request_target(5) - 11.0).abs() < 1e-9);
    }

    #[test]
    fn a_repeated_reader_is_shown_by_its_median_run_with_the_range() {
        let runs = vec![(1, 0.30), (2, 0.10), (3, 0.20), (4, 0.50), (5, 0.12)];
        let r = Repeated::median_of(runs, |r| r.1).unwrap();
        assert_eq!((r.median.0, r.runs, r.cpu_min_s, r.cpu_max_s), (3, 5, 0.10, 0.50));
        let even = Repeated::median_of(vec![(1, 0.4), (2, 0.1), (3, 0.3), (4, 0.2)], |r| r.1).unwrap();
        assert_eq!(even.median.0, 4, "the lower middle one");
        assert!(Repeated::median_of(Vec::<(u8, f64)>::new(), |r| r.1).is_err());
    }
}
