//! Tokens for Dynamics: the [`TokenSource`] seam, and the production source backed by azure_identity's
//! `ClientSecretCredential` (OAuth 2.0 client credentials against Azure AD).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, HttpClient, RetryOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use chrono::{DateTime, Utc};
use integration_config::{ExposeSecret, OrganisationConfig, SecretSource, SecretString};
use url::Url;

use crate::error::{AuthError, find_aadsts};

/// A bearer token for one Dynamics instance. `Debug` never shows the token.
#[derive(Clone)]
pub struct BearerToken {
    token: SecretString,
    expires_on: Option<DateTime<Utc>>,
}

/// Where the client gets its bearer tokens. The production source is [`AzureAdTokenSource`]; tests and the emulator
/// may supply their own.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token valid for the instance, from a cache when one is still fresh.
    async fn token(&self) -> Result<BearerToken, AuthError>;

    /// Forgets any cached token: Dynamics refused it, so the next call must fetch a new one.
    fn invalidate(&self);
}

impl BearerToken {
    /// Wraps a token value.
    pub fn new(token: SecretString, expires_on: Option<DateTime<Utc>>) -> Self {
        BearerToken { token, expires_on }
    }

    /// When the token expires, if known.
    pub fn expires_on(&self) -> Option<DateTime<Utc>> {
        self.expires_on
    }

    pub(crate) fn header_value(&self) -> Result<http::HeaderValue, AuthError> {
        let mut value =
            http::HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret())).map_err(|_| {
                AuthError::Unavailable {
                    authority: String::new(),
                    message: "the token is not a valid header value".to_owned(),
                }
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("token", &"[REDACTED]")
            .field("expires_on", &self.expires_on)
            .finish()
    }
}

/// A fixed token, for tests and tools that obtained one elsewhere.
#[derive(Debug, Clone)]
pub struct StaticTokenSource(BearerToken);

impl StaticTokenSource {
    /// A source that always returns `token`.
    pub fn new(token: impl Into<String>) -> Self {
        StaticTokenSource(BearerToken::new(SecretString::from(token.into()), None))
    }
}

#[async_trait]
impl TokenSource for StaticTokenSource {
    async fn token(&self) -> Result<BearerToken, AuthError> {
        Ok(self.0.clone())
    }

    fn invalidate(&self) {}
}

/// Tokens from Azure AD through azure_identity's `ClientSecretCredential`, which caches them per scope and renews
/// them when five minutes or less remain.
pub struct AzureAdTokenSource {
    tenant_id: String,
    client_id: String,
    secret: SecretSource,
    scope: String,
    authority: Url,
    prefix: String,
    transport: Option<Arc<dyn HttpClient>>,
    /// The credential, with the secret it was built with: a secret rotated in its file gets a new credential.
    credential: Mutex<Option<(SecretString, Arc<ClientSecretCredential>)>>,
}

impl AzureAdTokenSource {
    /// A source for one organisation's credentials. `http` is the HTTP client used to reach Azure AD; pass the
    /// same client as the Dynamics calls (so a custom root certificate, such as the emulator's, applies to both), or
    /// `None` for azure_core's default.
    pub fn new(organisation: &OrganisationConfig, http: Option<reqwest::Client>) -> Self {
        Self::build(organisation, http.map(|client| Arc::new(client) as Arc<dyn HttpClient>))
    }

    /// A source whose token requests go through `transport`, an azure_core HTTP client. Tests use this to route the
    /// production credential to a local fake of Azure AD, since azure_identity accepts only https authorities.
    pub fn with_transport(organisation: &OrganisationConfig, transport: Arc<dyn HttpClient>) -> Self {
        Self::build(organisation, Some(transport))
    }

    fn build(organisation: &OrganisationConfig, transport: Option<Arc<dyn HttpClient>>) -> Self {
        let credentials = &organisation.credentials;
        AzureAdTokenSource {
            tenant_id: credentials.tenant_id.clone(),
            client_id: credentials.client_id.clone(),
            secret: credentials.client_secret.clone(),
            scope: credentials.instance_url.scope(),
            authority: credentials.authority_host.clone(),
            prefix: organisation.credential_prefix.clone(),
            transport,
            credential: Mutex::new(None),
        }
    }

    /// The credential for the secret as it is now. A secret from a file is read again here, at each token request,
    /// so a Kubernetes Secret or systemd credential rotated under a running process is used from the next request
    /// on (tokens the old secret obtained stay valid until they expire).
    fn credential(&self) -> Result<Arc<ClientSecretCredential>, AuthError> {
        let secret = self.secret.current()?;
        let mut slot = self.credential.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((built_with, credential)) = slot.as_ref() {
            if built_with.expose_secret() == secret.expose_secret() {
                return Ok(credential.clone());
            }
            tracing::info!(
                prefix = %self.prefix,
                "the client secret's file changed; the next token is requested with the new secret"
            );
        }
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = self.authority.as_str().trim_end_matches('/').to_owned();
        let mut retry = ExponentialRetryOptions::default();
        // Token requests are few; a short bounded retry covers a blip without stalling a run for minutes.
        retry.max_retries = 3;
        retry.max_total_elapsed = Duration::from_secs(30).try_into().unwrap_or(retry.max_total_elapsed);
        let client_options = ClientOptions {
            cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
            transport: self.transport.clone().map(Transport::new),
            retry: RetryOptions::exponential(retry),
            ..Default::default()
        };
        let credential = ClientSecretCredential::new(
            &self.tenant_id,
            self.client_id.clone(),
            Secret::new(secret.expose_secret().to_owned()),
            Some(ClientSecretCredentialOptions { client_options }),
        )
        .map_err(|e| self.classify(&e))?;
        *slot = Some((secret, credential.clone()));
        Ok(credential)
    }

    /// Turns azure_core's error into an [`AuthError`] by its AADSTS code. Its text is Azure AD's description, which
    /// never contains the secret.
    fn classify(&self, error: &azure_core::Error) -> AuthError {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            text.push('\n');
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        match find_aadsts(&text) {
            Some(code) => AuthError::from_aadsts(Some(code), strip_prefix(&text), &self.prefix),
            None => AuthError::Unavailable {
                authority: self.authority.to_string(),
                message: strip_prefix(&text).lines().next().unwrap_or_default().to_owned(),
            },
        }
    }
}

/// Drops azure_identity's "ClientSecretCredential authentication failed." preamble.
fn strip_prefix(text: &str) -> &str {
    text.trim_start_matches("ClientSecretCredential authentication failed.")
        .trim_start()
}

impl fmt::Debug for AzureAdTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureAdTokenSource")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("authority", &self.authority.as_str())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for AzureAdTokenSource {
    async fn token(&self) -> Result<BearerToken, AuthError> {
        let credential = self.credential()?;
        let token = credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| self.classify(&e))?;
        let expires_on = DateTime::from_timestamp(token.expires_on.unix_timestamp(), 0);
        Ok(BearerToken::new(
            SecretString::from(token.token.secret().to_owned()),
            expires_on,
        ))
    }

    fn invalidate(&self) {
        // azure_identity's cache has no eviction call; a new credential starts with an empty cache.
        *self.credential.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}
