//! `$batch`: multipart/mixed requests with `application/http` parts and atomic change sets, answered in the same
//! shape Dataverse uses (`batchresponse_<guid>` and `changesetresponse_<guid>` boundaries, HTTP/1.1 status lines).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use uuid::Uuid;

use crate::api::{self, ApiRequest, ApiResponse, Ctx, Prefer};
use crate::dverror::{self, DvError};

/// The most operations a batch may hold.
pub(crate) const MAX_OPERATIONS: usize = 1000;
const API_PATH: &str = "/api/data/v9.2/";

/// One operation inside a batch.
#[derive(Debug)]
struct Operation {
    content_id: Option<String>,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A top-level item of a batch.
#[derive(Debug)]
enum Item {
    Single(Operation),
    ChangeSet(Vec<Operation>),
}

fn bad(message: impl Into<String>) -> DvError {
    DvError::bad_request(dverror::ODATA, message)
}

/// The `boundary` parameter of a multipart content type; RFC 2046 allows 1 to 70 characters.
fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params
        .split(';')
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_owned())
        })
        .filter(|b| (1..=70).contains(&b.len()))
}

fn too_many(total: usize) -> DvError {
    DvError::bad_request(
        dverror::INVALID_ARGUMENT,
        format!("The number of requests in the batch ({total}) exceeds the maximum of {MAX_OPERATIONS}."),
    )
}

/// Splits a multipart body into its parts' raw text.
fn split_parts<'a>(body: &'a str, boundary: &str) -> Result<Vec<&'a str>, DvError> {
    let delim = format!("--{boundary}");
    let start = if body.starts_with(&delim) {
        0
    } else {
        body.find(&format!("\n{delim}"))
            .map(|i| i + 1)
            .ok_or_else(|| bad(format!("The batch body does not contain the boundary '{boundary}'.")))?
    };
    let mut rest = &body[start + delim.len()..];
    let mut parts = Vec::new();
    loop {
        if rest.starts_with("--") {
            return Ok(parts);
        }
        let nl = rest
            .find('\n')
            .ok_or_else(|| bad("The batch body ends before its closing boundary."))?;
        rest = &rest[nl + 1..];
        let next = if rest.starts_with(&delim) {
            0
        } else {
            rest.find(&format!("\n{delim}"))
                .map(|i| i + 1)
                .ok_or_else(|| bad("The batch body ends before its closing boundary."))?
        };
        let part = rest[..next].strip_suffix('\n').unwrap_or(&rest[..next]);
        parts.push(part.strip_suffix('\r').unwrap_or(part));
        rest = &rest[next + delim.len()..];
    }
}

/// Splits a MIME part into headers and body.
fn split_head(part: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match (part.find("\r\n\r\n"), part.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&part[..b], &part[b + 2..]),
        (Some(a), _) => (&part[..a], &part[a + 4..]),
        (None, Some(b)) => (&part[..b], &part[b + 2..]),
        (None, None) => (part, ""),
    };
    let headers = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Parses an `application/http` part into an operation.
fn parse_operation(part_headers: &[(String, String)], text: &str) -> Result<Operation, DvError> {
    let text = text.trim_start_matches(['\r', '\n']);
    let (line, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut words = line.trim().split(' ').filter(|w| !w.is_empty());
    let (Some(method), Some(url)) = (words.next(), words.next()) else {
        return Err(bad(format!(
            "The request line '{}' of a batch part is not valid.",
            line.trim()
        )));
    };
    if words.next().is_some_and(|v| !v.starts_with("HTTP/")) {
        return Err(bad(format!(
            "The request line '{}' of a batch part is not valid.",
            line.trim()
        )));
    }
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| bad(format!("Unknown method '{method}' in a batch part.")))?;
    // Headers up to the blank line, checked with httparse; the body follows.
    let (head, body) = match (rest.find("\r\n\r\n"), rest.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&rest[..b + 2], &rest[b + 2..]),
        (Some(a), _) => (&rest[..a + 4], &rest[a + 4..]),
        (None, Some(b)) => (&rest[..b + 2], &rest[b + 2..]),
        (None, None) if rest.trim().is_empty() => ("\r\n", ""),
        (None, None) => (rest, ""),
    };
    let mut raw_headers = [httparse::EMPTY_HEADER; 64];
    let head_text = if head.trim().is_empty() {
        "\r\n".to_owned()
    } else {
        head.to_owned()
    };
    let parsed = httparse::parse_headers(head_text.as_bytes(), &mut raw_headers)
        .map_err(|e| bad(format!("The headers of a batch part are not valid: {e}.")))?;
    let mut headers = HeaderMap::new();
    if let httparse::Status::Complete((_, list)) = parsed {
        for h in list {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                headers.append(name, value);
            }
        }
    }
    Ok(Operation {
        content_id: header(part_headers, "content-id").map(str::to_owned),
        method,
        url: url.to_owned(),
        headers,
        body: Bytes::from(body.trim_end().to_owned()),
    })
}

/// Parses the batch's parts, giving up as soon as there are more than [`MAX_OPERATIONS`] so an oversized batch
/// costs no more memory than an allowed one.
fn parse_items(body: &str, boundary: &str) -> Result<Vec<Item>, DvError> {
    let parts = split_parts(body, boundary)?;
    if parts.len() > MAX_OPERATIONS {
        return Err(too_many(parts.len()));
    }
    let mut items = Vec::new();
    let mut total = 0usize;
    for part in parts {
        let (headers, content) = split_head(part);
        let ct = header(&headers, "content-type").unwrap_or("");
        if let Some(inner) = self::boundary(ct) {
            let mut ops = Vec::new();
            let inner_parts = split_parts(content, &inner)?;
            total += inner_parts.len();
            if total > MAX_OPERATIONS {
                return Err(too_many(total));
            }
            for p in inner_parts {
                let (h, c) = split_head(p);
                let op = parse_operation(&h, c)?;
                if op.method == Method::GET {
                    return Err(bad("GET requests are not allowed inside a change set."));
                }
                ops.push(op);
            }
            items.push(Item::ChangeSet(ops));
        } else if ct.to_ascii_lowercase().starts_with("application/http") {
            total += 1;
            items.push(Item::Single(parse_operation(&headers, content)?));
        } else {
            return Err(bad(format!("A batch part has the unsupported content type '{ct}'.")));
        }
    }
    Ok(items)
}

/// Turns an operation's URL into the API-relative path and query, resolving `$n` references.
fn resolve(url: &str, refs: &[(String, String)], api: &str) -> Result<(String, Option<String>), DvError> {
    let mut url = url.to_owned();
    if let Some(stripped) = url.strip_prefix('$') {
        let digits: String = stripped.chars().take_while(char::is_ascii_alphanumeric).collect();
        let target = refs
            .iter()
            .find(|(id, _)| *id == digits)
            .map(|(_, u)| u.clone())
            .ok_or_else(|| {
                bad(format!(
                    "Content-ID Reference: '${digits}' does not exist in the batch context."
                ))
            })?;
        url = format!("{target}{}", &stripped[digits.len()..]);
    }
    let relative = if let Some(rest) = url.strip_prefix(api) {
        rest.trim_start_matches('/').to_owned()
    } else if let Some(i) = url.find(API_PATH) {
        url[i + API_PATH.len()..].to_owned()
    } else if url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/') {
        return Err(DvError::segment(&url));
    } else {
        url
    };
    let (path, query) = match relative.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (relative, None),
    };
    Ok((api::percent_decode(&path), query))
}

fn substitute_body(body: &Bytes, refs: &[(String, String)]) -> Bytes {
    if refs.is_empty() || !body.contains(&b'$') {
        return body.clone();
    }
    let mut text = String::from_utf8_lossy(body).into_owned();
    for (id, url) in refs {
        text = text.replace(&format!("\"${id}\""), &format!("\"{url}\""));
    }
    Bytes::from(text)
}

fn run(
    ctx: &Ctx<'_>,
    db: &mut crate::store::Db,
    op: &Operation,
    refs: &[(String, String)],
    undo: &mut Vec<crate::store::Undo>,
) -> ApiResponse {
    let (path, query) = match resolve(&op.url, refs, ctx.api) {
        Ok(x) => x,
        Err(e) => return ApiResponse::error(&e),
    };
    if path == "$batch" {
        return ApiResponse::error(&bad("A batch request cannot contain another batch request."));
    }
    let req = ApiRequest {
        method: op.method.clone(),
        path,
        query,
        headers: op.headers.clone(),
        body: substitute_body(&op.body, refs),
    };
    let result = if op.method == Method::GET {
        api::read(ctx, db, &req)
    } else {
        api::write(ctx, db, &req, undo)
    };
    result.unwrap_or_else(|e| ApiResponse::error(&e))
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Unknown")
}

fn render_response(out: &mut String, boundary: &str, content_id: Option<&str>, r: &ApiResponse) {
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    ));
    if let Some(id) = content_id {
        out.push_str(&format!("Content-ID: {id}\r\n"));
    }
    out.push_str(&format!("\r\nHTTP/1.1 {} {}\r\n", r.status.as_u16(), reason(r.status)));
    if let Some(ct) = r.header_value("Content-Type") {
        let ct = if ct.starts_with("application/json") {
            "application/json; odata.metadata=minimal; odata.streaming=true"
        } else {
            ct
        };
        let ct = if r.status.is_success() {
            ct
        } else {
            "application/json; odata.metadata=minimal"
        };
        out.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    out.push_str("OData-Version: 4.0\r\n");
    if let Some(id) = r.header_value("OData-EntityId") {
        out.push_str(&format!("Location: {id}\r\nOData-EntityId: {id}\r\n"));
    }
    for (k, v) in &r.headers {
        if ["ETag", "Preference-Applied", "Retry-After"]
            .iter()
            .any(|h| h.eq_ignore_ascii_case(k))
        {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("\r\n");
    if r.body.is_empty() {
        out.push_str("\r\n");
    } else {
        out.push_str(&String::from_utf8_lossy(&r.body));
        out.push_str("\r\n");
    }
}

/// Handles `POST $batch`.
pub(crate) fn handle(ctx: &Ctx<'_>, req: &ApiRequest) -> ApiResponse {
    match execute(ctx, req) {
        Ok(r) => r,
        Err(e) => ApiResponse::error(&e),
    }
}

fn execute(ctx: &Ctx<'_>, req: &ApiRequest) -> Result<ApiResponse, DvError> {
    if req.method != Method::POST {
        return Err(DvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            dverror::ODATA,
            format!("The requested resource does not support http method '{}'.", req.method),
        ));
    }
    let ct = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = boundary(ct)
        .ok_or_else(|| bad("The content type of a batch request must be multipart/mixed with a boundary parameter."))?;
    let body = std::str::from_utf8(&req.body).map_err(|_| bad("The batch body is not valid UTF-8."))?;
    let items = parse_items(body, &boundary)?;
    let total: usize = items
        .iter()
        .map(|i| match i {
            Item::Single(_) => 1,
            Item::ChangeSet(ops) => ops.len(),
        })
        .sum();
    if total == 0 {
        return Err(bad("The batch request contains no operations."));
    }
    let continue_on_error = Prefer::from_headers(&req.headers).continue_on_error;
    let response_boundary = format!("batchresponse_{}", Uuid::new_v4());
    let mut out = String::new();
    let mut status = StatusCode::OK;
    let mut executed = 0u64;
    let mut rows = 0u64;
    let mut db = ctx.shared.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    for item in &items {
        match item {
            Item::Single(op) => {
                let mut undo = Vec::new();
                let r = run(ctx, &mut db, op, &[], &mut undo);
                executed += 1;
                rows += r.rows;
                render_response(&mut out, &response_boundary, op.content_id.as_deref(), &r);
                if !r.status.is_success() && r.status != StatusCode::NOT_MODIFIED && !continue_on_error {
                    status = r.status;
                    break;
                }
            }
            Item::ChangeSet(ops) => {
                let mut undo = Vec::new();
                let mut refs: Vec<(String, String)> = Vec::new();
                let mut responses = Vec::new();
                let mut failed = None;
                for op in ops {
                    let r = run(ctx, &mut db, op, &refs, &mut undo);
                    executed += 1;
                    if !r.status.is_success() {
                        failed = Some((op.content_id.clone(), r));
                        break;
                    }
                    if let (Some(id), Some(url)) = (&op.content_id, r.header_value("OData-EntityId")) {
                        refs.push((id.clone(), url.to_owned()));
                    }
                    responses.push((op.content_id.clone(), r));
                }
                if let Some((content_id, r)) = failed {
                    db.rollback(undo);
                    render_response(&mut out, &response_boundary, content_id.as_deref(), &r);
                    if !continue_on_error {
                        status = r.status;
                        break;
                    }
                } else {
                    let cs = format!("changesetresponse_{}", Uuid::new_v4());
                    out.push_str(&format!(
                        "--{response_boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n"
                    ));
                    for (id, r) in &responses {
                        rows += r.rows;
                        render_response(&mut out, &cs, id.as_deref(), r);
                    }
                    out.push_str(&format!("--{cs}--\r\n"));
                }
            }
        }
    }
    drop(db);
    out.push_str(&format!("--{response_boundary}--\r\n"));
    let mut r =
        ApiResponse::empty(status).header("Content-Type", format!("multipart/mixed; boundary={response_boundary}"));
    r.body = out.into_bytes();
    r.ops = executed.max(1);
    r.rows = rows;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_read_quoted_or_bare() {
        assert_eq!(
            boundary("multipart/mixed; boundary=\"batch_1\"").as_deref(),
            Some("batch_1")
        );
        assert_eq!(
            boundary("multipart/mixed;boundary=batch_AAA123").as_deref(),
            Some("batch_AAA123")
        );
        assert_eq!(boundary("application/json"), None);
    }

    #[test]
    fn split_parts_rejects_a_missing_closing_boundary() {
        assert!(split_parts("--b\r\nContent-Type: application/http\r\n\r\nGET x HTTP/1.1\r\n", "b").is_err());
        assert!(split_parts("nothing here", "b").is_err());
    }

    #[test]
    fn resolve_accepts_absolute_relative_and_reference_urls() {
        let api = "https://127.0.0.1:1/api/data/v9.2";
        assert_eq!(
            resolve("/api/data/v9.2/contacts?$top=1", &[], api).unwrap(),
            ("contacts".into(), Some("$top=1".into()))
        );
        assert_eq!(
            resolve("https://x/api/data/v9.2/contacts", &[], api).unwrap().0,
            "contacts"
        );
        assert_eq!(resolve("contacts", &[], api).unwrap().0, "contacts");
        let refs = vec![(
            "1".to_owned(),
            format!("{api}/contacts(00000000-0000-0000-0000-000000000001)"),
        )];
        assert_eq!(
            resolve("$1/firstname", &refs, api).unwrap().0,
            "contacts(00000000-0000-0000-0000-000000000001)/firstname"
        );
        assert!(resolve("$2", &refs, api).is_err());
    }
}
