//! The Azure AD v2.0 client-credentials token endpoint and bearer-token checks: registered apps, issued tokens with
//! their expiry, and error answers in Azure AD's shape (`error`, `error_description` with the AADSTS text,
//! `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`).

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use rand::RngExt;
use serde_json::{Value, json};
use uuid::Uuid;

/// An application registered in the simulated Azure AD, allowed to call the simulated Dataverse.
#[derive(Clone)]
pub struct AppRegistration {
    /// The directory (tenant) id the app lives in.
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret value.
    pub client_secret: String,
    /// When the secret expires; `None` for never.
    pub secret_expires_at: Option<DateTime<Utc>>,
    /// The Dataverse application user the app acts as (`WhoAmI`'s `UserId`; also the service-protection key).
    pub user_id: Uuid,
}

impl AppRegistration {
    /// An app with a secret that does not expire and a fresh application user id.
    pub fn new(tenant_id: impl Into<String>, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            secret_expires_at: None,
            user_id: Uuid::new_v4(),
        }
    }

    /// The same app with a secret expiring at `at`.
    pub fn with_secret_expiry(mut self, at: DateTime<Utc>) -> Self {
        self.secret_expires_at = Some(at);
        self
    }
}

impl fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRegistration")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("secret_expires_at", &self.secret_expires_at)
            .field("user_id", &self.user_id)
            .finish()
    }
}

/// The most unexpired tokens kept. A client that fetches a token per request (or a loop gone wrong) would otherwise
/// grow the table for a whole token lifetime; beyond the cap the token expiring first is forgotten, and its holder
/// gets 401 and fetches a new one, as after a revocation.
const MAX_TOKENS: usize = 10_000;

/// An issued access token.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) user_id: Uuid,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Registered apps and issued tokens.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) apps: Vec<AppRegistration>,
    pub(crate) tokens: HashMap<String, Issued>,
}

/// An Azure AD error answer.
#[derive(Debug)]
pub(crate) struct AadError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

fn aad_error(status: StatusCode, error: &str, code: u32, text: &str, now: DateTime<Utc>) -> AadError {
    let trace = Uuid::new_v4();
    let correlation = Uuid::new_v4();
    let ts = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
    let description =
        format!("AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}");
    AadError {
        status,
        body: json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace.to_string(),
            "correlation_id": correlation.to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    }
}

/// Azure AD's answer for a tenant it does not know (AADSTS90002).
pub(crate) fn unknown_tenant(tenant: &str, now: DateTime<Utc>) -> AadError {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
        now,
    )
}

fn missing(name: &str, now: DateTime<Utc>) -> AadError {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{name}'."),
        now,
    )
}

/// Azure AD's answer to a token request that is not a POST (AADSTS900561).
pub(crate) fn wrong_method(method: &http::Method, now: DateTime<Utc>) -> AadError {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900561,
        &format!("The endpoint only accepts POST requests. Received a {method} request."),
        now,
    )
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let sextets = chunk.len() + 1;
        for i in 0..sextets {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

impl Directory {
    pub(crate) fn knows_tenant(&self, tenant: &str) -> bool {
        self.apps.iter().any(|a| a.tenant_id.eq_ignore_ascii_case(tenant))
    }

    /// Answers a client-credentials token request. `resources` are the accepted resource URLs (no trailing slash);
    /// `base` is the emulator's own URL, the issuer's host.
    pub(crate) fn token(
        &mut self,
        base: &str,
        tenant: &str,
        form: &HashMap<String, String>,
        resources: &[String],
        lifetime: Duration,
        now: DateTime<Utc>,
    ) -> Result<Value, AadError> {
        if !self.knows_tenant(tenant) {
            return Err(unknown_tenant(tenant, now));
        }
        let grant = form.get("grant_type").ok_or_else(|| missing("grant_type", now))?;
        if grant != "client_credentials" {
            return Err(aad_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{grant}'."),
                now,
            ));
        }
        let client_id = form.get("client_id").ok_or_else(|| missing("client_id", now))?;
        let Some(app) = self
            .apps
            .iter()
            .find(|a| a.tenant_id.eq_ignore_ascii_case(tenant) && a.client_id.eq_ignore_ascii_case(client_id))
            .cloned()
        else {
            return Err(aad_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
                ),
                now,
            ));
        };
        let Some(secret) = form.get("client_secret") else {
            return Err(aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                now,
            ));
        };
        if *secret != app.client_secret {
            return Err(aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                    app.client_id
                ),
                now,
            ));
        }
        if app.secret_expires_at.is_some_and(|at| at <= now) {
            return Err(aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000222,
                &format!(
                    "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                    app.client_id
                ),
                now,
            ));
        }
        let scope = form.get("scope").ok_or_else(|| missing("scope", now))?;
        let Some(resource) = scope.trim().strip_suffix("/.default") else {
            return Err(aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
                now,
            ));
        };
        let resource = resource.trim_end_matches('/');
        if !resources.iter().any(|r| r.eq_ignore_ascii_case(resource)) {
            return Err(aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                500011,
                &format!(
                    "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
                ),
                now,
            ));
        }
        let expires_at = now.checked_add_signed(lifetime).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let key = crate::oidc::signing_key();
        let header = json!({
            "typ": "JWT",
            "alg": "RS256",
            "kid": key.map_or("dataverse-sim", |k| k.kid()),
        });
        // An app-only v2.0 access token, with the claims Azure AD puts in one (no `roles`: a Dataverse application
        // user gets its privileges from security roles inside Dataverse, not from app roles in Azure AD).
        let mut uti = [0u8; 16];
        rand::rng().fill(&mut uti[..]);
        let claims = json!({
            "aud": resource,
            "iss": crate::oidc::issuer(base, &app.tenant_id),
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": expires_at.timestamp(),
            "azp": app.client_id,
            "azpacr": "1",
            "appid": app.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": app.user_id.to_string(),
            "sub": app.user_id.to_string(),
            "tid": app.tenant_id,
            "uti": b64url(&uti),
            "ver": "2.0",
        });
        let signed = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let signature = key.and_then(|k| k.sign(signed.as_bytes())).unwrap_or_else(|| {
            let mut random = vec![0u8; 256];
            rand::rng().fill(&mut random[..]);
            random
        });
        let token = format!("{signed}.{}", b64url(&signature));
        self.tokens.insert(
            token.clone(),
            Issued {
                user_id: app.user_id,
                expires_at,
            },
        );
        self.tokens.retain(|_, t| t.expires_at > now);
        while self.tokens.len() > MAX_TOKENS {
            let Some(oldest) = self
                .tokens
                .iter()
                .min_by_key(|(_, t)| t.expires_at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.tokens.remove(&oldest);
        }
        let secs = lifetime.num_seconds();
        Ok(json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token}))
    }

    /// The application user behind a bearer token, if the token is known and unexpired.
    pub(crate) fn authenticate(&self, token: &str, now: DateTime<Utc>) -> Option<Uuid> {
        self.tokens.get(token).filter(|t| t.expires_at > now).map(|t| t.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_are_capped_and_the_oldest_forgotten() {
        let mut dir = Directory {
            apps: vec![AppRegistration::new("t", "c", "s")],
            tokens: HashMap::new(),
        };
        let form: HashMap<String, String> = [
            ("client_id", "c"),
            ("client_secret", "s"),
            ("grant_type", "client_credentials"),
            ("scope", "https://x/.default"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let resources = ["https://x".to_owned()];
        let start = DateTime::<Utc>::UNIX_EPOCH;
        let issue = |dir: &mut Directory, i: i64| {
            let v = dir
                .token(
                    "https://sim",
                    "t",
                    &form,
                    &resources,
                    Duration::hours(1),
                    start + Duration::milliseconds(i),
                )
                .unwrap();
            v["access_token"].as_str().unwrap().to_owned()
        };
        let first = issue(&mut dir, 0);
        for i in 1..=i64::try_from(MAX_TOKENS).unwrap() {
            issue(&mut dir, i);
        }
        assert_eq!(dir.tokens.len(), MAX_TOKENS);
        assert_eq!(dir.authenticate(&first, start), None, "the oldest token was forgotten");
        let last = issue(&mut dir, 20_000);
        assert!(dir.authenticate(&last, start).is_some());
    }

    #[test]
    fn a_lifetime_past_the_calendar_end_does_not_overflow() {
        let mut dir = Directory {
            apps: vec![AppRegistration::new("t", "c", "s")],
            tokens: HashMap::new(),
        };
        let form: HashMap<String, String> = [
            ("client_id", "c"),
            ("client_secret", "s"),
            ("grant_type", "client_credentials"),
            ("scope", "https://x/.default"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let near_end = DateTime::<Utc>::MAX_UTC - Duration::days(1);
        assert!(
            dir.token(
                "https://sim",
                "t",
                &form,
                &["https://x".to_owned()],
                Duration::days(30),
                near_end,
            )
            .is_ok()
        );
    }

    #[test]
    fn b64url_matches_rfc4648_vectors() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }
}
