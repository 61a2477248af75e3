//! The table printed at the end of a run.

use std::fmt::Write;

use sync_engine::RunReport;
use sync_store::{DirectionMetrics, RunStatus};

/// The run's counts per direction, its API use and duration, as a small table.
pub(crate) fn run_table(title: &str, report: &RunReport) -> String {
    let m = &report.metrics;
    let mut out = String::new();
    let status = match report.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Partial => "completed with failed records (queued for the next run)",
        RunStatus::Failed => "FAILED",
        RunStatus::Running => "running",
    };
    let _ = writeln!(out, "{title}: {status}");
    let _ = writeln!(
        out,
        "  {:<16} {:>6} {:>8} {:>8} {:>7} {:>10}",
        "", "read", "written", "skipped", "failed", "conflicts"
    );
    let row = |out: &mut String, name: &str, d: &DirectionMetrics| {
        let _ = writeln!(
            out,
            "  {name:<16} {:>6} {:>8} {:>8} {:>7} {:>10}",
            d.read, d.written, d.skipped, d.failed, d.conflicts
        );
    };
    row(&mut out, "Dynamics -> app", &m.pull);
    row(&mut out, "app -> Dynamics", &m.push);
    let _ = writeln!(
        out,
        "  API requests {} (throttled {}, retried {}), waited {:.1} s, took {:.1} s",
        m.requests,
        m.throttled,
        m.retried,
        m.waited_ms as f64 / 1000.0,
        m.duration_ms as f64 / 1000.0
    );
    if m.full_resyncs > 0 {
        let _ = writeln!(
            out,
            "  the change-tracking token had expired: every contact was read again"
        );
    }
    if let Some(error) = &report.error {
        let _ = writeln!(out, "  reason: {error}");
    }
    out
}
