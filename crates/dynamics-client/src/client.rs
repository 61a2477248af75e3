//! The client and its request loop: token, budget, send, classify, retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use integration_config::{InstanceUrl, OrganisationConfig, RateLimitSettings, RetrySettings};
use rand::RngExt;
use tracing::{debug, warn};
use url::Url;

use crate::auth::{AzureAdTokenSource, TokenSource};
use crate::budget::RateBudget;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result, UrlForLog, from_response};

/// The Dataverse Web API v9.2 client (the seed's DynamicsPortalClient) for one instance and one set of credentials.
/// Cheap to clone; clones share the token cache, the rate budget and the metrics.
#[derive(Debug, Clone)]
pub struct DynamicsClient {
    pub(crate) inner: Arc<Inner>,
}

/// Optional settings of a [`DynamicsClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Dynamics' service-protection limits and the headroom to keep.
    pub rate_limit: RateLimitSettings,
    /// Request retries and timeouts.
    pub retry: RetrySettings,
    /// Rows per page, at most 5,000.
    pub page_size: u32,
    /// Extra root certificates (PEM) to trust, e.g. the local emulator's.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// The clock; real time unless a test injects virtual time.
    pub clock: Arc<dyn Clock>,
}

/// Counters of what the client did, for the run log and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientMetrics {
    /// HTTP requests sent to Dynamics (a `$batch` counts once, as Dynamics counts it).
    pub requests: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Requests sent again after a throttle, a transient failure or a refused token.
    pub retried: u64,
    /// Time spent waiting: for the rate budget, for `Retry-After` and for backoff.
    pub waited: Duration,
    /// Time spent decoding answers (pages of rows and `$batch` answers) into values: the client's own CPU work, as
    /// opposed to the network's and the server's.
    pub decoding: Duration,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) api_base: Url,
    pub(crate) tokens: Arc<dyn TokenSource>,
    pub(crate) budget: RateBudget,
    pub(crate) retry: RetrySettings,
    pub(crate) page_size: u32,
    pub(crate) clock: Arc<dyn Clock>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    throttled: AtomicU64,
    retried: AtomicU64,
    waited_ms: AtomicU64,
    decoding_ns: AtomicU64,
}

/// One request, kept so it can be sent again.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<Bytes>,
    /// Whether sending it twice has the effect of sending it once, so it may be resent when its answer is lost:
    /// reads, unconditional upserts by key and `If-Match: *` updates are; a create, an etag-guarded update, a
    /// create-only upsert and a `$batch` holding any of them are not.
    pub(crate) idempotent: bool,
    /// A `$batch`: an error status with a multipart body is an answer per part, not one error.
    pub(crate) multipart_answer: bool,
}

/// An answer with a success status.
/// A Web API answer as it came: see [`DynamicsClient::exchange`].
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            rate_limit: RateLimitSettings::default(),
            retry: RetrySettings::default(),
            page_size: 5000,
            extra_root_certificates: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl DynamicsClient {
    /// A client for `instance` that gets its tokens from `tokens`.
    pub fn new(instance: &InstanceUrl, tokens: Arc<dyn TokenSource>, options: ClientOptions) -> Result<Self> {
        let http = http_client(&options)?;
        Ok(Self::with_http(instance, tokens, http, options))
    }

    /// A client for one configured organisation, authenticating with its client credentials through Azure AD.
    /// The same HTTP client (and so the same trusted certificates, the organisation's extra ones included) serves
    /// Azure AD and Dynamics.
    pub fn for_organisation(organisation: &OrganisationConfig, mut options: ClientOptions) -> Result<Self> {
        options
            .extra_root_certificates
            .extend(organisation.extra_root_certificates.iter().cloned());
        let http = http_client(&options)?;
        let tokens = Arc::new(AzureAdTokenSource::new(organisation, Some(http.clone())));
        Ok(Self::with_http(
            &organisation.credentials.instance_url,
            tokens,
            http,
            options,
        ))
    }

    fn with_http(
        instance: &InstanceUrl,
        tokens: Arc<dyn TokenSource>,
        http: reqwest::Client,
        options: ClientOptions,
    ) -> Self {
        DynamicsClient {
            inner: Arc::new(Inner {
                http,
                api_base: instance.api_base(),
                tokens,
                budget: RateBudget::new(&options.rate_limit, options.clock.clone()),
                retry: options.retry,
                page_size: options.page_size.clamp(1, 5000),
                clock: options.clock,
                counters: Counters::default(),
            }),
        }
    }

    /// The Web API base, e.g. `https://hlf.crm4.dynamics.com/api/data/v9.2/`.
    pub fn api_base(&self) -> &Url {
        &self.inner.api_base
    }

    /// What the client has done so far.
    pub fn metrics(&self) -> ClientMetrics {
        let c = &self.inner.counters;
        ClientMetrics {
            requests: c.requests.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            waited: Duration::from_millis(c.waited_ms.load(Ordering::Relaxed)),
            decoding: Duration::from_nanos(c.decoding_ns.load(Ordering::Relaxed)),
        }
    }

    /// Counts a throttling answer that came inside a batch part.
    pub(crate) fn note_throttled(&self) {
        self.inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request sent again.
    pub(crate) fn note_retried(&self) {
        self.inner.counters.retried.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds to the time spent decoding answers.
    pub(crate) fn note_decoding(&self, spent: Duration) {
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.inner.counters.decoding_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A URL relative to the API base. `path` is already escaped.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.inner
            .api_base
            .join(path)
            .map_err(|e| Error::decode(format!("request path {path}"), e))
    }

    /// One raw exchange with the Web API, for diagnostics such as the emulator's conformance check (the sync never
    /// uses it): `method` on `path` (relative to the API base, or an absolute URL under it such as a next link)
    /// with `headers` and `body`, authenticated, inside the request budget, sent once, with no retry and no
    /// interpretation of the answer. Only a transport or token failure is an `Err`.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<RawAnswer> {
        let inner = &self.inner;
        let target = if path.starts_with(inner.api_base.as_str()) {
            Url::parse(path).map_err(|e| Error::decode("an absolute request URL", e))?
        } else {
            self.url(path)?
        };
        let (slot, waited) = inner.budget.acquire().await;
        self.add_wait(waited);
        let token = inner.tokens.token().await?;
        let mut request = inner
            .http
            .request(method, target.clone())
            .header(http::header::AUTHORIZATION, token.header_value()?);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let sent_at = inner.clock.now();
        inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        let outcome = request.send().await;
        let answer = match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body = response.bytes().await;
                body.map(|body| RawAnswer {
                    status,
                    headers,
                    body: body.to_vec(),
                })
            }
            Err(e) => Err(e),
        };
        slot.finish(inner.clock.now().saturating_duration_since(sent_at));
        answer.map_err(|source| Error::Transport {
            url: format!("{}{}", target.origin().ascii_serialization(), target.path()),
            attempts: 1,
            source,
        })
    }

    /// A GET with the standard OData headers.
    pub(crate) fn get(&self, url: Url) -> Call {
        Call::new(Method::GET, url)
    }

    /// Sends a call, waiting for the budget, refreshing a refused token once, and retrying throttled and transient
    /// failures within the retry settings. Error answers are decoded into [`Error`] variants.
    pub(crate) async fn send(&self, call: &Call) -> Result<Answer> {
        let inner = &self.inner;
        let retry = &inner.retry;
        let started = inner.clock.now();
        let mut attempt: u32 = 0;
        let mut refreshed_token = false;
        loop {
            attempt += 1;
            if attempt > 1 {
                inner.counters.retried.fetch_add(1, Ordering::Relaxed);
            }
            // The budget first: a long wait for it must not outlive the token taken for the request.
            let (slot, waited) = inner.budget.acquire().await;
            self.add_wait(waited);
            let token = inner.tokens.token().await?;
            let mut request = inner.http.request(call.method.clone(), call.url.clone());
            request = request.headers(call.headers.clone());
            request = request.header(http::header::AUTHORIZATION, token.header_value()?);
            if let Some(body) = &call.body {
                request = request.body(body.clone());
            }
            let sent_at = inner.clock.now();
            inner.counters.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    response.bytes().await.map(|body| (status, headers, body))
                }
                Err(e) => Err(e),
            };
            slot.finish(inner.clock.now().saturating_duration_since(sent_at));
            let spent = inner.clock.now().saturating_duration_since(started);
            let may_retry = |wait: Duration| attempt < retry.max_attempts && spent + wait <= retry.total_budget;

            let (status, headers, body) = match outcome {
                Ok(answer) => answer,
                Err(error) => {
                    // reqwest's text names the whole URL, whose query or key can carry member numbers.
                    let error = error.without_url();
                    let wait = self.backoff(attempt);
                    // A connection that was never made carried nothing: any request may go again.
                    let resendable = call.idempotent || error.is_connect();
                    if !resendable && is_transient(&error) {
                        warn!(method = %call.method, url = %UrlForLog(&call.url), attempt, error = %error, "no answer to a write that is not safe to resend; its outcome is unknown");
                        return Err(Error::OutcomeUnknown {
                            url: UrlForLog(&call.url).to_string(),
                            reason: lost_answer(&error),
                        });
                    }
                    if is_transient(&error) && may_retry(wait) {
                        warn!(method = %call.method, url = %UrlForLog(&call.url), attempt, wait_ms = wait.as_millis() as u64, error = %error, "request failed; retrying");
                        self.wait(wait).await;
                        continue;
                    }
                    return Err(Error::Transport {
                        url: UrlForLog(&call.url).to_string(),
                        attempts: attempt,
                        source: error,
                    });
                }
            };
            debug!(method = %call.method, url = %UrlForLog(&call.url), status = status.as_u16(), attempt, "dynamics answered");
            if call.multipart_answer && !status.is_success() && is_multipart(&headers) {
                // A batch that stopped at a failing part: the answer still holds every part's result.
                return Ok(Answer { status, headers, body });
            }
            match status.as_u16() {
                200..=299 => return Ok(Answer { status, headers, body }),
                401 if !refreshed_token => {
                    // The token may have been revoked or expired early: fetch a new one, once.
                    refreshed_token = true;
                    inner.tokens.invalidate();
                    continue;
                }
                401 => {
                    let (_, message) = crate::error::error_parts(&body);
                    return Err(Error::Unauthorized { message });
                }
                429 => {
                    inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
                    let (code, _) = crate::error::error_parts(&body);
                    let wait = self.retry_after(&headers).unwrap_or_else(|| self.backoff(attempt));
                    inner.budget.pause_for(wait);
                    if may_retry(wait) {
                        warn!(url = %UrlForLog(&call.url), attempt, retry_after_s = wait.as_secs(), code = %code, "throttled by Dynamics; waiting");
                        self.wait(wait).await;
                        continue;
                    }
                    return Err(Error::Throttled {
                        retry_after: wait,
                        code,
                    });
                }
                502..=504 => {
                    let asked = (status == StatusCode::SERVICE_UNAVAILABLE)
                        .then(|| self.retry_after(&headers))
                        .flatten();
                    if let Some(wait) = asked {
                        inner.budget.pause_for(wait);
                    }
                    if !call.idempotent {
                        // A gateway's error says nothing of whether Dynamics carried the request out behind it.
                        warn!(method = %call.method, url = %UrlForLog(&call.url), attempt, status = status.as_u16(), "gateway error on a write that is not safe to resend; its outcome is unknown");
                        return Err(Error::OutcomeUnknown {
                            url: UrlForLog(&call.url).to_string(),
                            reason: format!("HTTP {}", status.as_u16()),
                        });
                    }
                    let wait = asked.unwrap_or_else(|| self.backoff(attempt));
                    if may_retry(wait) {
                        warn!(url = %UrlForLog(&call.url), attempt, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "transient server error; retrying");
                        self.wait(wait).await;
                        continue;
                    }
                    return Err(from_response(status.as_u16(), &body));
                }
                _ => return Err(from_response(status.as_u16(), &body)),
            }
        }
    }

    /// Exponential backoff with full jitter in its upper half: `initial * 2^(attempt-1)`, capped, times 0.5..1.
    fn backoff(&self, attempt: u32) -> Duration {
        let retry = &self.inner.retry;
        let exp = retry
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
        let capped = exp.min(retry.max_backoff);
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// `Retry-After` in seconds (Dataverse's form) or as an HTTP date, read against the client's clock.
    pub(crate) fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        retry_after(headers, self.inner.clock.utc_now())
    }

    pub(crate) async fn wait(&self, duration: Duration) {
        self.inner.clock.sleep(duration).await;
        self.add_wait(duration);
    }

    pub(crate) fn add_wait(&self, duration: Duration) {
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.inner.counters.waited_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Call {
    /// A call with the OData headers every Web API request carries.
    pub(crate) fn new(method: Method, url: Url) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static("odata-maxversion"),
            HeaderValue::from_static("4.0"),
        );
        headers.insert(
            HeaderName::from_static("odata-version"),
            HeaderValue::from_static("4.0"),
        );
        let idempotent = method != Method::POST;
        Call {
            method,
            url,
            headers,
            body: None,
            idempotent,
            multipart_answer: false,
        }
    }

    /// Adds a header. Values built by this crate are always valid; an invalid one is skipped. A condition on the
    /// row's state (`If-None-Match`, `If-Match` with an etag) makes the call unsafe to resend: the second copy of a
    /// call that landed answers 412 or a duplicate, not the first one's result.
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        if name == "if-none-match" || (name == "if-match" && value.trim() != "*") {
            self.idempotent = false;
        }
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.append(HeaderName::from_static(name), value);
        }
        self
    }

    /// Sets a JSON body.
    pub(crate) fn json(mut self, body: &crate::Row) -> Self {
        self.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        self.body = Some(Bytes::from(body.to_string()));
        self
    }
}

fn http_client(options: &ClientOptions) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("hlf-dynamics-sync/", env!("CARGO_PKG_VERSION")))
        .timeout(options.retry.request_timeout)
        .connect_timeout(Duration::from_secs(10).min(options.retry.request_timeout))
        .pool_idle_timeout(Duration::from_secs(60));
    for pem in &options.extra_root_certificates {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| Error::decode("an extra root certificate (PEM)", e))?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| Error::Transport {
        url: String::new(),
        attempts: 0,
        source: e,
    })
}

/// Timeouts, connection failures and resets are worth another try; a malformed request is not.
fn is_transient(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body() || error.is_decode()
}

/// What happened instead of an answer, in words for an operator.
fn lost_answer(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out waiting for the answer".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer broke off".to_owned()
    } else {
        "the connection closed before the answer".to_owned()
    }
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/mixed"))
}

/// `Retry-After` in seconds (Dataverse's form) or as an HTTP date, which is read against `now`.
pub(crate) fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let text = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc)
    }

    #[track_caller]
    fn check_retry_after(value: &str, expected: Option<Duration>) {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        assert_eq!(retry_after(&headers, now()), expected, "{value}");
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_tolerates_junk() {
        check_retry_after("30", Some(Duration::from_secs(30)));
        check_retry_after(" 2 ", Some(Duration::from_secs(2)));
        check_retry_after("0.5", Some(Duration::from_millis(500)));
        check_retry_after("-1", None);
        check_retry_after("soon", None);
        // An HTTP date is read against the injected clock: a minute after "now".
        check_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::from_secs(60)));
        check_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", Some(Duration::ZERO));
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
    }
}
