//! What a phase costs the process it runs in: wall time, CPU time (user and system, every thread) and peak resident
//! memory, read from `/proc/self` (Linux only; the workspace forbids the `unsafe` a `getrusage` call would need).

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Linux reports `utime` and `stime` in clock ticks of `USER_HZ`, which is 100 on every architecture Linux runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// The cost of one measured phase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Cost {
    /// Wall-clock seconds.
    pub(crate) wall_s: f64,
    /// CPU seconds (user + system) of the whole process, all threads, 10 ms resolution.
    pub(crate) cpu_s: f64,
    /// The process's peak resident set during the phase, in MB (VmHWM after a reset at the start of the phase).
    pub(crate) peak_rss_mb: f64,
    /// That peak less the resident set at the start of the phase, in MB.
    pub(crate) rss_growth_mb: f64,
    /// CPU seconds of the SQLite store's worker threads (`sqlx-sqlite-worker`): the database's own work.
    #[serde(default)]
    pub(crate) database_s: f64,
    /// CPU seconds of the async runtime's worker threads, where the HTTP connections run: TLS and HTTP.
    #[serde(default)]
    pub(crate) io_s: f64,
}

/// A phase being measured: [`Probe::start`] before, [`Probe::finish`] after.
#[derive(Debug)]
pub(crate) struct Probe {
    started: Instant,
    cpu_before: f64,
    rss_before_kib: u64,
    threads_before: std::collections::BTreeMap<String, (String, u64)>,
}

impl Probe {
    /// Resets the peak resident set to the current one and notes the time and CPU used so far.
    pub(crate) fn start() -> Probe {
        // "5" resets VmHWM to the current RSS (proc(5), clear_refs). Without it the peak would be since process start,
        // which is still an upper bound: each scenario runs in its own process.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Probe {
            started: Instant::now(),
            cpu_before: cpu_seconds(),
            rss_before_kib: status_kib("VmRSS:"),
            threads_before: thread_ticks(),
        }
    }

    /// The cost since [`Probe::start`].
    pub(crate) fn finish(self) -> Cost {
        let wall_s = self.started.elapsed().as_secs_f64();
        let peak = status_kib("VmHWM:");
        let (mut database, mut io) = (0u64, 0u64);
        for (tid, (comm, ticks)) in thread_ticks() {
            let before = self.threads_before.get(&tid).map_or(0, |(_, t)| *t);
            let spent = ticks.saturating_sub(before);
            if comm.starts_with("sqlx-sqlite") {
                database += spent;
            } else if comm.starts_with("tokio-rt") {
                io += spent;
            }
        }
        Cost {
            wall_s,
            cpu_s: cpu_seconds() - self.cpu_before,
            peak_rss_mb: mib(peak),
            rss_growth_mb: mib(peak.saturating_sub(self.rss_before_kib)),
            database_s: database as f64 / TICKS_PER_SECOND,
            io_s: io as f64 / TICKS_PER_SECOND,
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `kB` field of `/proc/self/status`, 0 when it cannot be read.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU seconds of this process so far, from its CPU clock (`CLOCK_PROCESS_CPUTIME_ID`, to the
/// nanosecond; `/proc/self/stat` counts in 10 ms ticks, a tenth of a short read).
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Every thread of this process: its id, name and CPU ticks so far (from `/proc/self/task`).
fn thread_ticks() -> std::collections::BTreeMap<String, (String, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ticks = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|stat| parse_cpu_ticks(&stat))
            .unwrap_or(0);
        out.insert(
            task.file_name().to_string_lossy().into_owned(),
            (comm.trim().to_owned(), ticks),
        );
    }
    out
}

/// `utime + stime` from a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`: `utime` and `stime` are fields 14 and 15, the 12th and 13th after it.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_after_a_command_name_with_spaces() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194304 900 0 0 0 250 37 0 0 20 0 6 0 1000 100000 2000";
        assert_eq!(parse_cpu_ticks(stat), Some(287));
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(status_kib("VmRSS:") > 0);
    }
}
