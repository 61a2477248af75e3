//! CSV encoding for the Import Data wizard: RFC 4180 quoting, CRLF line ends, UTF-8 with a byte-order mark, cells
//! neutralised against formula injection, and files split under a size limit, each with the header.

use std::borrow::Cow;

/// The UTF-8 byte-order mark each file starts with: Excel and the import wizard then read æ, ø and å correctly.
pub const BYTE_ORDER_MARK: &str = "\u{feff}";

/// Characters that make a spreadsheet read a cell as a formula when they come first (after any white space, which
/// spreadsheets skip), with their full-width forms, which some spreadsheets fold to the ASCII ones.
const FORMULA_STARTS: [char; 8] = ['=', '+', '-', '@', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}'];

/// Control characters OWASP lists because some spreadsheets strip them and then read what follows as a formula.
const CONTROL_STARTS: [char; 3] = ['\t', '\r', '\n'];

/// Whether a cell would be read as a formula by a spreadsheet: a formula character first once leading white space is
/// trimmed, or a tab, carriage return or line feed first; unless the cell is a plain number or phone number.
pub(crate) fn looks_like_formula(cell: &str) -> bool {
    (cell.starts_with(CONTROL_STARTS) || cell.trim_start().starts_with(FORMULA_STARTS)) && !is_plain_number(cell)
}

/// A number or phone number (`-12.5`, `+47 900 00 000`, `(+47) 22-00-00-00`): digits with only signs, spaces,
/// parentheses, dots, commas and slashes. Nothing in it can call a function or reach another program, and the Import
/// Data wizard would import an apostrophe put before it, so it is written as it is.
fn is_plain_number(cell: &str) -> bool {
    cell.chars().any(|c| c.is_ascii_digit())
        && cell
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')' | '.' | ',' | '/'))
}

/// A cell made safe against formula injection: one a spreadsheet would read as a formula (`=`, `+`, `-`, `@` or
/// their full-width forms first, after any white space; or a tab,
/// carriage return or line feed first) gets a leading apostrophe, so spreadsheets show it as text. Plain numbers and
/// phone numbers, and every other cell, are returned unchanged.
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
        // Plain phone numbers and numbers are imported as they are: no apostrophe for the wizard to keep.
        check("+47 900 00 000", "+47 900 00 000");
        check("-2+3", "-2+3");
        check("-12.5", "-12.5");
        check("(+47) 22-00-00-00", "(+47) 22-00-00-00");
        check("+47 900 00 000 ext", "'+47 900 00 000 ext");
        check("-2+3*SUM(A1)", "'-2+3*SUM(A1)");
        check("@SUM(A1)", "'@SUM(A1)");
        check("\tcmd", "'\tcmd");
        check("\rcmd", "\"'\rcmd\"");
        check("\n=1+1", "\"'\n=1+1\"");
        // White space before the trigger, which spreadsheets skip.
        check(" =1+1", "' =1+1");
        check("\u{a0}=HYPERLINK(1)", "'\u{a0}=HYPERLINK(1)");
        // Full-width forms.
        check("\u{ff1d}1+1", "'\u{ff1d}1+1");
        check("\u{ff0b}cmd", "'\u{ff0b}cmd");
        check("\u{ff0d}cmd", "'\u{ff0d}cmd");
        check("\u{ff20}SUM(A1)", "'\u{ff20}SUM(A1)");
        check("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0");
        check("a,b", "\"a,b\"");
        check("line\nbreak", "\"line\nbreak\"");
        check(" padded ", "\" padded \"");
        check("", "");
        // Only the first character matters.
        check("a=b", "a=b");
    }

    /// Lines read back with an independent CSV reader (Python's `csv` module, as a spreadsheet or script would):
    /// every cell is the neutralised value, quoting and line ends intact.
    #[test]
    fn an_independent_reader_reads_every_cell_back() {
        let cells = [
            "1001",
            "Ås, Ørsta",
            "=HYPERLINK(\"http://x\")",
            " =1+1",
            "\n@SUM(A1)",
            "\u{ff1d}1",
            "+47 900 00 000",
            "multi\r\nline \"quoted\"",
            "",
        ];
        let file = std::env::temp_dir().join(format!("csv-read-back-{}.csv", std::process::id()));
        let text = format!(
            "{BYTE_ORDER_MARK}{}{}",
            encode_line(&cells),
            encode_line(&["last", "row"])
        );
        std::fs::write(&file, &text).unwrap();
        let script = "import csv, json, sys\n\
                      with open(sys.argv[1], newline='', encoding='utf-8-sig') as f:\n    \
                      print(json.dumps(list(csv.reader(f))))";
        let output = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&file)
            .output()
            .expect("python3 reads the file");
        std::fs::remove_file(&file).unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let rows: Vec<Vec<String>> = serde_json::from_slice(&output.stdout).unwrap();
        let expected: Vec<String> = cells.iter().map(|c| neutralise(c).into_owned()).collect();
        assert_eq!(rows, vec![expected, vec!["last".to_owned(), "row".to_owned()]]);
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
