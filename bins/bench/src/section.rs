//! Rewrites one generated section of a Markdown file, between `<!-- bench:NAME:start -->` and
//! `<!-- bench:NAME:end -->`, and leaves every other byte of the file as it was.

use anyhow::bail;

/// The start marker of section `name`.
pub(crate) fn start_marker(name: &str) -> String {
    format!("<!-- bench:{name}:start -->")
}

/// The end marker of section `name`.
pub(crate) fn end_marker(name: &str) -> String {
    format!("<!-- bench:{name}:end -->")
}

/// `document` with the body of section `name` replaced by `body`. A document without the section gets it appended
/// at the end; a document with a start marker but no end marker after it (or either marker twice) is refused rather
/// than guessed at.
pub(crate) fn replace_section(document: &str, name: &str, body: &str) -> anyhow::Result<String> {
    let start = start_marker(name);
    let end = end_marker(name);
    let body = body.trim_end_matches('\n');
    let starts = document.matches(&start).count();
    let ends = document.matches(&end).count();
    match (starts, ends) {
        (0, 0) => {
            let mut out = document.trim_end_matches('\n').to_owned();
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&format!("{start}\n{body}\n{end}\n"));
            Ok(out)
        }
        (1, 1) => {
            let (Some(from), Some(to)) = (document.find(&start), document.find(&end)) else {
                bail!("the markers of section `{name}` were not found")
            };
            if to < from {
                bail!("the end marker of section `{name}` comes before its start marker; fix the file by hand");
            }
            let before = &document[..from + start.len()];
            let after = &document[to..];
            Ok(format!("{before}\n{body}\n{after}"))
        }
        _ => bail!(
            "section `{name}` has {starts} start and {ends} end markers; expected one of each (or none); fix the file by hand"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_section_keeps_everything_outside_its_markers() {
        let document = "# Benchmarks\n\nHand-written intro.\n\n<!-- bench:hlf-50k:start -->\nold table\n\
                        <!-- bench:hlf-50k:end -->\n\nHand-written notes.\n<!-- bench:growth:start -->\ngrowth\n\
                        <!-- bench:growth:end -->\n";
        let out = replace_section(document, "hlf-50k", "new table\nsecond line\n").unwrap();
        assert_eq!(
            out,
            "# Benchmarks\n\nHand-written intro.\n\n<!-- bench:hlf-50k:start -->\nnew table\nsecond line\n\
             <!-- bench:hlf-50k:end -->\n\nHand-written notes.\n<!-- bench:growth:start -->\ngrowth\n\
             <!-- bench:growth:end -->\n"
        );
        // Writing the same body again changes nothing.
        assert_eq!(replace_section(&out, "hlf-50k", "new table\nsecond line").unwrap(), out);
    }

    #[test]
    fn a_missing_section_is_appended() {
        let out = replace_section("# Benchmarks\n\nText.\n", "growth", "rows").unwrap();
        assert_eq!(
            out,
            "# Benchmarks\n\nText.\n\n<!-- bench:growth:start -->\nrows\n<!-- bench:growth:end -->\n"
        );
    }

    #[test]
    fn broken_markers_are_refused() {
        let half = "<!-- bench:growth:start -->\nrows\n";
        assert!(replace_section(half, "growth", "x").is_err());
        let reversed = "<!-- bench:growth:end -->\n<!-- bench:growth:start -->\n";
        assert!(replace_section(reversed, "growth", "x").is_err());
    }
}
