//! The running server: the builder, the axum routes, TLS on loopback with a certificate generated at start, the
//! connection wrapper that lets a fault drop a connection, and the handles tests use to reach state and faults.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::api::{self, ApiRequest, ApiResponse, Ctx};
use crate::auth::{AppRegistration, Directory};
use crate::clock::{Clock, SystemClock};
use crate::dverror::{self, DvError};
use crate::error::{Error, Result};
use crate::faults::{Action, FaultConfig, FaultState, Race};
use crate::generate::{self, GenerateSpec};
use crate::limits::{Limiter, ServiceLimits};
use crate::metadata::TableDef;
use crate::store::Db;

/// The tenant id of the app registered when none is configured.
pub const DEFAULT_TENANT_ID: &str = "7d3a7f8e-0b4c-4a6e-9c51-2f1e5d4c3b2a";
/// The client id of the app registered when none is configured.
pub const DEFAULT_CLIENT_ID: &str = "2b9c4e1a-6f3d-4c8b-a7e5-9d0f1e2c3b4a";
/// The client secret of the app registered when none is configured (a well-known test value, not a secret).
pub const DEFAULT_CLIENT_SECRET: &str = "dataverse-sim-secret";
/// The path of the Web API.
pub const API_PATH: &str = "/api/data/v9.2";
/// The largest Web API request body accepted (a `$batch` of 1,000 operations fits many times over); larger ones get
/// 413 before they are buffered.
const BODY_LIMIT: usize = 32 * 1024 * 1024;
/// The largest token request accepted: a client-credentials form is a few hundred bytes.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;
/// How long a request body may take to arrive. Without it a client that announces more bytes than it sends holds
/// its connection, and for the Web API a concurrency slot, for as long as it stays connected.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest lifetime or window a setting may have; beyond it adding it to "now" could overflow the calendar.
const MAX_SETTING_DURATION: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

const BUNDLED_METADATA: [(&str, &str); 2] = [
    (
        "contact.json",
        include_str!("../../../fixtures/sim/metadata/contact.json"),
    ),
    (
        "hlf_posting.json",
        include_str!("../../../fixtures/sim/metadata/hlf_posting.json"),
    ),
];
const BUNDLED_DATA: [(&str, &str); 2] = [
    ("contacts", include_str!("../../../fixtures/sim/data/contacts.json")),
    (
        "hlf_postings",
        include_str!("../../../fixtures/sim/data/hlf_postings.json"),
    ),
];

/// Whether the simulator speaks HTTPS (the default) or plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// HTTPS with a certificate generated at start; clients trust [`RunningSimulator::ca_certificate_pem`].
    #[default]
    Https,
    /// Plain HTTP, for tools that cannot add a root certificate.
    Http,
}

/// Where tables and rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fixtures {
    /// The metadata compiled into the crate; with the demo rows or empty tables.
    Bundled { demo_rows: bool },
    /// A directory with `metadata/*.json` and optionally `data/<entity set>.json`.
    Dir(PathBuf),
}

/// Entry point: `Simulator::builder()...start().await`.
#[derive(Debug, Clone, Copy)]
pub struct Simulator;

impl Simulator {
    /// A builder with the defaults: HTTPS on 127.0.0.1 port 0, bundled metadata, empty tables, one app
    /// ([`DEFAULT_TENANT_ID`], [`DEFAULT_CLIENT_ID`], [`DEFAULT_CLIENT_SECRET`]), Dataverse's documented limits.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            transport: Transport::Https,
            fixtures: Fixtures::Bundled { demo_rows: false },
            apps: Vec::new(),
            token_lifetime: Duration::from_secs(3599),
            delta_token_lifetime: Duration::from_secs(7 * 24 * 3600),
            limits: ServiceLimits::default(),
            clock: Arc::new(SystemClock),
            generate: None,
            faults: FaultConfig::default(),
            seed: 0,
        }
    }
}

/// Settings for a simulator; see [`Simulator::builder`] for the defaults.
#[derive(Debug)]
pub struct SimulatorBuilder {
    addr: SocketAddr,
    transport: Transport,
    fixtures: Fixtures,
    apps: Vec<AppRegistration>,
    token_lifetime: Duration,
    delta_token_lifetime: Duration,
    limits: ServiceLimits,
    clock: Arc<dyn Clock>,
    generate: Option<GenerateSpec>,
    faults: FaultConfig,
    seed: u64,
}

impl SimulatorBuilder {
    /// Listens on this loopback address (port 0 picks a free port). Non-loopback addresses are refused at start.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Listens on 127.0.0.1 at this port.
    pub fn port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }

    /// HTTPS (default) or plain HTTP.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Loads tables from `dir/metadata/*.json` and rows from `dir/data/<entity set>.json` (`{"value":[...]}`).
    pub fn fixtures_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.fixtures = Fixtures::Dir(dir.into());
        self
    }

    /// Seeds the bundled demo rows (five HLF members) into `contacts`.
    pub fn demo_data(mut self) -> Self {
        if let Fixtures::Bundled { demo_rows } = &mut self.fixtures {
            *demo_rows = true;
        }
        self
    }

    /// Registers an app; when none is registered the default app is.
    pub fn app(mut self, app: AppRegistration) -> Self {
        self.apps.push(app);
        self
    }

    /// Access token lifetime (default 3599 s).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Delta token lifetime (default 7 days, Dataverse's `ExpireChangeTrackingInDays`).
    pub fn delta_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.delta_token_lifetime = lifetime;
        self
    }

    /// Service-protection limits.
    pub fn limits(mut self, limits: ServiceLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The clock every expiry and window reads.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Generates rows at start (scale mode).
    pub fn generate(mut self, spec: GenerateSpec) -> Self {
        self.generate = Some(spec);
        self
    }

    /// Faults active from the start.
    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// Seed for random fault decisions (overridden by a fault config's own seed).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Loads the fixtures, binds the socket and starts serving on the current Tokio runtime.
    pub async fn start(self) -> Result<RunningSimulator> {
        if !self.addr.ip().is_loopback() {
            return Err(Error::InvalidSetting(format!(
                "{} is not a loopback address; the simulator only serves loopback",
                self.addr.ip()
            )));
        }
        for (name, value) in [
            ("token lifetime", self.token_lifetime),
            ("delta token lifetime", self.delta_token_lifetime),
            ("service-protection window", self.limits.window),
        ] {
            if value > MAX_SETTING_DURATION {
                return Err(Error::InvalidSetting(format!(
                    "the {name} of {} s is longer than 100 years",
                    value.as_secs()
                )));
            }
        }
        let clock = Arc::clone(&self.clock);
        let now = clock.now();
        let db = load_db(&self.fixtures, self.generate.as_ref(), now)?;
        let apps = if self.apps.is_empty() {
            vec![AppRegistration::new(
                DEFAULT_TENANT_ID,
                DEFAULT_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
            )]
        } else {
            self.apps
        };
        let listener = std::net::TcpListener::bind(self.addr).map_err(|source| Error::Bind {
            addr: self.addr,
            source,
        })?;
        listener.set_nonblocking(true).map_err(|source| Error::Bind {
            addr: self.addr,
            source,
        })?;
        let local = listener.local_addr().map_err(|source| Error::Bind {
            addr: self.addr,
            source,
        })?;
        let scheme = match self.transport {
            Transport::Https => "https",
            Transport::Http => "http",
        };
        let host = match local.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let base = format!("{scheme}://{host}:{}", local.port());
        let resources = vec![
            base.clone(),
            format!("{scheme}://localhost:{}", local.port()),
            format!("{scheme}://127.0.0.1:{}", local.port()),
            format!("{scheme}://[::1]:{}", local.port()),
        ];
        let conns: ConnRegistry = Arc::new(Mutex::new(HashMap::new()));
        let mut faults = FaultState::new(self.faults.seed.unwrap_or(self.seed));
        let shared = Arc::new(Shared {
            db: RwLock::new(db),
            dir: Mutex::new(Directory {
                apps,
                tokens: HashMap::new(),
            }),
            limiter: Limiter::new(self.limits),
            faults: Mutex::new(FaultState::new(0)),
            clock,
            settings: Settings {
                token_lifetime: chrono::Duration::from_std(self.token_lifetime)
                    .unwrap_or(chrono::Duration::seconds(3599)),
                delta_token_lifetime: chrono::Duration::from_std(self.delta_token_lifetime)
                    .unwrap_or(chrono::Duration::days(7)),
                organization_id: Uuid::new_v4(),
                business_unit_id: Uuid::new_v4(),
            },
            stats: Counters::default(),
            started: Instant::now(),
            api: format!("{base}{API_PATH}"),
            base: base.clone(),
            resources,
            conns: Arc::clone(&conns),
        });
        apply_config(&shared, &mut faults, &self.faults)?;
        *lock(&shared.faults) = faults;

        let router = Router::new()
            .route(
                "/{tenant}/oauth2/v2.0/token",
                post(token_handler).fallback(token_wrong_method),
            )
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(openid_configuration_handler),
            )
            .route("/{tenant}/discovery/v2.0/keys", get(keys_handler))
            .route("/api/data/v9.2/{*rest}", any(api_handler))
            .route("/_sim/stats", get(stats_handler))
            .route(
                "/_sim/faults",
                post(faults_handler)
                    .put(faults_replace_handler)
                    .delete(faults_clear_handler),
            )
            .fallback(not_found_handler)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(Arc::clone(&shared));
        let make = router.into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let acceptor = KillAcceptor { conns };
        let (ca_pem, task) = match self.transport {
            Transport::Https => {
                let (ca_pem, config) = tls_config()?;
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(
                    axum_server::tls_rustls::RustlsConfig::from_config(config),
                )
                .acceptor(acceptor);
                let server = axum_server::from_tcp(listener).acceptor(tls).handle(handle.clone());
                (Some(ca_pem), tokio::spawn(async move { server.serve(make).await }))
            }
            Transport::Http => {
                let server = axum_server::from_tcp(listener)
                    .acceptor(acceptor)
                    .handle(handle.clone());
                (None, tokio::spawn(async move { server.serve(make).await }))
            }
        };
        tracing::info!(base = %base, "dataverse simulator listening");
        Ok(RunningSimulator {
            shared,
            base,
            local,
            ca_pem,
            handle,
            task,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn load_rows(db: &mut Db, set: &str, text: &str, origin: &Path, now: chrono::DateTime<Utc>) -> Result<()> {
    let bad = |reason: String| Error::BadFixture {
        path: origin.to_path_buf(),
        reason,
    };
    let t = db
        .table_by_set(set)
        .ok_or_else(|| bad(format!("no table has the entity set `{set}`")))?;
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let rows = match value {
        Value::Object(mut m) => m.remove("value").unwrap_or(Value::Array(Vec::new())),
        other => other,
    };
    let Value::Array(rows) = rows else {
        return Err(bad("expected {\"value\": [...]}".into()));
    };
    for row in rows {
        let Value::Object(row) = row else {
            return Err(bad("a row is not a JSON object".into()));
        };
        db.load(t, row, now).map_err(|e| bad(e.message))?;
    }
    Ok(())
}

fn load_db(fixtures: &Fixtures, generate: Option<&GenerateSpec>, now: chrono::DateTime<Utc>) -> Result<Db> {
    let mut db = match fixtures {
        Fixtures::Bundled { demo_rows } => {
            let defs = BUNDLED_METADATA
                .iter()
                .map(|(name, text)| {
                    let path = Path::new("fixtures/sim/metadata").join(name);
                    let value = serde_json::from_str(text).map_err(|e| Error::BadFixture {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                    TableDef::from_json(value, &path)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut db = Db::new(defs);
            if *demo_rows {
                for (set, text) in BUNDLED_DATA {
                    load_rows(
                        &mut db,
                        set,
                        text,
                        &Path::new("fixtures/sim/data").join(format!("{set}.json")),
                        now,
                    )?;
                }
            }
            db
        }
        Fixtures::Dir(dir) => {
            let mut db = Db::new(TableDef::load_dir(&dir.join("metadata"))?);
            let sets: Vec<String> = db.tables.iter().map(|t| t.def.entity_set.clone()).collect();
            for set in sets {
                let path = dir.join("data").join(format!("{set}.json"));
                if path.exists() {
                    let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadFixture {
                        path: path.clone(),
                        source,
                    })?;
                    load_rows(&mut db, &set, &text, &path, now)?;
                }
            }
            db
        }
    };
    if let Some(spec) = generate {
        let t = db
            .table_by_set("contacts")
            .ok_or_else(|| Error::InvalidSetting("scale mode needs a `contacts` table".into()))?;
        for row in generate::contacts(spec) {
            db.load(t, row, now)
                .map_err(|e| Error::InvalidSetting(format!("generated row rejected: {}", e.message)))?;
        }
    }
    Ok(db)
}

/// Generates a local CA and a server certificate for 127.0.0.1, ::1 and localhost signed by it.
fn tls_config() -> Result<(String, Arc<rustls::ServerConfig>)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let tls = |e: &dyn std::fmt::Display| Error::Tls(e.to_string());
    // Installing the process default lets in-process clients built without an explicit provider work too; it fails
    // harmlessly when another provider was installed first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca_key = KeyPair::generate().map_err(|e| tls(&e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dataverse-sim local CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| tls(&e))?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().map_err(|e| tls(&e))?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])
        .map_err(|e| tls(&e))?;
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(|e| tls(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key =
        rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((ca_cert.pem(), Arc::new(config)))
}

type ConnRegistry = Arc<Mutex<HashMap<SocketAddr, Arc<AtomicBool>>>>;

/// Wraps each accepted TCP stream so a fault can make it fail (and so the connection drop) mid-request.
#[derive(Clone, Debug)]
struct KillAcceptor {
    conns: ConnRegistry,
}

impl<S> axum_server::accept::Accept<TcpStream, S> for KillAcceptor {
    type Stream = KillStream;
    type Service = S;
    type Future = std::future::Ready<io::Result<(KillStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let killed = Arc::new(AtomicBool::new(false));
        let peer = stream.peer_addr().ok();
        if let Some(peer) = peer {
            lock(&self.conns).insert(peer, Arc::clone(&killed));
        }
        let _ = stream.set_nodelay(true);
        std::future::ready(Ok((
            KillStream {
                inner: stream,
                killed,
                peer,
                conns: Arc::clone(&self.conns),
            },
            service,
        )))
    }
}

/// A TCP stream that starts failing once killed.
#[derive(Debug)]
struct KillStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
    peer: Option<SocketAddr>,
    conns: ConnRegistry,
}

fn reset() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionReset)
}

impl AsyncRead for KillStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for KillStream {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            lock(&self.conns).remove(&peer);
        }
    }
}

/// Fixed settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) token_lifetime: chrono::Duration,
    pub(crate) delta_token_lifetime: chrono::Duration,
    pub(crate) organization_id: Uuid,
    pub(crate) business_unit_id: Uuid,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    rows: AtomicU64,
    throttled: AtomicU64,
    faults: AtomicU64,
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) db: RwLock<Db>,
    pub(crate) dir: Mutex<Directory>,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) faults: Mutex<FaultState>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    stats: Counters,
    started: Instant,
    base: String,
    api: String,
    resources: Vec<String>,
    conns: ConnRegistry,
}

impl Shared {
    fn kill(&self, peer: SocketAddr) {
        if let Some(flag) = lock(&self.conns).get(&peer) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    fn tenant(&self) -> String {
        lock(&self.dir)
            .apps
            .first()
            .map(|a| a.tenant_id.clone())
            .unwrap_or_default()
    }
}

fn to_response(r: ApiResponse) -> Response {
    let mut builder = Response::builder().status(r.status).header("OData-Version", "4.0");
    for (k, v) in &r.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Body::from(r.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// What the handler does after injecting: the latency to spend, and the fault that strikes once the request has
/// been carried out, if any.
struct Injected {
    latency: Duration,
    late: Option<Action>,
}

/// Applies latency and the fault decided for this request; returns the answer when the fault replaces it.
/// The latency is returned rather than slept so a Web API request can spend it while holding its concurrency slot.
async fn inject(shared: &Shared, peer: SocketAddr) -> Result<Injected, Response> {
    let (latency, action) = lock(&shared.faults).decide(shared.clock.now());
    let Some(action) = action else {
        return Ok(Injected { latency, late: None });
    };
    if action.after_commit() {
        shared.stats.faults.fetch_add(1, Ordering::Relaxed);
        return Ok(Injected {
            latency,
            late: Some(action),
        });
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    shared.stats.faults.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(?action, "injecting fault");
    Err(match action {
        Action::Status(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let e = DvError::new(
                status,
                dverror::GENERIC,
                format!("Injected fault: {}.", status.canonical_reason().unwrap_or("error")),
            );
            to_response(ApiResponse::error(&e))
        }
        Action::Throttle(secs) => {
            shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
            let limits = shared.limiter.limits();
            let mut e = DvError::new(
                StatusCode::TOO_MANY_REQUESTS,
                dverror::THROTTLE_REQUESTS,
                format!(
                    "Number of requests exceeded the limit of {} over time window of {} seconds.",
                    limits.max_requests,
                    limits.window.as_secs()
                ),
            );
            e.retry_after = Some(secs);
            to_response(ApiResponse::error(&e))
        }
        Action::Reset => {
            shared.kill(peer);
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Action::Hang(d) => {
            tokio::time::sleep(d).await;
            shared.kill(peer);
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        after @ (Action::LateAnswer(_) | Action::ResetAfterCommit | Action::StatusAfterCommit(_)) => {
            return Ok(Injected {
                latency,
                late: Some(after),
            });
        }
    })
}

/// Reads a request body of at most `limit` bytes that must arrive within `timeout`.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, DvError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(DvError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            dverror::PAYLOAD,
            format!("The request body is larger than {limit} bytes or was not received completely."),
        )),
        Err(_) => Err(DvError::new(
            StatusCode::REQUEST_TIMEOUT,
            dverror::PAYLOAD,
            format!(
                "The request body was not received within {} seconds.",
                timeout.as_secs()
            ),
        )),
    }
}

async fn token_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(tenant): UrlPath<String>,
    req: Request,
) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let late = match inject(&shared, peer).await {
        Ok(injected) => {
            if !injected.latency.is_zero() {
                tokio::time::sleep(injected.latency).await;
            }
            injected.late
        }
        Err(r) => return r,
    };
    let body = match read_body(req.into_body(), TOKEN_BODY_LIMIT, BODY_TIMEOUT).await {
        Ok(body) => body,
        // Azure AD's front end answers these without an Azure AD error body.
        Err(e) => return e.status.into_response(),
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let now = shared.clock.now();
    let result = lock(&shared.dir).token(
        &shared.base,
        &tenant,
        &form,
        &shared.resources,
        shared.settings.token_lifetime,
        now,
    );
    if let Some(action) = late {
        return withhold(&shared, peer, action).await;
    }
    token_answer(result)
}

/// Loses the answer of a request that was carried out: held and then dropped, dropped at once, or replaced by an
/// error status.
async fn withhold(shared: &Shared, peer: SocketAddr, action: Action) -> Response {
    tracing::debug!(?action, "injecting a fault after the request was carried out");
    match action {
        Action::StatusAfterCommit(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            let e = DvError::new(
                status,
                dverror::GENERIC,
                format!("Injected fault: {}.", status.canonical_reason().unwrap_or("error")),
            );
            to_response(ApiResponse::error(&e))
        }
        Action::LateAnswer(hold) => {
            tokio::time::sleep(hold).await;
            shared.kill(peer);
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        _ => {
            shared.kill(peer);
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Any method but POST on the token endpoint: Azure AD's AADSTS900561.
async fn token_wrong_method(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    token_answer(Err(crate::auth::wrong_method(req.method(), shared.clock.now())))
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`: what MSAL reads before its first token request.
async fn openid_configuration_handler(State(shared): State<Arc<Shared>>, UrlPath(tenant): UrlPath<String>) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    if !lock(&shared.dir).knows_tenant(&tenant) {
        return token_answer(Err(crate::auth::unknown_tenant(&tenant, shared.clock.now())));
    }
    axum::Json(crate::oidc::configuration(&shared.base, &tenant)).into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: the keys that verify the emulator's access tokens (also under `common`).
async fn keys_handler(State(shared): State<Arc<Shared>>, UrlPath(tenant): UrlPath<String>) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    if tenant != "common" && !lock(&shared.dir).knows_tenant(&tenant) {
        return token_answer(Err(crate::auth::unknown_tenant(&tenant, shared.clock.now())));
    }
    axum::Json(crate::oidc::keys(&shared.base, &tenant)).into_response()
}

/// A token endpoint answer, success or Azure AD error; clients must not cache it.
fn token_answer(result: std::result::Result<Value, crate::auth::AadError>) -> Response {
    let (status, value) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => {
            tracing::info!(status = %e.status, "token request refused");
            (e.status, e.body)
        }
    };
    let mut r = (status, axum::Json(value)).into_response();
    r.headers_mut()
        .insert("Cache-Control", HeaderValue::from_static("no-store, no-cache"));
    r
}

fn unauthorized(shared: &Shared) -> Response {
    let challenge = format!(
        "Bearer authorization_uri={}/{}/oauth2/authorize, resource_id={}/",
        shared.base,
        shared.tenant(),
        shared.base
    );
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header("WWW-Authenticate", challenge)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::UNAUTHORIZED.into_response())
}

async fn api_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let Injected { latency, late } = match inject(&shared, peer).await {
        Ok(injected) => injected,
        Err(r) => return r,
    };
    let now = shared.clock.now();
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let user = token.and_then(|t| lock(&shared.dir).authenticate(t, now));
    let Some(user) = user else { return unauthorized(&shared) };
    // The body is read before the request takes a concurrency slot, so a slow sender cannot hold one.
    let (parts, body) = req.into_parts();
    let body = match read_body(body, BODY_LIMIT, BODY_TIMEOUT).await {
        Ok(b) => b,
        Err(e) => return to_response(ApiResponse::error(&e)),
    };
    let permit = match shared.limiter.admit(user, now) {
        Ok(p) => p,
        Err(e) => {
            shared.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return to_response(ApiResponse::error(&e));
        }
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = parts
        .uri
        .path()
        .strip_prefix(API_PATH)
        .unwrap_or("")
        .trim_start_matches('/');
    let api_req = ApiRequest {
        method: parts.method.clone(),
        path: api::percent_decode(path),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let ctx = Ctx {
        shared: &shared,
        api: &shared.api,
        user,
        now,
    };
    let response = if api_req.path == "$batch" {
        crate::batch::handle(&ctx, &api_req)
    } else {
        api::handle(&ctx, &api_req)
    };
    permit.charge(response.ops, now);
    drop(permit);
    shared.stats.rows.fetch_add(response.rows, Ordering::Relaxed);
    if let Some(action) = late {
        return withhold(&shared, peer, action).await;
    }
    let (requests_left, time_left) = shared.limiter.remaining(user);
    let mut r = to_response(response);
    if let Ok(v) = HeaderValue::from_str(&requests_left.to_string()) {
        r.headers_mut().insert("x-ms-ratelimit-burst-remaining-xrm-requests", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.2}", time_left as f64 / 1000.0)) {
        r.headers_mut().insert("x-ms-ratelimit-time-remaining-xrm-requests", v);
    }
    r
}

async fn stats_handler(State(shared): State<Arc<Shared>>) -> Response {
    let s = snapshot(&shared);
    axum::Json(json!({
        "requests": s.requests,
        "rows": s.rows,
        "throttled": s.throttled,
        "faults_injected": s.faults_injected,
        "elapsed_seconds": s.elapsed.as_secs_f64(),
        "requests_per_second": s.requests_per_second,
        "rows_per_second": s.rows_per_second,
    }))
    .into_response()
}

/// `POST /_sim/faults`: merges the configuration into the faults in force (fields it leaves out stay as they are).
async fn faults_handler(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    change_faults(&shared, &body, false)
}

/// `PUT /_sim/faults`: the configuration becomes the faults in force; everything it does not name is cleared and
/// every dropped column it does not list is restored.
async fn faults_replace_handler(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    change_faults(&shared, &body, true)
}

/// `DELETE /_sim/faults`: no fault in force, every dropped column restored.
async fn faults_clear_handler(State(shared): State<Arc<Shared>>) -> Response {
    Faults(Arc::clone(&shared))
        .replace(&FaultConfig::default())
        .map_or_else(
            |e| (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            |()| StatusCode::NO_CONTENT.into_response(),
        )
}

fn change_faults(shared: &Arc<Shared>, body: &[u8], replace: bool) -> Response {
    let config: FaultConfig = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid fault configuration: {e}")).into_response(),
    };
    let faults = Faults(Arc::clone(shared));
    let result = if replace {
        faults.replace(&config)
    } else {
        faults.apply(&config)
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn not_found_handler(req: Request) -> Response {
    let e = DvError::segment(req.uri().path().trim_start_matches('/'));
    to_response(ApiResponse::error(&e))
}

fn snapshot(shared: &Shared) -> Stats {
    let elapsed = shared.started.elapsed();
    let requests = shared.stats.requests.load(Ordering::Relaxed);
    let rows = shared.stats.rows.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    Stats {
        requests,
        rows,
        throttled: shared.stats.throttled.load(Ordering::Relaxed),
        faults_injected: shared.stats.faults.load(Ordering::Relaxed),
        elapsed,
        requests_per_second: requests as f64 / secs,
        rows_per_second: rows as f64 / secs,
    }
}

fn apply_config(shared: &Shared, faults: &mut FaultState, config: &FaultConfig) -> Result<()> {
    if let Some(seed) = config.seed {
        faults.reseed(seed);
    }
    if let Some(role) = &config.role {
        faults.role = crate::role::Role {
            privileges: role
                .iter()
                .map(|p| crate::role::RolePrivilege::parse(p))
                .collect::<Result<_>>()?,
            enforced: true,
        };
    }
    if let Some(ms) = config.latency_ms {
        faults.set_latency(Duration::from_millis(ms));
    }
    for (status, rate) in &config.error_rates {
        faults.set_error_rate(error_status(status)?, *rate);
    }
    let after = &config.after_commit;
    for (status, rate) in &after.error_rates {
        faults.set_after_commit_error_rate(error_status(status)?, *rate);
    }
    if let Some(r) = after.reset_rate {
        faults.set_after_commit_reset_rate(r);
    }
    if let Some(r) = after.timeout_rate {
        faults.set_after_commit_timeout_rate(r);
    }
    if let Some(n) = after.reset_next {
        faults.push(Action::ResetAfterCommit, n);
    }
    if let Some(n) = after.timeout_next {
        let hang = faults.hang;
        faults.push(Action::LateAnswer(hang), n);
    }
    if let Some(r) = config.reset_rate {
        faults.set_reset_rate(r);
    }
    if let Some(r) = config.timeout_rate {
        faults.set_timeout_rate(r);
    }
    if let Some(ms) = config.hang_ms {
        faults.hang = Duration::from_millis(ms);
    }
    if let Some(s) = config.throttle_retry_after_s {
        faults.set_retry_after(s);
    }
    if let Some(n) = config.throttle_next {
        let secs = faults.retry_after();
        faults.push(Action::Throttle(secs), n);
    }
    if let Some(s) = config.throttle_for_s {
        let secs = faults.retry_after();
        let until = i64::try_from(s)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|period| shared.clock.now().checked_add_signed(period))
            .ok_or_else(|| Error::InvalidSetting(format!("throttle_for_s = {s} is out of range")))?;
        faults.throttle_until(until, secs);
    }
    if config.expire_delta_tokens {
        expire_delta_tokens(shared);
    }
    for client in &config.expired_secrets {
        expire_secret(shared, client)?;
    }
    for col in &config.dropped_columns {
        let (table, column) = col
            .split_once('.')
            .ok_or_else(|| Error::InvalidSetting(format!("dropped column `{col}` is not of the form table.column")))?;
        drop_column(shared, table, column)?;
    }
    for col in &config.restored_columns {
        let (table, column) = col
            .split_once('.')
            .ok_or_else(|| Error::InvalidSetting(format!("restored column `{col}` is not of the form table.column")))?;
        restore_column(shared, table, column)?;
    }
    Ok(())
}

/// A status for an error rate: one of the server errors a gateway or Dataverse answers with.
fn error_status(status: &str) -> Result<u16> {
    let code: u16 = status
        .parse()
        .map_err(|_| Error::InvalidSetting(format!("error rate status `{status}` is not a number")))?;
    if ![500, 502, 503, 504].contains(&code) {
        return Err(Error::InvalidSetting(format!(
            "error rate status {code} is not one of 500, 502, 503, 504"
        )));
    }
    Ok(code)
}

fn restore_column(shared: &Shared, table: &str, column: &str) -> Result<()> {
    let mut db = shared.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = db
        .table_by_name(table)
        .ok_or_else(|| Error::InvalidSetting(format!("no table `{table}`")))?;
    let name = db.tables[t].def.logical_name.clone();
    if let Some(dropped) = db.dropped.get_mut(&name) {
        dropped.remove(column);
    }
    Ok(())
}

fn expire_delta_tokens(shared: &Shared) {
    let mut db = shared.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    db.version += 1;
    db.min_delta_version = db.version;
}

fn expire_secret(shared: &Shared, client_id: &str) -> Result<()> {
    let now = shared.clock.now();
    let mut dir = lock(&shared.dir);
    let app = dir
        .apps
        .iter_mut()
        .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
        .ok_or_else(|| Error::InvalidSetting(format!("no app has the client id `{client_id}`")))?;
    app.secret_expires_at = Some(now - chrono::Duration::seconds(1));
    Ok(())
}

fn drop_column(shared: &Shared, table: &str, column: &str) -> Result<()> {
    let mut db = shared.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = db
        .table_by_name(table)
        .ok_or_else(|| Error::InvalidSetting(format!("no table `{table}`")))?;
    let def = &db.tables[t].def;
    if def.attr(column).is_none() || column == def.primary_id {
        return Err(Error::InvalidSetting(format!(
            "table `{table}` has no droppable column `{column}`"
        )));
    }
    let name = def.logical_name.clone();
    db.dropped.entry(name).or_default().insert(column.to_owned());
    Ok(())
}

/// Counters of what the simulator served since it started.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Requests received (token, Web API and `$batch` requests; a batch counts once).
    pub requests: u64,
    /// Rows returned in Web API answers.
    pub rows: u64,
    /// Requests answered 429 (service protection or injected).
    pub throttled: u64,
    /// Faults injected.
    pub faults_injected: u64,
    /// Time since start.
    pub elapsed: Duration,
    /// `requests / elapsed`.
    pub requests_per_second: f64,
    /// `rows / elapsed`.
    pub rows_per_second: f64,
}

/// A running simulator. Dropping it leaves the server running until the runtime stops; call
/// [`RunningSimulator::shutdown`] to stop it.
#[derive(Debug)]
pub struct RunningSimulator {
    shared: Arc<Shared>,
    base: String,
    local: SocketAddr,
    ca_pem: Option<String>,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl RunningSimulator {
    /// The instance URL, e.g. `https://127.0.0.1:49152` (what `DYNAMICS_INSTANCE_URL` would hold).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The Web API root, `<base>/api/data/v9.2`.
    pub fn api_url(&self) -> String {
        format!("{}{API_PATH}", self.base)
    }

    /// The Azure AD authority host to configure in a credential (the same server as the Web API).
    pub fn authority_url(&self) -> &str {
        &self.base
    }

    /// The v2.0 token endpoint for the first registered app's tenant.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base, self.shared.tenant())
    }

    /// The scope a client-credentials request asks for: `<base>/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.base)
    }

    /// The credential variables a worker reads to reach this simulator as its default app registration:
    /// `<prefix>_TENANT_ID`, `_CLIENT_ID`, `_CLIENT_SECRET` and `_INSTANCE_URL` (prefix `DYNAMICS` for HLF). The
    /// worker must also be told the simulator's authority ([`RunningSimulator::authority_url`]) and to trust its
    /// certificate ([`RunningSimulator::ca_certificate_pem`]).
    pub fn worker_environment(&self, prefix: &str) -> BTreeMap<String, String> {
        [
            ("TENANT_ID", DEFAULT_TENANT_ID),
            ("CLIENT_ID", DEFAULT_CLIENT_ID),
            ("CLIENT_SECRET", DEFAULT_CLIENT_SECRET),
            ("INSTANCE_URL", self.base_url()),
        ]
        .into_iter()
        .map(|(name, value)| (format!("{prefix}_{name}"), value.to_owned()))
        .collect()
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The PEM of the CA that signed the server certificate (HTTPS mode); add it as a trusted root.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Access to the simulated data.
    pub fn state(&self) -> SimState {
        SimState(Arc::clone(&self.shared))
    }

    /// Fault injection.
    pub fn faults(&self) -> Faults {
        Faults(Arc::clone(&self.shared))
    }

    /// What was served so far.
    pub fn stats(&self) -> Stats {
        snapshot(&self.shared)
    }

    /// Stops accepting connections, lets requests in flight finish for up to a second, and waits for the server.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        let _ = self.task.await;
    }
}

/// A handle on the simulated data, for tests and tools: read rows, and change them "server side" as a Dynamics
/// user or plug-in would.
#[derive(Debug, Clone)]
pub struct SimState(Arc<Shared>);

impl SimState {
    fn with_table<T>(&self, entity_set: &str, f: impl FnOnce(&mut Db, usize) -> T) -> Option<T> {
        let mut db = self.0.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let t = db.table_by_set(entity_set)?;
        Some(f(&mut db, t))
    }

    /// The number of rows in a table, `None` for an unknown entity set.
    pub fn row_count(&self, entity_set: &str) -> Option<usize> {
        self.with_table(entity_set, |db, t| db.tables[t].rows.len())
    }

    /// A row's stored columns (plus `@odata.etag`), `None` when missing.
    pub fn row(&self, entity_set: &str, id: Uuid) -> Option<Value> {
        self.with_table(entity_set, |db, t| {
            db.tables[t].rows.get(&id).map(|r| {
                let mut m = r.data.clone();
                m.insert("@odata.etag".into(), Value::String(r.etag()));
                Value::Object(m)
            })
        })
        .flatten()
    }

    /// Every row of a table in primary-key order.
    pub fn rows(&self, entity_set: &str) -> Vec<Value> {
        self.with_table(entity_set, |db, t| {
            db.tables[t]
                .rows
                .values()
                .map(|r| Value::Object(r.data.clone()))
                .collect()
        })
        .unwrap_or_default()
    }

    /// The id of the row whose alternate-key column `column` equals `value`.
    pub fn find_by_key(&self, entity_set: &str, column: &str, value: &str) -> Option<Uuid> {
        self.with_table(entity_set, |db, t| {
            db.tables[t].find(&crate::odata::KeyRef::Alt(vec![(
                column.to_owned(),
                Value::String(value.to_owned()),
            )]))
        })
        .flatten()
    }

    /// Creates a row server side (validated as a client create would be); returns its id.
    pub fn insert(&self, entity_set: &str, row: Value) -> Result<Uuid> {
        let now = self.0.clock.now();
        let Value::Object(row) = row else {
            return Err(Error::InvalidSetting("a row must be a JSON object".into()));
        };
        self.with_table(entity_set, |db, t| {
            let data = db.validate_body(t, row, crate::store::WriteMode::Create)?;
            db.insert(t, data, now, &mut Vec::new())
        })
        .ok_or_else(|| Error::InvalidSetting(format!("no entity set `{entity_set}`")))?
        .map_err(|e| Error::InvalidSetting(e.message))
    }

    /// Changes a row server side (new etag and `modifiedon`), as a Dynamics user would.
    pub fn update(&self, entity_set: &str, id: Uuid, changes: Value) -> Result<()> {
        let now = self.0.clock.now();
        let Value::Object(changes) = changes else {
            return Err(Error::InvalidSetting("changes must be a JSON object".into()));
        };
        self.with_table(entity_set, |db, t| {
            let data: Map<String, Value> = db.validate_body(t, changes, crate::store::WriteMode::Update)?;
            db.update(t, id, data, now, &mut Vec::new())
        })
        .ok_or_else(|| Error::InvalidSetting(format!("no entity set `{entity_set}`")))?
        .map_err(|e| Error::InvalidSetting(e.message))
    }

    /// Deletes a row server side (it shows up as deleted in change tracking).
    pub fn delete(&self, entity_set: &str, id: Uuid) -> Result<()> {
        self.with_table(entity_set, |db, t| db.delete(t, id, &mut Vec::new()))
            .ok_or_else(|| Error::InvalidSetting(format!("no entity set `{entity_set}`")))?
            .map_err(|e| Error::InvalidSetting(e.message))
    }

    /// Replaces the service-protection limits and forgets the accounting so far.
    pub fn set_limits(&self, limits: ServiceLimits) {
        self.0.limiter.set_limits(limits);
        self.0.limiter.reset();
    }

    /// The application user id of a registered app (`WhoAmI`'s `UserId`).
    pub fn user_id(&self, client_id: &str) -> Option<Uuid> {
        lock(&self.0.dir)
            .apps
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
            .map(|a| a.user_id)
    }
}

/// Fault injection on a running simulator. Scripted faults ("the next N requests") apply before random rates.
#[derive(Debug, Clone)]
pub struct Faults(Arc<Shared>);

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        lock(&self.0.faults)
    }

    /// Applies a fault configuration (the same format as the CLI's fault file).
    pub fn apply(&self, config: &FaultConfig) -> Result<()> {
        let mut state = std::mem::replace(&mut *self.state(), FaultState::new(0));
        let result = apply_config(&self.0, &mut state, config);
        *self.state() = state;
        result
    }

    /// Makes `config` the faults in force: every fault it does not name is cleared and every dropped column it does
    /// not list is restored (the service-protection accounting is kept). `apply` merges instead.
    pub fn replace(&self, config: &FaultConfig) -> Result<()> {
        self.state().clear();
        self.0
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .dropped
            .clear();
        self.apply(config)
    }

    /// Removes every fault, restores dropped columns and forgets the service-protection accounting.
    pub fn clear(&self) {
        self.state().clear();
        self.0
            .db
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .dropped
            .clear();
        self.0.limiter.reset();
    }

    /// Re-seeds the random fault decisions.
    pub fn reseed(&self, seed: u64) {
        self.state().reseed(seed);
    }

    /// Adds latency to every request.
    pub fn set_latency(&self, latency: Duration) {
        self.state().set_latency(latency);
    }

    /// Answers this fraction of requests with `status` (500, 502, 503 or 504).
    pub fn set_error_rate(&self, status: u16, rate: f64) -> Result<()> {
        if ![500, 502, 503, 504].contains(&status) {
            return Err(Error::InvalidSetting(format!(
                "error rate status {status} is not one of 500, 502, 503, 504"
            )));
        }
        self.state().set_error_rate(status, rate);
        Ok(())
    }

    /// Drops this fraction of connections without an answer.
    pub fn set_reset_rate(&self, rate: f64) {
        self.state().set_reset_rate(rate);
    }

    /// Holds this fraction of requests for the hang duration, then drops the connection.
    pub fn set_timeout_rate(&self, rate: f64) {
        self.state().set_timeout_rate(rate);
    }

    /// How long a timed-out request is held before its connection is dropped (default 30 s).
    pub fn set_hang_duration(&self, hang: Duration) {
        self.state().hang = hang;
    }

    /// Answers the next `n` requests with `status` (any status, e.g. 500 or 503).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.state().push(Action::Status(status), n);
    }

    /// Drops the connection of the next `n` requests.
    pub fn reset_next(&self, n: u32) {
        self.state().push(Action::Reset, n);
    }

    /// Holds the next `n` requests for the hang duration, then drops their connections.
    pub fn timeout_next(&self, n: u32) {
        let hang = self.state().hang;
        self.state().push(Action::Hang(hang), n);
    }

    /// Carries the next `n` requests out but withholds their answers for the hang duration, then drops their
    /// connections: Dynamics finishing a request after the client gave up (a write that landed unconfirmed).
    pub fn answer_late_next(&self, n: u32) {
        let hang = self.state().hang;
        self.state().push(Action::LateAnswer(hang), n);
    }

    /// Carries the next `n` requests out, then drops their connections without an answer.
    pub fn reset_after_commit_next(&self, n: u32) {
        self.state().push(Action::ResetAfterCommit, n);
    }

    /// Carries the next `n` requests out, then answers them with `status` (e.g. 502 or 504) instead of their result.
    pub fn fail_after_commit_next(&self, n: u32, status: u16) {
        self.state().push(Action::StatusAfterCommit(status), n);
    }

    /// Carries this fraction of requests out, then answers them with `status` (500, 502, 503 or 504).
    pub fn set_after_commit_error_rate(&self, status: u16, rate: f64) -> Result<()> {
        let status = error_status(&status.to_string())?;
        self.state().set_after_commit_error_rate(status, rate);
        Ok(())
    }

    /// Carries this fraction of requests out, then drops their connections without an answer.
    pub fn set_after_commit_reset_rate(&self, rate: f64) {
        self.state().set_after_commit_reset_rate(rate);
    }

    /// Carries this fraction of requests out, then holds their answers for the hang duration and drops them.
    pub fn set_after_commit_timeout_rate(&self, rate: f64) {
        self.state().set_after_commit_timeout_rate(rate);
    }

    /// Answers the next `n` requests with 429 and `Retry-After: retry_after` (whole seconds, at least 1).
    pub fn throttle_next(&self, n: u32, retry_after: Duration) {
        self.state().push(Action::Throttle(retry_after.as_secs().max(1)), n);
    }

    /// Answers every request with 429 for `period` (by the simulator's clock).
    pub fn throttle_for(&self, period: Duration, retry_after: Duration) {
        // A period beyond the calendar's end means "until cleared".
        let until = chrono::Duration::from_std(period)
            .ok()
            .and_then(|period| self.0.clock.now().checked_add_signed(period))
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        self.state().throttle_until(until, retry_after.as_secs().max(1));
    }

    /// The next update (PATCH, upsert) of the row `id` in `entity_set` (any row when `None`) is preceded by a
    /// server-side modification, so a client's `If-Match` with the etag it read fails with 412.
    pub fn race_next_update(&self, entity_set: &str, id: Option<Uuid>) {
        self.state().races.push(Race {
            entity_set: entity_set.to_owned(),
            row: id,
        });
    }

    /// Expires every delta token issued so far (the next delta read answers "perform a full sync").
    pub fn expire_delta_tokens(&self) {
        expire_delta_tokens(&self.0);
    }

    /// Expires an app's client secret now (token requests then fail with AADSTS7000222).
    pub fn expire_secret(&self, client_id: &str) -> Result<()> {
        expire_secret(&self.0, client_id)
    }

    /// Revokes every access token issued so far (Dataverse answers 401 until a new one is fetched).
    pub fn revoke_tokens(&self) {
        lock(&self.0.dir).tokens.clear();
    }

    /// Gives the application user exactly these privileges: `RetrieveUserPrivileges` answers them, and every table
    /// request needs its privilege from now on (403, 0x80040220, when missing).
    pub fn set_role(&self, privileges: Vec<crate::role::RolePrivilege>) {
        self.state().role = crate::role::Role {
            privileges,
            enforced: true,
        };
    }

    /// Makes the app lack the write privilege on `entity_set`: creates, updates and deletes answer 403 (0x80040220).
    pub fn deny_writes(&self, entity_set: &str) {
        self.state().denied.push(entity_set.to_owned());
    }

    /// Brings back a column removed with [`Faults::drop_column`].
    pub fn restore_column(&self, table: &str, column: &str) -> Result<()> {
        restore_column(&self.0, table, column)
    }

    /// Removes `column` of `table` from the metadata and refuses it on read and write, as after HLF's staff deleted
    /// it (schema drift). [`Faults::restore_column`] brings it back.
    pub fn drop_column(&self, table: &str, column: &str) -> Result<()> {
        drop_column(&self.0, table, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_never_arrives_times_out_with_408() {
        let stalled = Body::from_stream(futures::stream::pending::<Result<Bytes, io::Error>>());
        let e = read_body(stalled, BODY_LIMIT, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_answers_413() {
        let e = read_body(Body::from(vec![b'x'; 1025]), 1024, BODY_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::PAYLOAD_TOO_LARGE, dverror::PAYLOAD));
        let ok = read_body(Body::from(vec![b'x'; 1024]), 1024, BODY_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(ok.len(), 1024);
    }
}
