//! Turns a command's output into its golden form: the values that change from one run to the next (temporary
//! paths, the emulator's port, wall times, clock times, log timestamps) become fixed, plausible ones, so a golden
//! file reads like real output and the docs can show it as it is. Shared with the health-check tests.

use regex::Regex;

/// The output with its volatile values fixed. `dir` is the test's configuration folder, shown as `/etc/hlf-sync`.
pub(crate) fn normalize(text: &str, dir: &std::path::Path) -> String {
    let mut text = text.replace(&dir.display().to_string(), "/etc/hlf-sync");
    for (pattern, fixed) in [
        // The emulator listens on a free port.
        (r"https://127\.0\.0\.1:\d+", "https://127.0.0.1:8443"),
        // Wall times.
        (r"took \d+\.\d s", "took 0.4 s"),
        (r"waited \d+\.\d s", "waited 0.0 s"),
        (r"WhoAmI in \d+ ms", "WhoAmI in 40 ms"),
        // The emulator's application user is made anew at each start.
        (
            r"application user \([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\)",
            "application user (5f0c2a8e-3d41-4b7a-9c15-7e2b8d6a0f13)",
        ),
        // Clock times, with and without the local zone.
        (
            r"\d{4}-\d\d-\d\d \d\d:\d\d (CET|CEST) \(\d\d:\d\d UTC\)",
            "2026-12-02 02:00 CET (01:00 UTC)",
        ),
        (r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "2026-12-01 01:00 UTC"),
        // The timestamp that starts each text log line.
        (r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\s+", ""),
    ] {
        text = Regex::new(pattern)
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .replace_all(&text, fixed)
            .into_owned();
    }
    text
}

/// The fenced blocks of the repository's Markdown files that are marked `<!-- output: NAME -->` on the line before
/// them, as (file, name, block).
pub(crate) fn documented_outputs() -> Vec<(String, String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line
                .trim()
                .strip_prefix("<!-- output: ")
                .and_then(|rest| rest.strip_suffix(" -->"))
            else {
                continue;
            };
            assert!(
                lines.get(i + 1).is_some_and(|l| l.trim_start().starts_with("```")),
                "{}: `<!-- output: {name} -->` must stand right above a fenced block",
                file.display()
            );
            // A block inside a list item is indented like its fence; the indentation is not part of the output.
            let indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
            let block: Vec<&str> = lines[i + 2..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with("```"))
                .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
                .collect();
            found.push((
                file.file_name().unwrap().to_string_lossy().into_owned(),
                name.to_owned(),
                block.join("\n") + "\n",
            ));
        }
    }
    found
}

/// Where the golden files are: `docs/output/`, so the docs can link them too.
pub(crate) fn golden_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/output")
}
