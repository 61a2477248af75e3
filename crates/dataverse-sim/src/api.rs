//! The Dataverse Web API: routing of `/api/data/v9.2/...` paths to table, metadata and function handlers, with
//! queries, paging, change tracking and conditional writes. `$batch` parts come through the same functions.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::dverror::{self, DvError};
use crate::odata::{self, KeyRef, OrderTerm};
use crate::role::Access;
use crate::server::Shared;
use crate::store::{Db, Row, Table, Undo, WriteMode};

/// The most rows a page holds, and the default page size.
pub(crate) const MAX_PAGE_SIZE: usize = 5000;
const JSON: &str = "application/json; odata.metadata=minimal";

/// One Web API request, relative to the API root.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    /// The percent-decoded path after `/api/data/v9.2/`.
    pub(crate) path: String,
    /// The raw query string.
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// One Web API answer.
#[derive(Debug, Clone)]
pub(crate) struct ApiResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Operations executed (a batch counts each), for execution-time accounting.
    pub(crate) ops: u64,
    /// Rows returned, for the statistics.
    pub(crate) rows: u64,
}

impl ApiResponse {
    pub(crate) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            ops: 1,
            rows: 0,
        }
    }

    pub(crate) fn json(status: StatusCode, value: &Value) -> Self {
        let mut r = Self::empty(status);
        r.body = serde_json::to_vec(value).unwrap_or_default();
        r.headers.push(("Content-Type".into(), JSON.into()));
        r
    }

    pub(crate) fn error(e: &DvError) -> Self {
        let mut r = Self::json(e.status, &e.body());
        if let Some(secs) = e.retry_after {
            r.headers.push(("Retry-After".into(), secs.to_string()));
        }
        r
    }

    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub(crate) fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a request's `Prefer` headers ask for.
#[derive(Debug, Default, Clone)]
pub(crate) struct Prefer {
    pub(crate) max_page_size: Option<usize>,
    pub(crate) track_changes: bool,
    pub(crate) return_representation: bool,
    pub(crate) continue_on_error: bool,
}

impl Prefer {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut p = Self::default();
        for value in headers.get_all("prefer") {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',').map(str::trim) {
                let (name, arg) = item
                    .split_once('=')
                    .map_or((item, None), |(n, a)| (n.trim(), Some(a.trim())));
                match name.to_ascii_lowercase().as_str() {
                    "odata.maxpagesize" => p.max_page_size = arg.and_then(|a| a.trim_matches('"').parse().ok()),
                    "odata.track-changes" => p.track_changes = true,
                    "return" => p.return_representation = arg == Some("representation"),
                    "odata.continue-on-error" => p.continue_on_error = arg.is_none_or(|a| a != "false"),
                    _ => {}
                }
            }
        }
        p
    }
}

/// What every handler needs besides the tables.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) api: &'a str,
    pub(crate) user: Uuid,
    pub(crate) now: DateTime<Utc>,
}

/// The opaque position in a paged or delta result, carried in `$skiptoken`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SkipToken {
    /// Sort values of the last row returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    k: Vec<Value>,
    /// Id of the last row returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
    /// An initial change-tracking read: emit a delta link on the last page.
    #[serde(default)]
    t: bool,
    /// The version at which a tracked or delta read started.
    #[serde(default)]
    s: u64,
    /// For a delta read: the version of the delta token being answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    d: Option<u64>,
    /// For a delta read: 0 while returning changed rows, 1 while returning deletions.
    #[serde(default)]
    p: u8,
    /// For a delta read: the version of the last item returned.
    #[serde(default)]
    v: u64,
    /// The number of the page this token asks for (2 for the second page).
    #[serde(default)]
    n: u32,
}

impl SkipToken {
    /// The token in Dataverse's shape, before it is percent-encoded into a URL: a `cookie` element with the page
    /// number, the inner paging cookie (itself percent-encoded, so it arrives double-encoded in the link) and whether
    /// the read tracks changes. The emulator's own position rides in the inner cookie's `sim` attribute, beside
    /// the `last`/`first` row ids Dataverse puts there.
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut state = String::with_capacity(json.len() * 2);
        for b in json {
            state.push_str(&format!("{b:02x}"));
        }
        let row = self
            .id
            .map(|id| format!("{{{}}}", id.to_string().to_uppercase()))
            .unwrap_or_default();
        let page = self.n.max(2);
        let inner = format!(
            "<cookie page=\"{}\"><row last=\"{row}\" first=\"{row}\" sim=\"{state}\" /></cookie>",
            page - 1
        );
        format!(
            "<cookie pagenumber=\"{page}\" pagingcookie=\"{}\" istracking=\"{}\" />",
            encode_component(&inner).to_ascii_lowercase(),
            if self.t { "True" } else { "False" }
        )
    }

    /// Reads a token as it arrives once the query string is decoded. A token whose inner cookie was decoded once
    /// too often (a client that decodes and re-encodes the link wrongly) is refused.
    fn decode(text: &str) -> Result<Self, DvError> {
        let bad = || DvError::odata("The $skiptoken value is not valid.");
        let attribute = |xml: &str, name: &str| -> Option<String> {
            let start = xml.find(&format!(" {name}=\""))? + name.len() + 3;
            let end = xml[start..].find('"')? + start;
            Some(xml[start..end].to_owned())
        };
        if !text.trim_start().starts_with("<cookie ") {
            return Err(bad());
        }
        let page: u32 = attribute(text, "pagenumber")
            .and_then(|p| p.parse().ok())
            .ok_or_else(bad)?;
        let inner = percent_decode(&attribute(text, "pagingcookie").ok_or_else(bad)?);
        if !inner.starts_with("<cookie ") {
            return Err(bad());
        }
        let hex = attribute(&inner, "sim").ok_or_else(bad)?;
        if hex.len() % 2 != 0 {
            return Err(bad());
        }
        let bytes: Result<Vec<u8>, _> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect();
        let token: SkipToken = serde_json::from_slice(&bytes.map_err(|_| bad())?).map_err(|_| bad())?;
        if token.n.max(2) != page {
            return Err(bad());
        }
        Ok(token)
    }

    /// The number of the page after the one this token asked for (the first page has no token).
    fn next_page(token: Option<&SkipToken>) -> u32 {
        token.map_or(1, |t| t.n.max(2)) + 1
    }
}

/// Parses a query string into decoded options.
pub(crate) fn query_map(query: Option<&str>) -> HashMap<String, String> {
    query
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Percent-decodes a path (a `+` stays a plus).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_component(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The parts of a path.
enum Target {
    Batch,
    Metadata,
    WhoAmI,
    EntityDefinitions(String),
    Collection(String),
    /// `<set>/$count`: the number of rows as plain text.
    Count(String),
    Entity(String, String),
    Property(String, String, String),
    /// `systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()`.
    UserPrivileges(String),
}

fn parse_path(path: &str) -> Result<Target, DvError> {
    let path = path.trim_end_matches('/');
    match path {
        "$batch" => return Ok(Target::Batch),
        "$metadata" => return Ok(Target::Metadata),
        "WhoAmI" | "WhoAmI()" => return Ok(Target::WhoAmI),
        _ => {}
    }
    if path == "EntityDefinitions" || path.starts_with("EntityDefinitions(") || path.starts_with("EntityDefinitions/") {
        return Ok(Target::EntityDefinitions(path["EntityDefinitions".len()..].to_owned()));
    }
    let name_end = path.find(['(', '/']).unwrap_or(path.len());
    let set = &path[..name_end];
    if set.is_empty() {
        return Err(DvError::segment(path));
    }
    let rest = &path[name_end..];
    if rest.is_empty() {
        return Ok(Target::Collection(set.to_owned()));
    }
    if rest == "/$count" {
        return Ok(Target::Count(set.to_owned()));
    }
    let Some(inner) = rest.strip_prefix('(') else {
        return Err(DvError::segment(rest.trim_start_matches('/')));
    };
    let close = matching_paren(inner)
        .ok_or_else(|| DvError::odata(format!("Bad Request - Error in query syntax. '{path}'")))?;
    let key = inner[..close].to_owned();
    let after = &inner[close + 1..];
    if after.is_empty() {
        return Ok(Target::Entity(set.to_owned(), key));
    }
    if set == "systemusers" && after == "/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()" {
        return Ok(Target::UserPrivileges(key));
    }
    match after.strip_prefix('/') {
        Some(col) if !col.contains('/') && !col.is_empty() => Ok(Target::Property(set.to_owned(), key, col.to_owned())),
        _ => Err(DvError::segment(after.trim_start_matches('/'))),
    }
}

/// The index of the `)` closing an opened `(`, skipping quoted strings.
pub(crate) fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                if depth == 0 {
                    return Some(i);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// Handles one request that is not a `$batch`: reads under a shared lock, writes under an exclusive one.
pub(crate) fn handle(ctx: &Ctx<'_>, req: &ApiRequest) -> ApiResponse {
    let result = if req.method == Method::GET {
        let db = ctx.shared.db.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        read(ctx, &db, req)
    } else {
        let mut db = ctx.shared.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut undo = Vec::new();
        write(ctx, &mut db, req, &mut undo)
    };
    result.unwrap_or_else(|e| ApiResponse::error(&e))
}

fn table_index(db: &Db, set: &str) -> Result<usize, DvError> {
    db.table_by_set(set).ok_or_else(|| DvError::segment(set))
}

/// The query options the emulator understands; any other one is refused as Dataverse refuses it, never ignored (a
/// misspelt `$fitler` must not quietly answer every row).
const QUERY_OPTIONS: [&str; 8] = [
    "$select",
    "$filter",
    "$orderby",
    "$top",
    "$count",
    "$expand",
    "$skiptoken",
    "$deltatoken",
];

/// Options Dataverse supports that the emulator does not implement: refused with a message that says so, so a test
/// that needs one fails clearly rather than against a wrong emulation.
const NOT_EMULATED: [&str; 5] = ["fetchXml", "savedQuery", "userQuery", "$apply", "$search"];

/// Refuses a request naming a query option Dataverse does not support (400, 0x80060888) or one the emulator does not
/// implement (501). Parameter aliases (`@p1`) are allowed.
pub(crate) fn check_query_options(query: Option<&str>) -> Result<(), DvError> {
    for (name, _) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name.starts_with('@') || QUERY_OPTIONS.contains(&name.as_ref()) {
            continue;
        }
        if NOT_EMULATED.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            return Err(DvError::new(
                StatusCode::NOT_IMPLEMENTED,
                dverror::ODATA,
                format!("The query parameter {name} is supported by Dataverse but not by this emulator."),
            ));
        }
        return Err(DvError::odata(format!("The query parameter {name} is not supported")));
    }
    Ok(())
}

/// Answers a GET.
pub(crate) fn read(ctx: &Ctx<'_>, db: &Db, req: &ApiRequest) -> Result<ApiResponse, DvError> {
    check_query_options(req.query.as_deref())?;
    let q = query_map(req.query.as_deref());
    let target = parse_path(&req.path)?;
    if let Target::Collection(set) | Target::Count(set) | Target::Entity(set, _) | Target::Property(set, _, _) = &target
    {
        require(ctx, db, Access::Read, set)?;
    }
    match target {
        Target::Batch => Err(method_not_allowed("GET")),
        Target::Metadata => Ok(csdl(db)),
        Target::WhoAmI => Ok(who_am_i(ctx)),
        Target::UserPrivileges(key) => user_privileges(ctx, &key),
        Target::EntityDefinitions(rest) => crate::metadata_api::get(ctx, db, &rest, &q),
        Target::Collection(set) => {
            let t = table_index(db, &set)?;
            get_collection(ctx, db, t, req, &q)
        }
        Target::Count(set) => {
            let t = table_index(db, &set)?;
            count(db, t, &q)
        }
        Target::Entity(set, key) => {
            let t = table_index(db, &set)?;
            get_entity(ctx, db, t, &key, req, &q)
        }
        Target::Property(set, key, col) => {
            let t = table_index(db, &set)?;
            let table = &db.tables[t];
            let id = find(table, &key)?;
            let visible = table.visible(&db.dropped);
            if table.def.attr(&col).is_none() || !visible(&col) {
                return Err(DvError::unknown_property(&table.def, &col));
            }
            let row = &table.rows[&id];
            let value = row.data.get(&col).cloned().unwrap_or(Value::Null);
            if value.is_null() {
                return Ok(ApiResponse::empty(StatusCode::NO_CONTENT));
            }
            let mut r = ApiResponse::json(
                StatusCode::OK,
                &json!({"@odata.context": format!("{}/$metadata#{set}({id})/{col}", ctx.api), "value": value}),
            );
            r.rows = 1;
            Ok(r)
        }
    }
}

/// Answers `<set>/$count` as Dataverse does: the number as plain text, capped like a page at 5,000.
fn count(db: &Db, t: usize, q: &HashMap<String, String>) -> Result<ApiResponse, DvError> {
    let table = &db.tables[t];
    reject_unsupported(q, table)?;
    let visible = table.visible(&db.dropped);
    let filter = q
        .get("$filter")
        .map(|f| odata::parse_filter(f, &table.def, &visible))
        .transpose()?;
    let n = table
        .rows
        .values()
        .filter(|r| filter.as_ref().is_none_or(|f| odata::eval(f, &r.data, &table.def)))
        .count();
    let mut r = ApiResponse::empty(StatusCode::OK).header("Content-Type", "text/plain");
    r.body = n.min(MAX_PAGE_SIZE).to_string().into_bytes();
    Ok(r)
}

fn method_not_allowed(method: &str) -> DvError {
    DvError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        dverror::ODATA,
        format!("The requested resource does not support http method '{method}'."),
    )
}

/// Refuses a table request the configured role has no privilege for, in Dataverse's words.
fn require(ctx: &Ctx<'_>, db: &Db, access: Access, set: &str) -> Result<(), DvError> {
    let Some(t) = db.table_by_set(set) else {
        return Ok(());
    };
    let entity = &db.tables[t].def.logical_name;
    let missing = ctx
        .shared
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .role
        .missing(access, entity);
    match missing {
        None => Ok(()),
        Some(privilege) => Err(DvError::new(
            StatusCode::FORBIDDEN,
            dverror::PRIVILEGE_DENIED,
            format!(
                "Principal user (Id={}, type=8, roleCount=1) is missing {privilege} privilege on OTC for entity '{entity}'.",
                ctx.user
            ),
        )),
    }
}

/// `RetrieveUserPrivileges` for the calling application user: the configured role's privileges.
fn user_privileges(ctx: &Ctx<'_>, key: &str) -> Result<ApiResponse, DvError> {
    let user: Uuid = key
        .parse()
        .map_err(|_| DvError::odata(format!("Bad Request - Error in query syntax. 'systemusers({key})'")))?;
    if user != ctx.user {
        return Err(DvError::new(
            StatusCode::NOT_FOUND,
            dverror::NOT_FOUND,
            format!("systemuser With Id = {user} Does Not Exist"),
        ));
    }
    let role = ctx
        .shared
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .role
        .privileges
        .clone();
    let business_unit = ctx.shared.settings.business_unit_id.to_string();
    let privileges: Vec<Value> = role
        .iter()
        .map(|p| {
            json!({
                "Depth": p.depth,
                "PrivilegeId": privilege_id(&p.name).to_string(),
                "BusinessUnitId": business_unit,
                "PrivilegeName": p.name,
                "RecordFilterId": null,
                "RecordFilterUniqueName": null,
            })
        })
        .collect();
    Ok(ApiResponse::json(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("{}/$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse", ctx.api),
            "RolePrivileges": privileges,
        }),
    ))
}

/// A stable id per privilege name (FNV-1a), as Dataverse's privilege ids are stable per environment.
fn privilege_id(name: &str) -> Uuid {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Uuid::from_u64_pair(hash, hash.rotate_left(29))
}

fn who_am_i(ctx: &Ctx<'_>) -> ApiResponse {
    let s = &ctx.shared.settings;
    ApiResponse::json(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("{}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx.api),
            "BusinessUnitId": s.business_unit_id.to_string(),
            "UserId": ctx.user.to_string(),
            "OrganizationId": s.organization_id.to_string(),
        }),
    )
}

fn find(table: &Table, key_text: &str) -> Result<Uuid, DvError> {
    let key = odata::parse_key(key_text, &table.def)?;
    table.find(&key).ok_or_else(|| match key {
        KeyRef::Id(id) => DvError::not_found(&table.def, &id),
        KeyRef::Alt(_) => DvError::not_found_by_key(&table.def),
    })
}

/// A row as the Web API returns it.
pub(crate) fn project(
    table: &Table,
    row: &Row,
    select: Option<&[String]>,
    visible: &dyn Fn(&str) -> bool,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("@odata.etag".into(), Value::String(row.etag()));
    match select {
        Some(cols) => {
            for c in cols {
                m.insert(c.clone(), row.data.get(c).cloned().unwrap_or(Value::Null));
            }
        }
        None => {
            for a in &table.def.attrs {
                if visible(&a.name) {
                    m.insert(a.name.clone(), row.data.get(&a.name).cloned().unwrap_or(Value::Null));
                }
            }
        }
    }
    let pk = &table.def.primary_id;
    m.insert(pk.clone(), row.data.get(pk).cloned().unwrap_or(Value::Null));
    m
}

fn context(api: &str, set: &str, select: Option<&[String]>) -> String {
    match select {
        Some(cols) => format!("{api}/$metadata#{set}({})", cols.join(",")),
        None => format!("{api}/$metadata#{set}"),
    }
}

fn reject_unsupported(q: &HashMap<String, String>, table: &Table) -> Result<(), DvError> {
    for opt in ["$skip", "$search", "$apply", "$format"] {
        if q.contains_key(opt) {
            return Err(DvError::odata(format!("The query parameter {opt} is not supported")));
        }
    }
    if let Some(expand) = q.get("$expand") {
        let first = expand.split([',', '(']).next().unwrap_or("").trim();
        return Err(DvError::unknown_property(&table.def, first));
    }
    Ok(())
}

fn get_entity(
    ctx: &Ctx<'_>,
    db: &Db,
    t: usize,
    key: &str,
    req: &ApiRequest,
    q: &HashMap<String, String>,
) -> Result<ApiResponse, DvError> {
    let table = &db.tables[t];
    reject_unsupported(q, table)?;
    let visible = table.visible(&db.dropped);
    let select = q
        .get("$select")
        .map(|s| odata::parse_select(s, &table.def, &visible))
        .transpose()?;
    let id = find(table, key)?;
    let row = &table.rows[&id];
    if let Some(inm) = req.headers.get("if-none-match").and_then(|v| v.to_str().ok())
        && inm.trim() == row.etag()
    {
        return Ok(ApiResponse::empty(StatusCode::NOT_MODIFIED).header("ETag", row.etag()));
    }
    Ok(entity_response(
        ctx,
        table,
        row,
        select.as_deref(),
        &visible,
        StatusCode::OK,
    ))
}

fn entity_response(
    ctx: &Ctx<'_>,
    table: &Table,
    row: &Row,
    select: Option<&[String]>,
    visible: &dyn Fn(&str) -> bool,
    status: StatusCode,
) -> ApiResponse {
    let mut body = project(table, row, select, visible);
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{}/$entity", context(ctx.api, &table.def.entity_set, select))),
    );
    let mut r = ApiResponse::json(status, &Value::Object(body)).header("ETag", row.etag());
    r.rows = 1;
    r
}

fn sort_key(row: &Row, order: &[OrderTerm]) -> Vec<Value> {
    order
        .iter()
        .map(|o| row.data.get(&o.column).cloned().unwrap_or(Value::Null))
        .collect()
}

fn cmp_rows(order: &[OrderTerm], a_keys: &[Value], a_id: &Uuid, b_keys: &[Value], b_id: &Uuid) -> std::cmp::Ordering {
    for (i, o) in order.iter().enumerate() {
        let c = odata::cmp_values(&o.kind, a_keys.get(i), b_keys.get(i));
        let c = if o.descending { c.reverse() } else { c };
        if c != std::cmp::Ordering::Equal {
            return c;
        }
    }
    a_id.cmp(b_id)
}

fn next_link(ctx: &Ctx<'_>, set: &str, raw_query: Option<&str>, token: &SkipToken) -> String {
    let mut parts: Vec<&str> = raw_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = percent_decode(p.split('=').next().unwrap_or(""));
            name != "$skiptoken"
        })
        .collect();
    let tok = format!("$skiptoken={}", encode_component(&token.encode()));
    parts.push(&tok);
    format!("{}/{set}?{}", ctx.api, parts.join("&"))
}

fn delta_link(ctx: &Ctx<'_>, set: &str, select: Option<&[String]>, version: u64) -> String {
    let token = format!("{version}!{}", ctx.now.format("%m/%d/%Y %H:%M:%S"));
    let sel = select.map(|s| format!("$select={}&", s.join(","))).unwrap_or_default();
    format!("{}/{set}?{sel}$deltatoken={}", ctx.api, encode_component(&token))
}

fn page_size(prefer: &Prefer) -> usize {
    prefer.max_page_size.unwrap_or(MAX_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE)
}

fn get_collection(
    ctx: &Ctx<'_>,
    db: &Db,
    t: usize,
    req: &ApiRequest,
    q: &HashMap<String, String>,
) -> Result<ApiResponse, DvError> {
    let table = &db.tables[t];
    let def = &table.def;
    let prefer = Prefer::from_headers(&req.headers);
    let visible = table.visible(&db.dropped);
    let select = q
        .get("$select")
        .map(|s| odata::parse_select(s, def, &visible))
        .transpose()?;
    let skip = q.get("$skiptoken").map(|s| SkipToken::decode(s)).transpose()?;
    if let Some(token) = q.get("$deltatoken") {
        return delta(ctx, db, t, token, select.as_deref(), skip, &prefer);
    }
    let track = prefer.track_changes || skip.as_ref().is_some_and(|s| s.t);
    if track {
        for opt in ["$filter", "$orderby", "$top", "$expand"] {
            if q.contains_key(opt) {
                return Err(DvError::odata(format!(
                    "The \"{opt}\" query parameter isn't supported when Change Tracking is enabled."
                )));
            }
        }
        if !def.change_tracking {
            return Err(DvError::bad_request(
                dverror::INVALID_ARGUMENT,
                format!("Change tracking is not enabled for the entity '{}'.", def.logical_name),
            ));
        }
    }
    reject_unsupported(q, table)?;
    let filter = q
        .get("$filter")
        .map(|f| odata::parse_filter(f, def, &visible))
        .transpose()?;
    let order = q
        .get("$orderby")
        .map(|o| odata::parse_orderby(o, def, &visible))
        .transpose()?
        .unwrap_or_default();
    let top = match q.get("$top") {
        Some(t) => Some(t.trim().parse::<usize>().map_err(|_| {
            DvError::odata(format!("Invalid value '{t}' for $top query option found. The $top query option requires a non-negative integer value."))
        })?),
        None => None,
    };
    let count = match q.get("$count").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(DvError::odata(format!("'{other}' is not a valid count option."))),
    };
    let mut rows: Vec<(Vec<Value>, &Row, Uuid)> = table
        .rows
        .iter()
        .filter(|(_, r)| filter.as_ref().is_none_or(|f| odata::eval(f, &r.data, def)))
        .map(|(id, r)| (sort_key(r, &order), r, *id))
        .collect();
    if !order.is_empty() {
        rows.sort_by(|a, b| cmp_rows(&order, &a.0, &a.2, &b.0, &b.2));
    }
    let total = rows.len();
    if prefer.max_page_size.is_none()
        && let Some(top) = top
    {
        rows.truncate(top);
    }
    let start = match &skip {
        Some(tok) => {
            let tok_id = tok.id.unwrap_or_default();
            rows.partition_point(|(k, _, id)| cmp_rows(&order, k, id, &tok.k, &tok_id) != std::cmp::Ordering::Greater)
        }
        None => 0,
    };
    let size = page_size(&prefer);
    let end = (start + size).min(rows.len());
    let page = &rows[start.min(end)..end];
    let more = end < rows.len();
    let snapshot = skip.as_ref().map_or(db.version, |s| s.s);
    let values: Vec<Value> = page
        .iter()
        .map(|(_, r, _)| Value::Object(project(table, r, select.as_deref(), &visible)))
        .collect();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context(ctx.api, &def.entity_set, select.as_deref())),
    );
    if count {
        body.insert("@odata.count".into(), Value::from(total.min(MAX_PAGE_SIZE)));
    }
    body.insert("value".into(), Value::Array(values));
    if more && let Some((k, _, id)) = page.last() {
        let tok = SkipToken {
            k: k.clone(),
            id: Some(*id),
            t: track,
            s: snapshot,
            n: SkipToken::next_page(skip.as_ref()),
            ..SkipToken::default()
        };
        body.insert(
            "@odata.nextLink".into(),
            Value::String(next_link(ctx, &def.entity_set, req.query.as_deref(), &tok)),
        );
    }
    if track && !more {
        body.insert(
            "@odata.deltaLink".into(),
            Value::String(delta_link(ctx, &def.entity_set, select.as_deref(), snapshot)),
        );
    }
    let mut r = ApiResponse::json(StatusCode::OK, &Value::Object(body));
    r.rows = page.len() as u64;
    let mut applied = Vec::new();
    if let Some(n) = prefer.max_page_size {
        applied.push(format!("odata.maxpagesize={}", n.clamp(1, MAX_PAGE_SIZE)));
    }
    if prefer.track_changes {
        applied.push("odata.track-changes".to_owned());
    }
    if !applied.is_empty() {
        r = r.header("Preference-Applied", applied.join(","));
    }
    Ok(r)
}

fn parse_delta_token(text: &str) -> Option<(u64, DateTime<Utc>)> {
    let (version, issued) = text.split_once('!')?;
    let version = version.parse().ok()?;
    let issued = NaiveDateTime::parse_from_str(issued, "%m/%d/%Y %H:%M:%S")
        .ok()?
        .and_utc();
    Some((version, issued))
}

fn delta(
    ctx: &Ctx<'_>,
    db: &Db,
    t: usize,
    token: &str,
    select: Option<&[String]>,
    skip: Option<SkipToken>,
    prefer: &Prefer,
) -> Result<ApiResponse, DvError> {
    let table = &db.tables[t];
    let def = &table.def;
    let invalid = || DvError::bad_request(dverror::INVALID_ARGUMENT, "The delta token is not valid.");
    let (from, issued) = parse_delta_token(token).ok_or_else(invalid)?;
    // The issue time comes from the client: a date near chrono's limits must not overflow the addition.
    let expires = issued
        .checked_add_signed(ctx.shared.settings.delta_token_lifetime)
        .ok_or_else(invalid)?;
    if expires < ctx.now || from < db.min_delta_version {
        return Err(DvError::bad_request(
            dverror::EXPIRED_VERSION_STAMP,
            "Version stamp associated with the client has expired. Please perform a full sync.",
        ));
    }
    let visible = table.visible(&db.dropped);
    let snap = skip.as_ref().map_or(db.version, |s| s.s);
    let (mut phase, mut last) = skip.as_ref().map_or((0, from), |s| (s.p, s.v));
    let size = page_size(prefer);
    let mut items = Vec::new();
    let mut rows_out = 0u64;
    if phase == 0 {
        let mut changed: Vec<&Row> = table
            .rows
            .values()
            .filter(|r| r.version > last && r.version <= snap)
            .collect();
        changed.sort_by_key(|r| r.version);
        for r in changed.into_iter().take(size) {
            items.push(Value::Object(project(table, r, select, &visible)));
            last = r.version;
            rows_out += 1;
        }
        if items.len() < size {
            phase = 1;
            last = from;
        }
    }
    let mut more = false;
    if phase == 1 {
        let deleted_ctx = format!("{}/$metadata#{}/$deletedEntity", ctx.api, def.entity_set);
        let after = last;
        for (v, id) in table.deleted.iter().filter(|(v, _)| *v > after && *v <= snap) {
            if items.len() >= size {
                more = true;
                break;
            }
            items.push(json!({"@odata.context": deleted_ctx, "id": id.to_string(), "reason": "deleted"}));
            last = *v;
        }
    } else {
        more = true;
    }
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{}/$delta", context(ctx.api, &def.entity_set, select))),
    );
    body.insert("value".into(), Value::Array(items));
    if more {
        let tok = SkipToken {
            s: snap,
            d: Some(from),
            p: phase,
            v: last,
            n: SkipToken::next_page(skip.as_ref()),
            ..SkipToken::default()
        };
        let sel = select.map(|s| format!("$select={}&", s.join(","))).unwrap_or_default();
        let link = format!(
            "{}/{}?{sel}$deltatoken={}&$skiptoken={}",
            ctx.api,
            def.entity_set,
            encode_component(token),
            encode_component(&tok.encode())
        );
        body.insert("@odata.nextLink".into(), Value::String(link));
    } else {
        body.insert(
            "@odata.deltaLink".into(),
            Value::String(delta_link(ctx, &def.entity_set, select, snap)),
        );
    }
    let mut r = ApiResponse::json(StatusCode::OK, &Value::Object(body));
    r.rows = rows_out;
    Ok(r)
}

fn parse_body(def_set: &str, body: &Bytes) -> Result<Map<String, Value>, DvError> {
    let payload_error = |detail: String| {
        DvError::bad_request(
            dverror::PAYLOAD,
            format!(
                "Error identified in Payload provided by the user for Entity :'{def_set}', For more information on this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ---->  InnerException : Microsoft.OData.ODataException: {detail}"
            ),
        )
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(payload_error(
            "An object was expected as the top-level value of the payload.".into(),
        )),
        Err(e) => Err(payload_error(format!("Invalid JSON. {e}"))),
    }
}

fn entity_id_url(ctx: &Ctx<'_>, set: &str, id: Uuid) -> String {
    format!("{}/{set}({id})", ctx.api)
}

/// Answers a POST, PATCH, PUT or DELETE.
pub(crate) fn write(
    ctx: &Ctx<'_>,
    db: &mut Db,
    req: &ApiRequest,
    undo: &mut Vec<Undo>,
) -> Result<ApiResponse, DvError> {
    check_query_options(req.query.as_deref())?;
    let q = query_map(req.query.as_deref());
    let prefer = Prefer::from_headers(&req.headers);
    let method = req.method.as_str().to_owned();
    let target = parse_path(&req.path)?;
    if let Target::Collection(set) | Target::Entity(set, _) | Target::Property(set, _, _) = &target
        && ctx
            .shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .denied
            .contains(set)
    {
        let entity = db
            .table_by_set(set)
            .map(|t| db.tables[t].def.logical_name.clone())
            .unwrap_or_default();
        return Err(DvError::new(
            StatusCode::FORBIDDEN,
            dverror::PRIVILEGE_DENIED,
            format!(
                "Principal user (Id={}, type=8) is missing prvWrite{entity} privilege on OTC for entity '{entity}'.",
                ctx.user
            ),
        ));
    }
    let access = match (&target, &req.method) {
        (Target::Collection(set), &Method::POST) => Some((Access::Create, set)),
        (Target::Entity(set, _) | Target::Property(set, _, _), &Method::PATCH | &Method::PUT) => {
            Some((Access::Write, set))
        }
        (Target::Entity(set, _), &Method::DELETE) => Some((Access::Delete, set)),
        (Target::Property(set, _, _), &Method::DELETE) => Some((Access::Write, set)),
        _ => None,
    };
    if let Some((access, set)) = access {
        require(ctx, db, access, set)?;
        // An upsert that creates the row needs Create too.
        if let Target::Entity(_, key) = &target
            && req.method == Method::PATCH
            && let Some(t) = db.table_by_set(set)
            && find(&db.tables[t], key).is_err()
        {
            require(ctx, db, Access::Create, set)?;
        }
    }
    match (target, req.method.clone()) {
        (Target::Collection(set), Method::POST) => {
            let t = table_index(db, &set)?;
            let body = parse_body(&set, &req.body)?;
            let data = db.validate_body(t, body, WriteMode::Create)?;
            let id = db.insert(t, data, ctx.now, undo)?;
            written(ctx, db, t, id, &q, &prefer, StatusCode::CREATED)
        }
        (Target::Entity(set, key), Method::PATCH) => {
            let t = table_index(db, &set)?;
            upsert(ctx, db, t, &key, req, &q, &prefer, undo)
        }
        (Target::Entity(set, key), Method::DELETE) => {
            let t = table_index(db, &set)?;
            let id = find(&db.tables[t], &key)?;
            check_if_match(&db.tables[t].rows[&id], &req.headers)?;
            db.delete(t, id, undo)?;
            Ok(ApiResponse::empty(StatusCode::NO_CONTENT))
        }
        (Target::Property(set, key, col), m) if m == Method::PUT || m == Method::DELETE => {
            let t = table_index(db, &set)?;
            let id = find(&db.tables[t], &key)?;
            check_if_match(&db.tables[t].rows[&id], &req.headers)?;
            let value = if m == Method::PUT {
                let body = parse_body(&set, &req.body)?;
                body.get("value").cloned().ok_or_else(|| {
                    DvError::bad_request(dverror::PAYLOAD, "The request body must contain a 'value' property.")
                })?
            } else {
                Value::Null
            };
            let mut changes = Map::new();
            changes.insert(col, value);
            let data = db.validate_body(t, changes, WriteMode::Update)?;
            db.update(t, id, data, ctx.now, undo)?;
            Ok(ApiResponse::empty(StatusCode::NO_CONTENT))
        }
        (Target::Batch, _) => Err(DvError::odata("A $batch request cannot be nested in a batch.")),
        _ => Err(method_not_allowed(&method)),
    }
}

fn check_if_match(row: &Row, headers: &HeaderMap) -> Result<(), DvError> {
    if let Some(im) = headers.get("if-match").and_then(|v| v.to_str().ok()) {
        let im = im.trim();
        if im != "*" && !im.split(',').any(|e| e.trim() == row.etag()) {
            return Err(DvError::new(
                StatusCode::PRECONDITION_FAILED,
                dverror::CONCURRENCY,
                "The version of the existing record doesn't match the RowVersion property provided.",
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn upsert(
    ctx: &Ctx<'_>,
    db: &mut Db,
    t: usize,
    key_text: &str,
    req: &ApiRequest,
    q: &HashMap<String, String>,
    prefer: &Prefer,
    undo: &mut Vec<Undo>,
) -> Result<ApiResponse, DvError> {
    let set = db.tables[t].def.entity_set.clone();
    let key = odata::parse_key(key_text, &db.tables[t].def)?;
    let body = parse_body(&set, &req.body)?;
    let existing = db.tables[t].find(&key);
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    match existing {
        Some(id) => {
            let raced = ctx
                .shared
                .faults
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take_race(&set, id);
            if raced {
                db.touch(t, id, ctx.now);
            }
            if header("if-none-match") == Some("*") {
                return Err(DvError::new(
                    StatusCode::PRECONDITION_FAILED,
                    dverror::DUPLICATE,
                    "A record with matching key values already exists.",
                ));
            }
            check_if_match(&db.tables[t].rows[&id], &req.headers)?;
            let data = db.validate_body(t, body, WriteMode::Update)?;
            db.update(t, id, data, ctx.now, undo)?;
            written(ctx, db, t, id, q, prefer, StatusCode::OK)
        }
        None => {
            if header("if-match").is_some() {
                return Err(match key {
                    KeyRef::Id(id) => DvError::not_found(&db.tables[t].def, &id),
                    KeyRef::Alt(_) => DvError::not_found_by_key(&db.tables[t].def),
                });
            }
            let mut data = db.validate_body(t, body, WriteMode::Create)?;
            match &key {
                KeyRef::Id(id) => {
                    data.insert(db.tables[t].def.primary_id.clone(), Value::String(id.to_string()));
                }
                KeyRef::Alt(pairs) => {
                    for (c, v) in pairs {
                        data.insert(c.clone(), v.clone());
                    }
                }
            }
            let id = db.insert(t, data, ctx.now, undo)?;
            written(ctx, db, t, id, q, prefer, StatusCode::CREATED)
        }
    }
}

fn written(
    ctx: &Ctx<'_>,
    db: &Db,
    t: usize,
    id: Uuid,
    q: &HashMap<String, String>,
    prefer: &Prefer,
    status_with_body: StatusCode,
) -> Result<ApiResponse, DvError> {
    let table = &db.tables[t];
    let url = entity_id_url(ctx, &table.def.entity_set, id);
    let row = &table.rows[&id];
    if prefer.return_representation {
        let visible = table.visible(&db.dropped);
        let select = q
            .get("$select")
            .map(|s| odata::parse_select(s, &table.def, &visible))
            .transpose()?;
        return Ok(
            entity_response(ctx, table, row, select.as_deref(), &visible, status_with_body)
                .header("OData-EntityId", url)
                .header("Preference-Applied", "return=representation"),
        );
    }
    Ok(ApiResponse::empty(StatusCode::NO_CONTENT)
        .header("OData-EntityId", url)
        .header("ETag", row.etag()))
}

/// A minimal CSDL document describing the tables.
fn csdl(db: &Db) -> ApiResponse {
    use crate::metadata::AttrKind;
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices><Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">"#,
    );
    for t in &db.tables {
        let gone = db.dropped_for(&t.def.logical_name);
        xml.push_str(&format!(
            r#"<EntityType Name="{}"><Key><PropertyRef Name="{}" /></Key>"#,
            t.def.logical_name, t.def.primary_id
        ));
        for a in t.def.attrs.iter().filter(|a| !gone.contains(&a.name)) {
            let ty = match a.kind {
                AttrKind::Text { .. } => "Edm.String",
                AttrKind::Guid => "Edm.Guid",
                AttrKind::DateOnly => "Edm.Date",
                AttrKind::DateTime => "Edm.DateTimeOffset",
                AttrKind::Boolean => "Edm.Boolean",
                AttrKind::Choice { .. } | AttrKind::Integer => "Edm.Int32",
                AttrKind::Number => "Edm.Decimal",
                AttrKind::Other => "Edm.String",
            };
            xml.push_str(&format!(r#"<Property Name="{}" Type="{ty}" />"#, a.name));
        }
        xml.push_str("</EntityType>");
    }
    xml.push_str(r#"<EntityContainer Name="System">"#);
    for t in &db.tables {
        xml.push_str(&format!(
            r#"<EntitySet Name="{}" EntityType="Microsoft.Dynamics.CRM.{}" />"#,
            t.def.entity_set, t.def.logical_name
        ));
    }
    xml.push_str("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>");
    let mut r = ApiResponse::empty(StatusCode::OK);
    r.body = xml.into_bytes();
    r.header("Content-Type", "application/xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skiptoken_has_dataverse_paging_cookie_shape_and_round_trips() {
        let tok = SkipToken {
            k: vec![json!("x")],
            id: Some(Uuid::nil()),
            t: true,
            s: 5,
            n: 3,
            ..SkipToken::default()
        };
        let text = tok.encode();
        assert!(
            text.starts_with("<cookie pagenumber=\"3\" pagingcookie=\"%3ccookie%20page%3d%222%22%3e%3crow%20last%3d%22%7b00000000-0000-0000-0000-000000000000%7d%22"),
            "{text}"
        );
        assert!(text.ends_with("\" istracking=\"True\" />"), "{text}");
        let back = SkipToken::decode(&text).unwrap();
        assert_eq!((back.k, back.s, back.n), (tok.k.clone(), 5, 3));
        // The inner cookie decoded once too often (a client that mangles the link) is refused, as is junk.
        assert!(SkipToken::decode(&percent_decode(&text)).is_err());
        assert!(SkipToken::decode("nonsense").is_err());
        assert!(SkipToken::decode("<cookie pagenumber=\"2\" pagingcookie=\"%3ccookie%20sim%3d%22zz%22\" />").is_err());
        assert!(SkipToken::decode(&text.replace("pagenumber=\"3\"", "pagenumber=\"4\"")).is_err());
    }

    #[test]
    fn delta_token_parses_dataverse_shape() {
        let (v, at) = parse_delta_token("919042!08/22/2017 08:10:44").unwrap();
        assert_eq!(v, 919042);
        assert_eq!(at.to_rfc3339(), "2017-08-22T08:10:44+00:00");
        assert!(parse_delta_token("garbage").is_none());
    }

    #[test]
    fn percent_decode_keeps_plus_and_decodes_quotes() {
        assert_eq!(
            percent_decode("contacts(hlf_membernumber=%27a+b%27)"),
            "contacts(hlf_membernumber='a+b')"
        );
    }
}
