//! The route table, the router built from it, and the actions. The table is the only list of routes: the router is
//! made from it and the access test walks it, so no route can be added without both.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Form, Json, Router};
use csv_fallback::ExportKind;
use serde::Deserialize;
use sync_engine::SyncService;
use sync_store::{AlertState, ConflictState, Direction, Side};
use tracing::{info, warn};

use crate::Shared;
use crate::auth::Admin;
use crate::error::{Error, Result};
use crate::i18n::{self, Lang};
use crate::{assets, auth, csrf, pages, security, view};

/// The HTTP method of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMethod {
    /// Reads; never changes anything.
    Get,
    /// An action; needs a CSRF token.
    Post,
}

/// One route of the dashboard, relative to where it is mounted.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// GET or POST.
    pub method: RouteMethod,
    /// The path, with `{id}` for a parameter.
    pub path: &'static str,
    /// Whether it is open without the admin credential (only the liveness probe).
    pub public: bool,
    /// What it is for.
    pub description: &'static str,
    pub(crate) endpoint: Endpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Healthz,
    Style,
    Lang,
    Overview,
    Runs,
    Failures,
    Requeue,
    Dismiss,
    Conflicts,
    Resolve,
    Config,
    Privileges,
    Cache,
    Alerts,
    Acknowledge,
    Export,
    ExportDownload,
    Metrics,
    ApiSession,
    ApiHealth,
    ApiOverview,
    ApiRuns,
    ApiFailures,
    ApiRequeue,
    ApiDismiss,
    ApiConflicts,
    ApiResolve,
    ApiConfig,
    ApiPrivileges,
    ApiCache,
    ApiAlerts,
    ApiAcknowledge,
}

const fn route(method: RouteMethod, path: &'static str, endpoint: Endpoint, description: &'static str) -> Route {
    Route {
        method,
        path,
        public: matches!(endpoint, Endpoint::Healthz),
        description,
        endpoint,
    }
}

use RouteMethod::{Get, Post};

/// Every route of the dashboard.
pub const ROUTES: &[Route] = &[
    route(
        Get,
        "/healthz",
        Endpoint::Healthz,
        "liveness probe, no credential needed",
    ),
    route(Get, "/assets/style.css", Endpoint::Style, "the embedded stylesheet"),
    route(
        Get,
        "/",
        Endpoint::Overview,
        "overview: status, last success, alerts, last 30 runs",
    ),
    route(
        Get,
        "/lang/{code}",
        Endpoint::Lang,
        "choose the pages' language (nb or en), remembered in a cookie, and go back",
    ),
    route(Get, "/runs", Endpoint::Runs, "run history with metrics"),
    route(Get, "/failures", Endpoint::Failures, "failed records"),
    route(Post, "/failures/requeue", Endpoint::Requeue, "requeue a failed record"),
    route(Post, "/failures/dismiss", Endpoint::Dismiss, "dismiss a failed record"),
    route(Get, "/conflicts", Endpoint::Conflicts, "conflicts waiting for an admin"),
    route(
        Post,
        "/conflicts/{id}/resolve",
        Endpoint::Resolve,
        "pick a side of a conflict",
    ),
    route(Get, "/config", Endpoint::Config, "effective configuration and mapping"),
    route(
        Get,
        "/config/privileges",
        Endpoint::Privileges,
        "the application user's Dynamics privileges against what the sync needs (asks Dynamics)",
    ),
    route(Get, "/cache", Endpoint::Cache, "certification cache and its staleness"),
    route(Get, "/alerts", Endpoint::Alerts, "active alerts"),
    route(
        Post,
        "/alerts/{id}/acknowledge",
        Endpoint::Acknowledge,
        "acknowledge an alert",
    ),
    route(
        Get,
        "/export",
        Endpoint::Export,
        "the CSV fallback: full and delta exports per organisation",
    ),
    route(
        Post,
        "/export",
        Endpoint::ExportDownload,
        "download one file of a CSV export",
    ),
    route(
        Get,
        "/metrics",
        Endpoint::Metrics,
        "Prometheus metrics (text format); scrape with the bearer token",
    ),
    route(
        Get,
        "/api/session",
        Endpoint::ApiSession,
        "who is signed in and a CSRF token for API actions",
    ),
    route(Get, "/api/overview", Endpoint::ApiOverview, "the overview as JSON"),
    route(
        Get,
        "/api/health",
        Endpoint::ApiHealth,
        "the health monitor's model of each organisation as JSON",
    ),
    route(Get, "/api/runs", Endpoint::ApiRuns, "the run log as JSON"),
    route(Get, "/api/failures", Endpoint::ApiFailures, "failed records as JSON"),
    route(
        Post,
        "/api/failures/requeue",
        Endpoint::ApiRequeue,
        "requeue (JSON body)",
    ),
    route(
        Post,
        "/api/failures/dismiss",
        Endpoint::ApiDismiss,
        "dismiss (JSON body)",
    ),
    route(Get, "/api/conflicts", Endpoint::ApiConflicts, "conflicts as JSON"),
    route(
        Post,
        "/api/conflicts/{id}/resolve",
        Endpoint::ApiResolve,
        "resolve (JSON body)",
    ),
    route(Get, "/api/config", Endpoint::ApiConfig, "the configuration as JSON"),
    route(
        Get,
        "/api/privileges",
        Endpoint::ApiPrivileges,
        "the privilege check as JSON (asks Dynamics)",
    ),
    route(Get, "/api/cache", Endpoint::ApiCache, "the certification cache as JSON"),
    route(Get, "/api/alerts", Endpoint::ApiAlerts, "active alerts as JSON"),
    route(
        Post,
        "/api/alerts/{id}/acknowledge",
        Endpoint::ApiAcknowledge,
        "acknowledge (JSON body)",
    ),
];

fn handler(endpoint: Endpoint, filter: MethodFilter) -> MethodRouter<Arc<Shared>> {
    match endpoint {
        Endpoint::Healthz => on(filter, healthz),
        Endpoint::Style => on(filter, assets::style),
        Endpoint::Lang => on(filter, choose_language),
        Endpoint::Overview => on(filter, pages::overview),
        Endpoint::Runs => on(filter, pages::runs),
        Endpoint::Failures => on(filter, pages::failures),
        Endpoint::Requeue => on(filter, requeue_form),
        Endpoint::Dismiss => on(filter, dismiss_form),
        Endpoint::Conflicts => on(filter, pages::conflicts),
        Endpoint::Resolve => on(filter, resolve_form),
        Endpoint::Config => on(filter, pages::config),
        Endpoint::Privileges => on(filter, pages::privileges),
        Endpoint::Cache => on(filter, pages::cache),
        Endpoint::Alerts => on(filter, pages::alerts),
        Endpoint::Acknowledge => on(filter, acknowledge_form),
        Endpoint::Export => on(filter, pages::export),
        Endpoint::ExportDownload => on(filter, export_download),
        Endpoint::Metrics => on(filter, pages::metrics),
        Endpoint::ApiSession => on(filter, pages::api_session),
        Endpoint::ApiHealth => on(filter, pages::api_health),
        Endpoint::ApiOverview => on(filter, pages::api_overview),
        Endpoint::ApiRuns => on(filter, pages::api_runs),
        Endpoint::ApiFailures => on(filter, pages::api_failures),
        Endpoint::ApiRequeue => on(filter, requeue_json),
        Endpoint::ApiDismiss => on(filter, dismiss_json),
        Endpoint::ApiConflicts => on(filter, pages::api_conflicts),
        Endpoint::ApiResolve => on(filter, resolve_json),
        Endpoint::ApiConfig => on(filter, pages::api_config),
        Endpoint::ApiPrivileges => on(filter, pages::api_privileges),
        Endpoint::ApiCache => on(filter, pages::api_cache),
        Endpoint::ApiAlerts => on(filter, pages::api_alerts),
        Endpoint::ApiAcknowledge => on(filter, acknowledge_json),
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut public = Router::new();
    let mut protected = Router::new();
    for route in ROUTES {
        let filter = match route.method {
            Get => MethodFilter::GET,
            Post => MethodFilter::POST,
        };
        if route.public {
            public = public.route(route.path, handler(route.endpoint, filter));
        } else {
            protected = protected.route(route.path, handler(route.endpoint, filter));
        }
    }
    // Layers run outside in: authenticate, then check the CSRF token of a POST, then the handler.
    let protected = protected
        .route_layer(middleware::from_fn_with_state(shared.clone(), csrf::protect))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth::require_admin));
    public
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn(security::headers))
        .with_state(shared)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// The path the dashboard is mounted at (empty at the root), from the request's original and nested paths, so
/// links, forms and redirects work under any prefix.
#[derive(Debug, Clone)]
pub(crate) struct Base(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Base {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let inner = parts.uri.path();
        let original = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| inner.to_owned(), |u| u.0.path().to_owned());
        let base = if inner == "/" {
            original.trim_end_matches('/')
        } else {
            original.strip_suffix(inner).unwrap_or("")
        };
        Ok(Base(base.to_owned()))
    }
}

impl Base {
    /// The URL of a dashboard path (`/runs`), or of the overview for `/`.
    pub(crate) fn to(&self, path: &str) -> String {
        match (self.0.as_str(), path) {
            ("", path) => path.to_owned(),
            (base, "/") => base.to_owned(),
            (base, path) => format!("{base}{path}"),
        }
    }
}

// ----- actions -----

fn service<'a>(shared: &'a Shared, org: &str) -> Result<&'a SyncService> {
    shared
        .services
        .get(org)
        .ok_or_else(|| Error::NotFound(format!("organisation {org}")))
}

/// A failed record named by a form or JSON body.
#[derive(Debug, Deserialize)]
pub(crate) struct FailureAction {
    org: String,
    key: String,
    direction: Direction,
}

#[derive(Debug, Clone, Copy)]
enum FailureVerb {
    Requeue,
    Dismiss,
}

async fn failure_action(shared: &Shared, admin: &Admin, action: &FailureAction, verb: FailureVerb) -> Result<()> {
    let service = service(shared, &action.org)?;
    match verb {
        FailureVerb::Requeue => service.requeue(&action.key, action.direction).await?,
        FailureVerb::Dismiss => service.dismiss(&action.key, action.direction).await?,
    }
    info!(org = %action.org, record = %action.key, direction = ?action.direction, admin = %admin.name, action = ?verb,
        "failed record changed from the dashboard");
    Ok(())
}

/// A side picked for a conflict.
#[derive(Debug, Deserialize)]
pub(crate) struct ResolveForm {
    side: Side,
    /// A checkbox: present (`on`) when ticked.
    apply_now: Option<String>,
}

/// A side picked for a conflict, from an API client.
#[derive(Debug, Deserialize)]
pub(crate) struct ResolveJson {
    side: Side,
    #[serde(default)]
    apply_now: bool,
}

/// What became of a resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Recorded; the next run writes it.
    Recorded,
    /// Recorded and written at once.
    Applied,
    /// Recorded; writing it at once failed, so the next run writes it.
    ApplyFailed,
}

impl Resolved {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Resolved::Recorded => "resolved",
            Resolved::Applied => "resolved-applied",
            Resolved::ApplyFailed => "resolved-apply-failed",
        }
    }
}

/// Resolves through the engine, so the chosen value is what the sync writes; with `apply_now`, syncs that mentor
/// at once.
async fn resolve(shared: &Shared, admin: &Admin, id: &str, side: Side, apply_now: bool) -> Result<Resolved> {
    let conflict = shared
        .store
        .conflict(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("conflict {id}")))?;
    let service = service(shared, &conflict.organisation_id)?;
    if conflict.state != ConflictState::Open {
        return Err(Error::BadRequest(format!("conflict {id} is already resolved")));
    }
    service.resolve_conflict(id, side, &admin.name, false).await?;
    info!(org = %conflict.organisation_id, conflict = %id, mentor = %conflict.app_id, field = %conflict.field,
        side = ?side, admin = %admin.name, "conflict resolved from the dashboard");
    if !apply_now {
        return Ok(Resolved::Recorded);
    }
    match service.sync_mentor_now(&conflict.app_id).await {
        Ok(_) => Ok(Resolved::Applied),
        Err(error) => {
            warn!(org = %conflict.organisation_id, conflict = %id, error = %error,
                "writing a resolution at once failed; the next run writes it");
            Ok(Resolved::ApplyFailed)
        }
    }
}

/// An alert named by a form or JSON body.
#[derive(Debug, Deserialize)]
pub(crate) struct AcknowledgeAction {
    org: String,
}

async fn acknowledge(shared: &Shared, admin: &Admin, id: &str, action: &AcknowledgeAction) -> Result<()> {
    service(shared, &action.org)?;
    let alert = shared
        .store
        .active_alerts(&action.org)
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| Error::NotFound(format!("active alert {id}")))?;
    if alert.state == AlertState::Open {
        shared.store.acknowledge_alert(id, shared.clock.now()).await?;
        info!(org = %action.org, alert = %id, cause = %alert.cause, admin = %admin.name, "alert acknowledged");
    }
    Ok(())
}

/// The file of an export a form asks for.
#[derive(Debug, Deserialize)]
pub(crate) struct ExportForm {
    org: String,
    kind: ExportKindField,
    /// The 1-based number of an import file, or `errors`.
    part: String,
}

/// `full` or `delta`, as the form sends it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExportKindField {
    Full,
    Delta,
}

/// Builds the export and answers the file the form names as an attachment. Builds anew rather than serving what
/// the page showed, so the file is current; a part the page offered that no longer exists is a 404 that says so.
async fn export_file(shared: &Shared, admin: &Admin, form: &ExportForm) -> Result<Response> {
    let kind = match form.kind {
        ExportKindField::Full => ExportKind::Full,
        ExportKindField::Delta => ExportKind::Delta,
    };
    let export = view::export(shared, &form.org, kind).await?;
    let file = match form.part.as_str() {
        "errors" => export
            .errors_file
            .as_ref()
            .ok_or_else(|| Error::NotFound("an errors file (every mentor can be imported)".to_owned()))?,
        number => {
            let index = number
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| {
                    Error::BadRequest(format!("part must be a file number from 1 or errors, not {number:?}"))
                })?;
            export.files.get(index).ok_or_else(|| {
                Error::NotFound(format!(
                    "part {number} (the export now has {} files; reload the export page)",
                    export.files.len()
                ))
            })?
        }
    };
    info!(org = %form.org, kind = ?kind, file = %file.name, rows = file.rows, admin = %admin.name,
        "csv export downloaded from the dashboard");
    let disposition = format!("attachment; filename=\"{}\"", attachment_name(&file.name));
    let mut response = file.contents.clone().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(|_| Error::BadRequest("unusable file name".to_owned()))?,
    );
    Ok(response)
}

/// A file name safe inside a quoted `Content-Disposition` parameter: the exporter's names are already ASCII letters,
/// digits, `-`, `_` and `.`; anything else becomes `_`.
fn attachment_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn export_download(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    lang: Lang,
    Form(form): Form<ExportForm>,
) -> Response {
    match export_file(&shared, &admin, &form).await {
        Ok(response) => response,
        Err(error) => html_error(error, &base, lang),
    }
}

/// After a form's action, back to its page (303, so a reload does not post again) with a notice.
fn back(base: &Base, page: &str, notice: &str) -> Response {
    let mut response = Redirect::to(&format!("{}?notice={notice}", base.to(page))).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html_error(error: Error, base: &Base, lang: Lang) -> Response {
    pages::error_response(&error, Some(base), lang)
}

/// Where the language switch came from.
#[derive(Debug, Deserialize)]
pub(crate) struct LanguageQuery {
    back: Option<String>,
}

/// How long the language choice is remembered: a year.
const LANGUAGE_COOKIE_SECONDS: u32 = 365 * 24 * 3600;

/// `GET /lang/{code}`: remembers the language in a cookie (no script needed) and goes back to the page the switch
/// was on. `back` must be a page of this dashboard, so the link cannot send anyone elsewhere.
async fn choose_language(
    base: Base,
    lang: Lang,
    Path(code): Path<String>,
    Query(query): Query<LanguageQuery>,
) -> Response {
    let Some(chosen) = Lang::from_code(&code) else {
        let error = Error::BadRequest(format!("unknown language {code:?}; the dashboard speaks nb and en"));
        return html_error(error, &base, lang);
    };
    let target = query
        .back
        .filter(|back| is_own_page(&base, back))
        .unwrap_or_else(|| base.to("/"));
    let path = if base.0.is_empty() { "/" } else { base.0.as_str() };
    let cookie = format!(
        "{}={}; Path={path}; Max-Age={LANGUAGE_COOKIE_SECONDS}; SameSite=Lax; HttpOnly",
        i18n::COOKIE,
        chosen.code()
    );
    let mut response = Redirect::to(&target).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether `target` is a path of this dashboard: under the base, with no scheme, host or backslash that a browser
/// could read as another site, and ASCII as a `Location` header must be (the switch's links are percent-encoded).
fn is_own_page(base: &Base, target: &str) -> bool {
    let root = base.to("/");
    let under_base = target == root || target.starts_with(&format!("{}/", base.0));
    under_base
        && !target.starts_with("//")
        && !target.contains('\\')
        && !target.contains("://")
        && target.is_ascii()
        && !target.chars().any(char::is_control)
}

async fn requeue_form(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    lang: Lang,
    Form(action): Form<FailureAction>,
) -> Response {
    match failure_action(&shared, &admin, &action, FailureVerb::Requeue).await {
        Ok(()) => back(&base, "/failures", "requeued"),
        Err(error) => html_error(error, &base, lang),
    }
}

async fn dismiss_form(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    lang: Lang,
    Form(action): Form<FailureAction>,
) -> Response {
    match failure_action(&shared, &admin, &action, FailureVerb::Dismiss).await {
        Ok(()) => back(&base, "/failures", "dismissed"),
        Err(error) => html_error(error, &base, lang),
    }
}

async fn resolve_form(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    lang: Lang,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Response {
    match resolve(&shared, &admin, &id, form.side, form.apply_now.is_some()).await {
        Ok(resolved) => back(&base, "/conflicts", resolved.code()),
        Err(error) => html_error(error, &base, lang),
    }
}

async fn acknowledge_form(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    base: Base,
    lang: Lang,
    Path(id): Path<String>,
    Form(action): Form<AcknowledgeAction>,
) -> Response {
    match acknowledge(&shared, &admin, &id, &action).await {
        Ok(()) => back(&base, "/alerts", "acknowledged"),
        Err(error) => html_error(error, &base, lang),
    }
}

fn done(outcome: &str) -> Response {
    Json(serde_json::json!({ "outcome": outcome })).into_response()
}

async fn requeue_json(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    Json(action): Json<FailureAction>,
) -> Result<Response> {
    failure_action(&shared, &admin, &action, FailureVerb::Requeue).await?;
    Ok(done("requeued"))
}

async fn dismiss_json(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    Json(action): Json<FailureAction>,
) -> Result<Response> {
    failure_action(&shared, &admin, &action, FailureVerb::Dismiss).await?;
    Ok(done("dismissed"))
}

async fn resolve_json(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
    Json(body): Json<ResolveJson>,
) -> Result<Response> {
    let resolved = resolve(&shared, &admin, &id, body.side, body.apply_now).await?;
    Ok(done(resolved.code()))
}

async fn acknowledge_json(
    State(shared): State<Arc<Shared>>,
    Extension(admin): Extension<Admin>,
    Path(id): Path<String>,
    Json(action): Json<AcknowledgeAction>,
) -> Result<Response> {
    acknowledge(&shared, &admin, &id, &action).await?;
    Ok(done("acknowledged"))
}
