//! CSRF protection for every POST: an HMAC token under a per-process key, and a same-origin check on the headers
//! browsers add.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::Shared;
use crate::auth::Admin;
use crate::error::{Error, Result};
use crate::i18n::{Lang, default_lang};

/// The form field holding the token.
pub(crate) const FIELD: &str = "csrf";
/// The header an API client sends the token in.
pub(crate) const HEADER: &str = "x-csrf-token";
/// How long a token stays valid: a page left open over a working day still works.
const LIFETIME_SECONDS: i64 = 12 * 3600;
/// The largest POST body read; every form here is a few hundred bytes.
const BODY_LIMIT: usize = 64 * 1024;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The key CSRF tokens are signed with.
pub(crate) struct CsrfKey([u8; 32]);

impl CsrfKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        CsrfKey(key)
    }

    pub(crate) fn random() -> Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| Error::Random)?;
        Ok(CsrfKey(key))
    }

    fn mac(&self, issued: i64) -> HmacSha256 {
        // HMAC takes a key of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(b"hlf-dashboard-csrf-v1:");
        mac.update(issued.to_string().as_bytes());
        mac
    }

    /// A token issued at `now`: the issue time and its HMAC.
    pub(crate) fn token(&self, now: DateTime<Utc>) -> String {
        let issued = now.timestamp();
        let tag = self.mac(issued).finalize().into_bytes();
        format!("{issued}.{}", hex(&tag))
    }

    /// Whether `token` was issued by this key within its lifetime.
    pub(crate) fn verify(&self, token: &str, now: DateTime<Utc>) -> bool {
        let Some((issued, tag)) = token.split_once('.') else {
            return false;
        };
        let Ok(issued) = issued.parse::<i64>() else {
            return false;
        };
        let age = now.timestamp() - issued;
        if !(-300..=LIFETIME_SECONDS).contains(&age) {
            return false;
        }
        let Some(tag) = unhex(tag) else {
            return false;
        };
        self.mac(issued).verify_slice(&tag).is_ok()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Refuses a request a browser marks as coming from another site. `Sec-Fetch-Site`, set by the browser and not by
/// pages, decides when present; it has to be present because with `Referrer-Policy: no-referrer` Chromium sends
/// `Origin: null` even for the dashboard's own forms. Browsers without it are judged by `Origin`. Requests with
/// neither (API clients, curl) pass: they still need the token.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(host)) = (origin.to_str(), headers.get(header::HOST).and_then(|h| h.to_str().ok())) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

/// Whether a browser marks the request as made by another site (`Sec-Fetch-Site: cross-site` or `same-site`).
fn cross_site(headers: &HeaderMap) -> bool {
    matches!(
        headers.get("sec-fetch-site").map(|v| v.to_str()),
        Some(Ok("cross-site" | "same-site"))
    )
}

/// The token of a form body (`csrf=...`). Tokens are digits, a dot and hex, which form encoding leaves as they
/// are, so no percent-decoding is needed.
fn form_token(body: &[u8]) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == FIELD)
        .map(|(_, value)| value.to_owned())
}

/// Middleware on every authenticated route: a POST must come from this site and carry a valid token, the same for
/// browsers and API clients.
pub(crate) async fn protect(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let lang = Lang::negotiate(request.headers(), default_lang(&shared));
    if request.method() != Method::POST {
        // A GET changes nothing, but some build a whole export or list personal data: another site may not make a
        // signed-in browser fetch them either. An address typed or bookmarked (`none`) is the admin's own.
        if cross_site(request.headers()) {
            let error = Error::Forbidden("it came from another site; open the dashboard from its own address");
            return if api {
                error.into_response()
            } else {
                crate::pages::error_response(&error, None, lang)
            };
        }
        return next.run(request).await;
    }
    match check(&shared, request).await {
        Ok(request) => next.run(request).await,
        Err(error) if api => error.into_response(),
        Err(error) => crate::pages::error_response(&error, None, lang),
    }
}

async fn check(shared: &Shared, request: Request) -> Result<Request> {
    if !same_origin(request.headers()) {
        return Err(Error::Forbidden("it came from another site"));
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| Error::BadRequest("the request body is too large".to_owned()))?;
    let token = match parts.headers.get(HEADER) {
        Some(value) => value.to_str().ok().map(str::to_owned),
        None => form_token(&bytes),
    };
    let now = shared.clock.now();
    if !token.is_some_and(|t| shared.csrf.verify(&t, now)) {
        return Err(Error::Forbidden(
            "the form's security token is missing or has expired; reload the page and try again",
        ));
    }
    debug_assert!(
        parts.extensions.get::<Admin>().is_some(),
        "csrf runs after authentication"
    );
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use chrono::Duration;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_token_verifies_under_its_key_within_its_lifetime_only() {
        let key = CsrfKey::new([7; 32]);
        let token = key.token(now());
        assert!(key.verify(&token, now()));
        assert!(key.verify(&token, now() + Duration::hours(11)));
        assert!(!key.verify(&token, now() + Duration::hours(13)), "expired");
        assert!(!CsrfKey::new([8; 32]).verify(&token, now()), "another process's key");
        let (issued, tag) = token.split_once('.').unwrap_or_default();
        let forged = format!("{}.{tag}", issued.parse::<i64>().unwrap_or_default() + 3600);
        assert!(!key.verify(&forged, now()), "a moved issue time breaks the mac");
        assert!(!key.verify("", now()));
        assert!(!key.verify("123.zz", now()));
    }

    #[track_caller]
    fn origin_case(headers: &[(&'static str, &'static str)], expected: bool) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        assert_eq!(same_origin(&map), expected, "{headers:?}");
    }

    #[test]
    fn cross_site_posts_are_refused() {
        origin_case(&[("host", "127.0.0.1:8088")], true);
        origin_case(&[("host", "127.0.0.1:8088"), ("origin", "http://127.0.0.1:8088")], true);
        origin_case(&[("host", "127.0.0.1:8088"), ("origin", "http://evil.example")], false);
        origin_case(&[("host", "127.0.0.1:8088"), ("origin", "null")], false);
        origin_case(&[("host", "127.0.0.1:8088"), ("sec-fetch-site", "same-origin")], true);
        origin_case(&[("host", "127.0.0.1:8088"), ("sec-fetch-site", "cross-site")], false);
        origin_case(&[("host", "127.0.0.1:8088"), ("sec-fetch-site", "same-site")], false);
        origin_case(&[("host", "127.0.0.1:8088"), ("sec-fetch-site", "none")], false);
        // Chromium under `Referrer-Policy: no-referrer`: the fetch metadata vouches for the null origin.
        origin_case(
            &[
                ("host", "127.0.0.1:8088"),
                ("origin", "null"),
                ("sec-fetch-site", "same-origin"),
            ],
            true,
        );
        origin_case(
            &[
                ("host", "127.0.0.1:8088"),
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
            false,
        );
    }

    #[test]
    fn the_token_is_read_from_the_form() {
        assert_eq!(form_token(b"org=hlf&csrf=1.ab&key=x").as_deref(), Some("1.ab"));
        assert_eq!(form_token(b"org=hlf"), None);
    }
}
