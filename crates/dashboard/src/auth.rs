//! The admin credential: bearer token or basic authentication, compared in constant time.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use integration_config::{DashboardAuth, ExposeSecret, SecretSource};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Shared;
use crate::i18n::{Lang, default_lang};

/// The realm a browser shows in its login prompt.
const REALM: &str = "Basic realm=\"HLF integration dashboard\", charset=\"UTF-8\"";

/// The expected credential, kept only as SHA-256 digests: comparing digests takes the same time whatever the length
/// or content of a guess, and the secret itself is not held by the dashboard.
pub(crate) struct Credential {
    kind: Kind,
    secret: [u8; 32],
    /// When the token or password comes from a file, the file is read again for each request, so the credential
    /// can be rotated under a running `serve`.
    file: Option<SecretSource>,
}

enum Kind {
    Bearer,
    Basic { username: [u8; 32] },
}

/// The shortest admin credential the dashboard starts with: 32 characters (128 bits or more as hex or base64).
pub(crate) const MIN_CREDENTIAL_LENGTH: usize = 32;

/// The length in characters of the configured token or password, as loaded.
pub(crate) fn secret_length(auth: &DashboardAuth) -> usize {
    match auth {
        DashboardAuth::Bearer(secret) | DashboardAuth::Basic { password: secret, .. } => {
            secret.loaded().expose_secret().chars().count()
        }
    }
}

/// Who made a request: recorded as the resolver of a conflict.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    pub(crate) name: String,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

impl Credential {
    pub(crate) fn new(auth: &DashboardAuth) -> Self {
        match auth {
            DashboardAuth::Bearer(token) => Credential {
                kind: Kind::Bearer,
                secret: digest(token.loaded().expose_secret().as_bytes()),
                file: token.path().is_some().then(|| token.clone()),
            },
            DashboardAuth::Basic { username, password } => Credential {
                kind: Kind::Basic {
                    username: digest(username.as_bytes()),
                },
                secret: digest(password.loaded().expose_secret().as_bytes()),
                file: password.path().is_some().then(|| password.clone()),
            },
        }
    }

    /// The digest of the credential as it is now. A file that cannot be read refuses every request (and says why in
    /// the log) rather than falling back to a value that may have been revoked.
    fn expected(&self) -> Option<[u8; 32]> {
        match &self.file {
            None => Some(self.secret),
            Some(source) => match source.current() {
                Ok(secret) => Some(digest(secret.expose_secret().as_bytes())),
                Err(e) => {
                    tracing::warn!(error = %e, "the dashboard credential's file cannot be read; requests are refused");
                    None
                }
            },
        }
    }

    /// The admin, when the request's `Authorization` header carries the credential.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Option<Admin> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        let expected = self.expected()?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return match self.kind {
                Kind::Bearer if equal(&digest(rest.as_bytes()), &expected) => Some(Admin {
                    name: "admin (bearer token)".to_owned(),
                }),
                _ => None,
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = decode_base64(rest)?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        let password_ok = equal(&digest(password.as_bytes()), &expected);
        let user_ok = match &self.kind {
            // With a bearer token, a browser's prompt sends any user name and the token as the password.
            Kind::Bearer => true,
            Kind::Basic { username } => equal(&digest(user.as_bytes()), username),
        };
        (password_ok & user_ok).then(|| Admin {
            name: match self.kind {
                // Any user name passes with the token, so it proves nothing: a fixed name, not one the client picks
                // (a spoofable audit trail, control characters in the logs).
                Kind::Bearer => "admin (bearer token)".to_owned(),
                // Basic mode checked the name against the configured one.
                Kind::Basic { .. } => user.to_owned(),
            },
        })
    }
}

/// Failed sign-ins a client address may make within [`FAILURE_WINDOW`] before it must wait for the window to pass.
pub(crate) const MAX_FAILURES: u32 = 10;

/// The window failed sign-ins are counted in.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Addresses tracked at most; beyond that the oldest windows are dropped (a flood from many addresses cannot grow
/// the map without bound).
const MAX_TRACKED: usize = 10_000;

/// Failed sign-ins by client address: a guesser is slowed to [`MAX_FAILURES`] guesses per [`FAILURE_WINDOW`].
#[derive(Debug, Default)]
pub(crate) struct SignInFailures {
    by_address: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl SignInFailures {
    /// Seconds `address` must still wait, when it has used up its failures in the current window.
    fn blocked_for(&self, address: IpAddr, now: Instant) -> Option<u64> {
        let map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = map.get(&address)?;
        let left = FAILURE_WINDOW.checked_sub(now.duration_since(*since))?;
        (*count >= MAX_FAILURES).then(|| left.as_secs().max(1))
    }

    fn failed(&self, address: IpAddr, now: Instant) -> u32 {
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        let entry = map.entry(address).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.0
    }

    fn succeeded(&self, address: IpAddr) {
        self.by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&address);
    }
}

/// Middleware: answers 401 with a login prompt unless the request carries the credential. A wrong credential is
/// logged (the client's address and the path, never what it sent) and counts against the address: after
/// [`MAX_FAILURES`] in [`FAILURE_WINDOW`] it gets 429 until the window has passed, whatever it sends.
pub(crate) async fn require_admin(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    // Behind `Router::nest` in a backend without connection info, all clients share one (unspecified) address.
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let now = Instant::now();
    // Said in the reader's language like every page; plain text, since the prompt is the browser's.
    let lang = Lang::negotiate(request.headers(), default_lang(&shared));
    if let Some(wait) = shared.sign_in_failures.blocked_for(address, now) {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("{}\n", lang.f("auth.too_many", &[("seconds", &wait)])),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let admin = shared.credential.check(request.headers()).or_else(|| {
        // The metrics token opens the metrics and nothing else.
        let token = shared
            .metrics_token
            .as_ref()
            .filter(|_| request.uri().path() == "/metrics")?;
        token.check(request.headers()).map(|_| Admin {
            name: "metrics scraper".to_owned(),
        })
    });
    match admin {
        Some(admin) => {
            shared.sign_in_failures.succeeded(address);
            request.extensions_mut().insert(admin);
            next.run(request).await
        }
        None => {
            // A browser's first request carries no credential: that is the prompt, not a failure.
            if request.headers().contains_key(header::AUTHORIZATION) {
                let failures = shared.sign_in_failures.failed(address, now);
                tracing::warn!(
                    client = %address,
                    path = %request.uri().path(),
                    failures,
                    "dashboard sign-in failed: wrong credential"
                );
            }
            let mut response = (StatusCode::UNAUTHORIZED, format!("{}\n", lang.t("auth.required"))).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
            response
        }
    }
}

/// Standard base64 (RFC 4648, with padding optional), enough for an `Authorization: Basic` header.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("x")),
        );
        headers
    }

    #[track_caller]
    fn check(credential: &Credential, authorization: &str, expected: Option<&str>) {
        let got = credential.check(&headers(authorization)).map(|a| a.name);
        assert_eq!(got.as_deref(), expected, "Authorization: {authorization}");
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("YWRtaW46czNjcmV0").as_deref(), Some(&b"admin:s3cret"[..]));
        assert_eq!(decode_base64("YTpi").as_deref(), Some(&b"a:b"[..]));
        assert_eq!(decode_base64("YTpiYw==").as_deref(), Some(&b"a:bc"[..]));
        assert_eq!(decode_base64("YTpiYw").as_deref(), Some(&b"a:bc"[..]));
        assert_eq!(decode_base64("not base64!"), None);
    }

    #[test]
    fn bearer_mode_takes_the_token_or_basic_with_the_token_as_password() {
        let credential = Credential::new(&DashboardAuth::Bearer(SecretSource::value("tok-123")));
        check(&credential, "Bearer tok-123", Some("admin (bearer token)"));
        check(&credential, "bearer   tok-123", Some("admin (bearer token)"));
        check(&credential, "Bearer tok-1234", None);
        check(&credential, "Bearer ", None);
        // "kari:tok-123" and "kari:wrong"
        // A browser's prompt sends "kari" and the token: the name is not the client's to choose.
        check(&credential, "Basic a2FyaTp0b2stMTIz", Some("admin (bearer token)"));
        check(&credential, "Basic a2FyaTp3cm9uZw==", None);
        check(&credential, "Digest tok-123", None);
    }

    #[test]
    fn basic_mode_needs_the_user_name_and_password_and_refuses_a_bearer_token() {
        let credential = Credential::new(&DashboardAuth::Basic {
            username: "kari".into(),
            password: SecretSource::value("tok-123"),
        });
        check(&credential, "Basic a2FyaTp0b2stMTIz", Some("kari"));
        // "ola:tok-123"
        check(&credential, "Basic b2xhOnRvay0xMjM=", None);
        check(&credential, "Bearer tok-123", None);
    }

    #[test]
    fn a_credential_from_a_file_is_rotated_without_a_restart_and_refuses_all_when_unreadable() {
        let dir = std::env::temp_dir().join(format!("dashboard-credential-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "tok-123\n").unwrap();
        let credential = Credential::new(&DashboardAuth::Bearer(SecretSource::file(&path).unwrap()));
        check(&credential, "Bearer tok-123", Some("admin (bearer token)"));
        std::fs::write(&path, "tok-456\n").unwrap();
        check(&credential, "Bearer tok-123", None);
        check(&credential, "Bearer tok-456", Some("admin (bearer token)"));
        std::fs::remove_file(&path).unwrap();
        check(&credential, "Bearer tok-456", None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
