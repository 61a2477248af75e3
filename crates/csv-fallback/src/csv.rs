//! CSV encoding for the Import Data wizard: RFC 4180 quoting, CRLF line ends, UTF-8 with a byte-order mark, cells
//! neutralised against formula injection, and files split under a size limit, each with the header.

use std::borrow::Cow;

/// The UTF-8 byte-order mark each file starts with: Excel and the import wizard then read æ, ø and å correctly.
pub const BYTE_ORDER_MARK: &str = "\u{feff}";

/// First characters that make a spreadsheet read a cell as a formula (or, for tab and carriage return, that OWASP
/// lists because some spreadsheets strip them and then read what follows as one).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a cell would be read as a formula by a spreadsheet.
pub(crate) fn looks_like_formula(cell: &str) -> bool {
    cell.starts_with(FORMULA_STARTS)
}

/// A cell made safe against formula injection: one that starts with `=`, `+`, `-`, `@`, a tab or a carriage
/// return gets a leading apostrophe, so spreadsheets show it as text. Other cells are returned unchanged.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if looks_like_formula(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// One cell as it goes into the file: neutralised, then quoted when it holds a delimiter, a quote, a line break
/// or leading or trailing spaces (which importers may trim).
fn encode_cell(cell: &str) -> String {
    let cell = neutralise(cell);
    let needs_quotes = cell.contains([',', '"', '\r', '\n']) || cell.starts_with(' ') || cell.ends_with(' ');
    if needs_quotes {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.into_owned()
    }
}

/// One record as a line, CRLF-terminated.
pub(crate) fn encode_line<S: AsRef<str>>(cells: &[S]) -> String {
    let mut line = cells
        .iter()
        .map(|c| encode_cell(c.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Lines gathered into files that each stay under `max_bytes`, every file starting with the byte-order mark and
/// the header line.
pub(crate) struct SplitWriter {
    preamble: String,
    max_bytes: usize,
    files: Vec<(String, usize)>,
}

impl SplitWriter {
    pub(crate) fn new(header: &str, max_bytes: usize) -> Self {
        SplitWriter {
            preamble: format!("{BYTE_ORDER_MARK}{header}"),
            max_bytes,
            files: Vec::new(),
        }
    }

    /// Adds a record line; a line that would take the current file to `max_bytes` or more starts a new file. A
    /// single line too long for any file still gets a file of its own rather than being lost.
    pub(crate) fn push(&mut self, line: &str) {
        match self.files.last_mut() {
            Some((text, rows)) if text.len() + line.len() < self.max_bytes => {
                text.push_str(line);
                *rows += 1;
            }
            _ => {
                let mut text = self.preamble.clone();
                text.push_str(line);
                self.files.push((text, 1));
            }
        }
    }

    /// The files' contents and row counts; one file with only the header when no line was added.
    pub(crate) fn finish(mut self) -> Vec<(String, usize)> {
        if self.files.is_empty() {
            self.files.push((self.preamble, 0));
        }
        self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(cell: &str, expected: &str) {
        assert_eq!(encode_cell(cell), expected, "{cell:?}");
    }

    #[test]
    fn cells_are_neutralised_then_quoted() {
        check("1001", "1001");
        check("Sertifisering utløper", "Sertifisering utløper");
        check("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\"");
        check("+47 900 00 000", "'+47 900 00 000");
        check("-2+3", "'-2+3");
        check("@SUM(A1)", "'@SUM(A1)");
        check("\tcmd", "'\tcmd");
        check("\rcmd", "\"'\rcmd\"");
        check("a,b", "\"a,b\"");
        check("line\nbreak", "\"line\nbreak\"");
        check(" padded ", "\" padded \"");
        check("", "");
        // Only the first character matters.
        check("a=b", "a=b");
    }

    #[test]
    fn files_split_before_the_limit_and_each_repeats_the_header() {
        let mut writer = SplitWriter::new("K\r\n", 3 + 3 + 8);
        for line in ["aaa\r\n", "bbb\r\n", "ccc\r\n"] {
            writer.push(line);
        }
        let files = writer.finish();
        let texts: Vec<&str> = files.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            ["\u{feff}K\r\naaa\r\n", "\u{feff}K\r\nbbb\r\n", "\u{feff}K\r\nccc\r\n"]
        );
        assert!(files.iter().all(|(t, _)| t.len() < 14));
        let empty = SplitWriter::new("K\r\n", 100).finish();
        assert_eq!(empty, [("\u{feff}K\r\n".to_owned(), 0)]);
    }
}
