//! The emulator as a separate process: the `dataverse-sim` binary on a free loopback port over HTTPS, so that the
//! bench's own memory is the sync's alone and a 500,000-row emulator does not distort it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{Context, bail};

/// How to start an emulator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmulatorSpec {
    /// Generated contacts (member numbers from 500000).
    pub(crate) contacts: usize,
    /// How many of the first contacts are mentors.
    pub(crate) mentors: usize,
    /// Latency added to every request.
    pub(crate) latency_ms: u64,
}

/// A running `dataverse-sim` process, stopped when dropped.
#[derive(Debug)]
pub(crate) struct Emulator {
    child: Child,
    // Kept open so the emulator never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    instance: String,
    dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts `binary` with the spec, Dataverse's default service-protection limits and change tracking (the bundled
    /// contact table has it on), and waits until it prints its instance URL.
    pub(crate) fn start(binary: &Path, spec: EmulatorSpec) -> anyhow::Result<Emulator> {
        let dir = tempfile::tempdir().context("making a temporary folder for the emulator's CA certificate")?;
        let log = std::fs::File::create(dir.path().join("stderr.log")).context("creating the emulator's log file")?;
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", "0", "--seed", "50"])
            .arg("--generate-contacts")
            .arg(spec.contacts.to_string())
            .arg("--generate-mentors")
            .arg(spec.mentors.to_string())
            .arg("--latency-ms")
            .arg(spec.latency_ms.to_string())
            .arg("--ca-cert-out")
            .arg(dir.path().join("ca.pem"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the emulator {}", binary.display()))?;
        let Some(stdout) = child.stdout.take() else {
            bail!("the emulator's stdout was not captured")
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let instance = loop {
            line.clear();
            let read = stdout.read_line(&mut line).context("reading the emulator's banner")?;
            if read == 0 {
                let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                let _ = child.wait();
                bail!("the emulator exited before listening:\n{log}");
            }
            if let Some(url) = line.trim().strip_prefix("instance url :") {
                break url.trim().to_owned();
            }
        };
        if !instance.starts_with("https://127.0.0.1:") {
            let _ = child.kill();
            bail!("the emulator listens at {instance}, expected https on 127.0.0.1");
        }
        Ok(Emulator {
            child,
            _stdout: stdout,
            instance,
            dir,
        })
    }

    /// The instance URL, e.g. `https://127.0.0.1:41234`.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// The PEM file of the CA the emulator generated.
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The emulator process's own peak resident set so far, in MB (for the record: it is not the sync's).
    pub(crate) fn peak_rss_mb(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Our own child, by its handle: it keeps nothing on disk, so a kill loses nothing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `dataverse-sim` binary: `explicit` when given, otherwise built with cargo in the bench's own profile (a no-op
/// when it is up to date) and taken from next to the bench binary.
pub(crate) fn binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("finding the bench binary's own path")?;
    let Some(dir) = exe.parent() else {
        bail!("the bench binary {} has no parent folder", exe.display())
    };
    let candidate = dir.join("dataverse-sim");
    // `cargo run` sets CARGO; run directly, the bench uses the binary next to it as it is.
    if let Some(cargo) = std::env::var_os("CARGO") {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut build = Command::new(cargo);
        // Built together with the bench (a no-op when `cargo run -p bench` just built it) so cargo unifies the same
        // features as for the bench itself: building dataverse-sim alone would rebuild its dependencies.
        build
            .current_dir(&root)
            .args(["build", "--locked", "--quiet", "-p", "bench", "-p", "dataverse-sim"]);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().context("running cargo to build dataverse-sim")?;
        if !status.success() {
            bail!("building dataverse-sim failed ({status})");
        }
    }
    if !candidate.is_file() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p dataverse-sim` or pass --sim PATH",
            candidate.display()
        );
    }
    Ok(candidate)
}
