//! The table printed at the end of a run.

use std::fmt::Write;

use sync_engine::RunReport;
use sync_store::{DirectionMetrics, RunStatus};

/// The run's counts per direction, its API use and duration, as a small table.
pub(crate) fn run_table(title: &str, report: &RunReport) -> String {
    let m = &report.metrics;
    let mut out = String::new();
    let failed = m.pull.failed + m.push.failed;
    let status = match report.status {
        RunStatus::Succeeded => "succeeded".to_owned(),
        RunStatus::Partial if !report.drift.is_empty() => {
            "partial: writes to Dynamics held back by schema drift (nothing was written there)".to_owned()
        }
        RunStatus::Partial => format!(
            "partial: {failed} record{} failed and {} queued for the next run",
            if failed == 1 { "" } else { "s" },
            if failed == 1 { "is" } else { "are" }
        ),
        RunStatus::Failed => "FAILED".to_owned(),
        RunStatus::Running => "running".to_owned(),
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
        "  (read: rows read from the source side; written: records changed on that side, whichever phase decided \
         it; skipped: read and already in agreement; failed: queued with a reason)"
    );
    let _ = writeln!(
        out,
        "  API requests {} (throttled {}, retried {}), waited {:.1} s, took {:.1} s",
        m.requests,
        m.throttled,
        m.retried,
        m.waited_ms as f64 / 1000.0,
        m.duration_ms as f64 / 1000.0
    );
    if !report.drift.is_empty() {
        let _ = writeln!(
            out,
            "  schema drift: {}; fix the mapping or the table (runbook: schema-drift)",
            report.drift.join("; ")
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use sync_store::RunMetrics;

    fn report(status: RunStatus, pull: [u64; 5], push: [u64; 5], drift: &[&str]) -> RunReport {
        let direction = |[read, written, skipped, failed, conflicts]: [u64; 5]| DirectionMetrics {
            read,
            written,
            skipped,
            failed,
            conflicts,
        };
        RunReport {
            run_id: "r1".into(),
            status,
            metrics: RunMetrics {
                pull: direction(pull),
                push: direction(push),
                requests: 7,
                duration_ms: 600,
                ..RunMetrics::default()
            },
            error: None,
            drift: drift.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn a_partial_run_says_how_many_records_wait_and_drift_says_nothing_was_written() {
        let partial = run_table(
            "organisation hlf",
            &report(RunStatus::Partial, [10, 1, 8, 1, 0], [3, 2, 0, 1, 0], &[]),
        );
        assert!(
            partial.starts_with("organisation hlf: partial: 2 records failed and are queued for the next run\n"),
            "{partial}"
        );
        let one = run_table("o", &report(RunStatus::Partial, [1, 0, 0, 1, 0], [0; 5], &[]));
        assert!(one.starts_with("o: partial: 1 record failed and is queued"), "{one}");
        let drift = run_table(
            "o",
            &report(
                RunStatus::Partial,
                [5, 0, 5, 0, 0],
                [0; 5],
                &["column hlf_showonpublicsite is missing"],
            ),
        );
        assert!(
            drift.starts_with("o: partial: writes to Dynamics held back by schema drift (nothing was written there)\n"),
            "{drift}"
        );
        assert!(drift.contains("  schema drift: column hlf_showonpublicsite is missing; fix the mapping"));
    }
}
