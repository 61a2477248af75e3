//! `$batch`: many operations in one request (one request against the service-protection limit), with every part's
//! answer mapped back to the operation that caused it, and a batch size that adapts to throttling.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use uuid::Uuid;

use crate::client::{Call, DynamicsClient};
use crate::error::{Error, Result, from_response, is_throttle};
use crate::write::{AlternateKey, TableWriter, UpsertMode, Written, written_from};
use field_mapping::Row;

/// The most operations Dataverse accepts in one batch.
pub const MAX_BATCH_OPERATIONS: usize = 1000;

/// One operation for [`DynamicsClient::execute_batch`], built by a [`TableWriter`] so the write guard has checked it.
#[derive(Debug, Clone)]
pub struct BatchOperation(pub(crate) Call);

/// How a batch treats failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// Every operation runs; each has its own result (`Prefer: odata.continue-on-error`).
    ContinueOnError,
    /// Dataverse's default: the batch stops at the first failure; later operations are not executed.
    StopOnError,
    /// All operations in one change set: all succeed or none is applied.
    Atomic,
}

/// The answer to one operation of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum PartResult {
    /// The operation ran and Dynamics answered with this status.
    Answered {
        /// The HTTP status of the part.
        status: u16,
        /// The part's headers.
        headers: HeaderMap,
        /// The part's body.
        body: Bytes,
    },
    /// The operation never ran: an earlier one failed and the batch stopped. Safe to send again.
    NotExecuted,
    /// The operation ran inside an atomic change set that another operation failed: nothing of the change set was
    /// applied. Safe to send again once the failing operation is dealt with.
    RolledBack,
}

/// The batch-size controller: starts small, doubles while Dynamics is not throttling, halves on a 429 or when a
/// batch runs long (execution time counts against the service-protection limit).
#[derive(Debug, Clone)]
pub struct BatchSizer {
    size: usize,
    max: usize,
    slow: Duration,
}

impl BatchSizer {
    /// A controller starting at `initial` operations and never exceeding `max` (itself at most 1,000).
    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.clamp(1, MAX_BATCH_OPERATIONS);
        BatchSizer {
            size: initial.clamp(1, max),
            max,
            slow: Duration::from_secs(30),
        }
    }

    /// The next batch's size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Adjusts after a batch: `throttled` when any 429 was seen while it ran, `ran` its duration.
    pub fn record(&mut self, throttled: bool, ran: Duration) {
        if throttled || ran >= self.slow {
            self.size = (self.size / 2).max(1);
        } else {
            self.size = (self.size * 2).min(self.max);
        }
    }
}

impl PartResult {
    /// The error this part answered with, if it failed. A part Dynamics throttled (after the client's own retries
    /// of it) is [`Error::Throttled`]: about the run, never the record.
    pub fn error(&self) -> Option<Error> {
        match self {
            PartResult::Answered { status, headers, body } if *status >= 400 => {
                let (code, _) = crate::error::error_parts(body);
                if is_throttle(*status, &code) {
                    let retry_after = crate::client::retry_after(headers, chrono::Utc::now()).unwrap_or_default();
                    return Some(Error::Throttled { retry_after, code });
                }
                Some(from_response(*status, body))
            }
            PartResult::Answered { .. } => None,
            PartResult::NotExecuted => Some(Error::Service {
                status: 424,
                code: String::new(),
                message: "not executed: an earlier operation in the batch failed".to_owned(),
            }),
            PartResult::RolledBack => Some(Error::Service {
                status: 424,
                code: String::new(),
                message: "rolled back: another operation of its change set failed".to_owned(),
            }),
        }
    }

    /// Whether the operation did not run or was undone, so sending it again cannot apply it twice.
    pub fn not_applied(&self) -> bool {
        matches!(self, PartResult::NotExecuted | PartResult::RolledBack)
    }

    /// How long Dynamics asked to wait, when this part was refused by service protection.
    fn throttled(&self, client: &DynamicsClient) -> Option<Duration> {
        let PartResult::Answered { status, headers, body } = self else {
            return None;
        };
        if *status < 400 {
            return None;
        }
        let (code, _) = crate::error::error_parts(body);
        is_throttle(*status, &code).then(|| client.retry_after(headers).unwrap_or(Duration::from_secs(1)))
    }
}

impl DynamicsClient {
    /// Sends up to 1,000 operations as one `$batch` (one request against the service-protection limit) and returns
    /// one result per operation, in order.
    pub async fn execute_batch(&self, operations: &[BatchOperation], mode: BatchMode) -> Result<Vec<PartResult>> {
        let calls: Vec<Call> = operations.iter().map(|op| op.0.clone()).collect();
        self.batch(&calls, mode).await
    }

    /// Sends `calls` as one `$batch` and answers one result per call. A batch that stopped at a failing part is
    /// read part by part like any other. Parts Dynamics throttled (429 or a service-protection code) pause the rate
    /// budget for their `Retry-After` and are sent again, with the parts that did not run because of them, within
    /// the retry settings; a part still throttled then answers [`Error::Throttled`] from [`PartResult::error`].
    pub(crate) async fn batch(&self, calls: &[Call], mode: BatchMode) -> Result<Vec<PartResult>> {
        let mut results: Vec<Option<PartResult>> = vec![None; calls.len()];
        let mut todo: Vec<usize> = (0..calls.len()).collect();
        let mut round = 0;
        loop {
            round += 1;
            let subset: Vec<Call> = todo.iter().map(|&i| calls[i].clone()).collect();
            let parts = self.batch_once(&subset, mode).await?;
            let mut again = Vec::new();
            let mut wait: Option<Duration> = None;
            for part in &parts {
                if let Some(asked) = part.throttled(self) {
                    wait = Some(wait.unwrap_or_default().max(asked));
                }
            }
            for (&i, part) in todo.iter().zip(parts) {
                if wait.is_some() && (part.throttled(self).is_some() || part.not_applied()) {
                    again.push(i);
                }
                results[i] = Some(part);
            }
            let Some(wait) = wait else { break };
            self.note_throttled();
            self.inner.budget.pause_for(wait);
            if round >= self.inner.retry.max_attempts {
                break;
            }
            tracing::warn!(
                parts = again.len(),
                retry_after_s = wait.as_secs(),
                "Dynamics throttled parts of a batch; waiting, then sending those parts again"
            );
            self.note_retried();
            self.wait(wait).await;
            todo = again;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(PartResult::NotExecuted))
            .collect())
    }

    async fn batch_once(&self, calls: &[Call], mode: BatchMode) -> Result<Vec<PartResult>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        if calls.len() > MAX_BATCH_OPERATIONS {
            return Err(Error::Service {
                status: 400,
                code: String::new(),
                message: format!(
                    "a batch holds at most {MAX_BATCH_OPERATIONS} operations, not {}",
                    calls.len()
                ),
            });
        }
        let boundary = format!("batch_{}", Uuid::new_v4());
        let body = build_batch_body(calls, &boundary, mode == BatchMode::Atomic);
        let mut call = Call::new(Method::POST, self.url("$batch")?);
        call.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/mixed; boundary=\"{boundary}\""))
                .map_err(|e| Error::decode("the batch boundary", e))?,
        );
        if mode == BatchMode::ContinueOnError {
            call = call.header("prefer", "odata.continue-on-error");
        }
        call.body = Some(Bytes::from(body));
        call.idempotent = calls.iter().all(|c| c.idempotent);
        call.multipart_answer = true;
        let answer = self.send(&call).await?;
        let content_type = answer
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let started = std::time::Instant::now();
        let parts = decode_batch(content_type, &answer.body, calls.len(), mode == BatchMode::Atomic);
        self.note_decoding(started.elapsed());
        parts
    }
}

impl TableWriter {
    /// An upsert to send in a batch; the write guard checks it now.
    pub fn upsert_operation(&self, key: &AlternateKey, body: &Row, mode: UpsertMode) -> Result<BatchOperation> {
        self.upsert_call(key, body, mode).map(BatchOperation)
    }

    /// An update guarded by `etag` to send in a batch (a changed row answers 412); the write guard checks it now.
    pub fn update_operation(&self, id: Uuid, body: &Row, etag: &str) -> Result<BatchOperation> {
        self.update_call(id, body, etag).map(BatchOperation)
    }

    /// Reads a successful batch part's answer as a write result.
    pub fn written_from_part(&self, part: &PartResult) -> Result<Written> {
        match part {
            PartResult::Answered { status, headers, body } if *status < 400 => {
                Ok(written_from(*status, headers, body, &self.primary_id))
            }
            failed => Err(failed.error().unwrap_or(Error::Service {
                status: 0,
                code: String::new(),
                message: "unknown batch part result".to_owned(),
            })),
        }
    }

    /// Upserts many rows in batches that adapt their size, returning one result per row in order. A row that fails
    /// does not stop the others (`continue-on-error`); a whole batch that fails (throttled beyond the retry budget,
    /// unreachable) fails each of its rows with that error's message.
    pub async fn upsert_many(
        &self,
        rows: &[(AlternateKey, Row)],
        mode: UpsertMode,
        sizer: &mut BatchSizer,
    ) -> Vec<Result<Written>> {
        let mut results = Vec::with_capacity(rows.len());
        let mut rest = rows;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(sizer.size().min(rest.len()));
            rest = tail;
            let mut calls = Vec::with_capacity(chunk.len());
            let mut slots = Vec::with_capacity(chunk.len());
            for (key, body) in chunk {
                match self.upsert_call(key, body, mode) {
                    Ok(call) => {
                        slots.push(Ok(calls.len()));
                        calls.push(call);
                    }
                    Err(refused) => slots.push(Err(refused)),
                }
            }
            let throttled_before = self.client.metrics().throttled;
            let started = self.client.inner.clock.now();
            let answered = self.client.batch(&calls, BatchMode::ContinueOnError).await;
            let ran = self.client.inner.clock.now().saturating_duration_since(started);
            sizer.record(self.client.metrics().throttled > throttled_before, ran);
            for slot in slots {
                results.push(match (slot, &answered) {
                    (Err(refused), _) => Err(refused),
                    (Ok(i), Ok(parts)) => self.written_from_part(&parts[i]),
                    (Ok(_), Err(whole)) => Err(Error::Service {
                        status: 0,
                        code: String::new(),
                        message: format!("the batch failed as a whole: {whole}"),
                    }),
                });
            }
        }
        results
    }
}

const CRLF: &str = "\r\n";

fn build_batch_body(calls: &[Call], boundary: &str, atomic: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if atomic {
        let changeset = format!("changeset_{}", Uuid::new_v4());
        push(
            &mut out,
            &format!("--{boundary}{CRLF}Content-Type: multipart/mixed; boundary=\"{changeset}\"{CRLF}{CRLF}"),
        );
        for (i, call) in calls.iter().enumerate() {
            push(&mut out, &format!("--{changeset}{CRLF}"));
            write_part(&mut out, call, Some(i + 1));
        }
        push(&mut out, &format!("--{changeset}--{CRLF}"));
    } else {
        for call in calls {
            push(&mut out, &format!("--{boundary}{CRLF}"));
            write_part(&mut out, call, None);
        }
    }
    push(&mut out, &format!("--{boundary}--{CRLF}"));
    out
}

fn push(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
}

fn write_part(out: &mut Vec<u8>, call: &Call, content_id: Option<usize>) {
    push(
        out,
        &format!("Content-Type: application/http{CRLF}Content-Transfer-Encoding: binary{CRLF}"),
    );
    if let Some(id) = content_id {
        push(out, &format!("Content-ID: {id}{CRLF}"));
    }
    push(out, &format!("{CRLF}{} {} HTTP/1.1{CRLF}", call.method, call.url));
    for (name, value) in &call.headers {
        // Accept and OData version headers are set once on the batch; per part only what differs matters.
        if name == http::header::ACCEPT || name.as_str().starts_with("odata-") {
            continue;
        }
        push(out, &format!("{name}: {}{CRLF}", value.to_str().unwrap_or_default()));
    }
    push(out, CRLF);
    if let Some(body) = &call.body {
        out.extend_from_slice(body);
    }
    push(out, CRLF);
}

/// Decodes a batch answer (its content type and body) into one result per operation sent, in order.
pub(crate) fn decode_batch(content_type: &str, body: &[u8], expected: usize, atomic: bool) -> Result<Vec<PartResult>> {
    let parts = parse_multipart(content_type, body)?;
    Ok(map_results(parts, expected, atomic))
}

/// One parsed response part: an operation's answer, or a change set's answers.
#[derive(Debug)]
enum Part {
    /// One answer, with its `Content-ID` when the part carried one.
    Single(PartResult, Option<String>),
    ChangeSet(Vec<PartResult>),
}

/// Lines the parts up with the operations. In an atomic batch a failed change set answers with one error part in
/// place of the set: the operation its `Content-ID` names gets that answer and every other one is
/// [`PartResult::RolledBack`]; without a usable `Content-ID` the answer stands for every operation.
fn map_results(parts: Vec<Part>, expected: usize, atomic: bool) -> Vec<PartResult> {
    if atomic
        && let [Part::Single(result @ PartResult::Answered { status, .. }, content_id)] = parts.as_slice()
        && *status >= 400
    {
        let failing = content_id
            .as_deref()
            .and_then(|id| id.trim().parse::<usize>().ok())
            .filter(|id| (1..=expected).contains(id));
        return match failing {
            Some(id) => (1..=expected)
                .map(|i| {
                    if i == id {
                        result.clone()
                    } else {
                        PartResult::RolledBack
                    }
                })
                .collect(),
            None => vec![result.clone(); expected],
        };
    }
    let mut out = Vec::with_capacity(expected);
    for part in parts {
        match part {
            Part::Single(result, _) => out.push(result),
            Part::ChangeSet(results) => out.extend(results),
        }
    }
    out.truncate(expected);
    while out.len() < expected {
        out.push(PartResult::NotExecuted);
    }
    out
}

/// Parses a multipart/mixed batch answer. Tolerates LF-only line endings and a missing final delimiter; anything
/// else unreadable is an [`Error::Decode`], never a panic.
fn parse_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>> {
    let boundary = boundary_of(content_type).ok_or_else(|| Error::Decode {
        what: "a batch answer".to_owned(),
        source: format!("its content type has no multipart boundary: {content_type:.100}").into(),
    })?;
    let mut parts = Vec::new();
    for section in split_parts(body, boundary.as_bytes()) {
        let (headers, content) = split_head(section);
        let part_type = header_value(headers, "content-type").unwrap_or_default();
        if part_type.to_ascii_lowercase().starts_with("multipart/mixed") {
            let inner = parse_multipart(&part_type, content)?;
            let results = inner
                .into_iter()
                .flat_map(|p| match p {
                    Part::Single(r, _) => vec![r],
                    Part::ChangeSet(rs) => rs,
                })
                .collect();
            parts.push(Part::ChangeSet(results));
        } else {
            let result = parse_http_response(content)?;
            parts.push(Part::Single(result, header_value(headers, "content-id")));
        }
    }
    Ok(parts)
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').map(str::trim).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The sections between `--boundary` delimiters, up to `--boundary--`.
fn split_parts<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut sections = Vec::new();
    let mut positions = Vec::new();
    let mut from = 0;
    while let Some(at) = find(&body[from..], &delimiter) {
        positions.push(from + at);
        from += at + delimiter.len();
    }
    for pair in positions.windows(2) {
        let start = pair[0] + delimiter.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        sections.push(trim_crlf(&body[start..pair[1]]));
    }
    if let Some(last) = positions.last() {
        let start = last + delimiter.len();
        if !body[start..].starts_with(b"--") {
            let rest = trim_crlf(&body[start..]);
            if !rest.is_empty() {
                sections.push(rest);
            }
        }
    }
    sections
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim_crlf(mut bytes: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b'\r' | b'\n'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Splits MIME part headers from the content at the first blank line.
fn split_head(section: &[u8]) -> (&[u8], &[u8]) {
    for separator in [&b"\r\n\r\n"[..], &b"\n\n"[..]] {
        if let Some(at) = find(section, separator) {
            return (&section[..at], &section[at + separator.len()..]);
        }
    }
    (section, &[])
}

fn header_value(headers: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(headers).lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

/// Parses `HTTP/1.1 204 No Content` + headers + body.
fn parse_http_response(content: &[u8]) -> Result<PartResult> {
    let mut header_storage = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut header_storage);
    let head_len = match response.parse(content) {
        Ok(httparse::Status::Complete(n)) => n,
        // A part without the blank line after its headers: everything is head, nothing is body.
        Ok(httparse::Status::Partial) => content.len(),
        Err(e) => return Err(Error::decode("a batch part's status line", e)),
    };
    let status = response.code.ok_or_else(|| Error::Decode {
        what: "a batch part".to_owned(),
        source: "no status code".into(),
    })?;
    let mut headers = HeaderMap::new();
    for header in response.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            headers.append(name, value);
        }
    }
    let body = trim_crlf(&content[head_len.min(content.len())..]);
    Ok(PartResult::Answered {
        status,
        headers,
        body: Bytes::copy_from_slice(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizer_grows_while_calm_and_halves_under_pressure() {
        let mut sizer = BatchSizer::new(50, 1000);
        sizer.record(false, Duration::from_secs(1));
        assert_eq!(sizer.size(), 100);
        for _ in 0..10 {
            sizer.record(false, Duration::from_secs(1));
        }
        assert_eq!(sizer.size(), 1000);
        sizer.record(true, Duration::from_secs(1));
        assert_eq!(sizer.size(), 500);
        sizer.record(false, Duration::from_secs(45));
        assert_eq!(sizer.size(), 250);
        let mut tiny = BatchSizer::new(1, 1);
        tiny.record(true, Duration::ZERO);
        assert_eq!(tiny.size(), 1);
        assert_eq!(BatchSizer::new(5000, 5000).size(), 1000);
    }

    #[test]
    fn boundaries_are_read_quoted_or_not() {
        assert_eq!(
            boundary_of("multipart/mixed; boundary=batchresponse_1").as_deref(),
            Some("batchresponse_1")
        );
        assert_eq!(boundary_of("multipart/mixed;boundary=\"b 2\"").as_deref(), Some("b 2"));
        assert_eq!(boundary_of("application/json"), None);
    }

    #[test]
    fn garbage_answers_are_decode_errors_not_panics() {
        for body in [
            &b""[..],
            b"--b\r\n",
            b"--b\r\nnot http\r\n--b--",
            b"--b\r\n\r\nHTTP/1.1 abc\r\n\r\n--b--",
            b"\xff\xfe--b",
        ] {
            let result = parse_multipart("multipart/mixed; boundary=b", body);
            if let Ok(parts) = &result {
                // Anything that parses maps onto the expected count without panicking.
                let _ = map_results(
                    parts
                        .iter()
                        .map(|_| Part::Single(PartResult::NotExecuted, None))
                        .collect(),
                    3,
                    true,
                );
            }
        }
        assert!(parse_multipart("application/json", b"{}").is_err());
    }
}
