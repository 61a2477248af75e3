//! A progress line per organisation while a run works, on a terminal only: logs and CronJob output stay plain.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sync_engine::{Progress, SyncService};

/// Whether progress lines may be drawn (set once from the command line: not with `--log-format json`).
static ENABLED: OnceLock<bool> = OnceLock::new();

/// Allows progress lines when stderr is a terminal and `allowed`.
pub(crate) fn enable(allowed: bool) {
    let _ = ENABLED.set(allowed && std::io::stderr().is_terminal());
}

/// The service with a progress line attached, and the line to finish when the run ends.
pub(crate) fn attach(service: SyncService) -> (SyncService, Option<ProgressBar>) {
    if !ENABLED.get().copied().unwrap_or(false) {
        return (service, None);
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed}] {msg}") {
        bar.set_style(style);
    }
    bar.set_message(format!("organisation {}: starting", service.organisation_id()));
    bar.enable_steady_tick(Duration::from_millis(120));
    let line = bar.clone();
    let service = service.with_progress(Arc::new(move |p: &Progress<'_>| {
        line.set_message(format!(
            "organisation {}: {} rows read from Dynamics, {} records written to Dynamics",
            p.organisation, p.pulled, p.pushed
        ));
    }));
    (service, Some(bar))
}
