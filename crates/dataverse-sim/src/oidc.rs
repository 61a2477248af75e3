//! What MSAL-based clients read before they ask for a token, and what a resource server needs to check one: Azure
//! AD's v2.0 OpenID Connect discovery document (`/{tenant}/v2.0/.well-known/openid-configuration`), the signing keys
//! (`/{tenant}/discovery/v2.0/keys`, a JWKS), and the RS256 signature of the access tokens the emulator issues.
//!
//! One RSA key per process, made on first use with aws-lc-rs: generating it is the slow part (tens of milliseconds),
//! and every emulator in a test process can share it.

use std::sync::OnceLock;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use serde_json::{Value, json};

use crate::auth::b64url;

/// The emulator's token-signing key.
pub(crate) struct SigningKey {
    pair: KeyPair,
    /// The key id (`kid` in token headers and in the JWKS): a digest of the public key, as Azure AD's ids are.
    kid: String,
    n: String,
    e: String,
}

impl SigningKey {
    fn generate() -> Option<Self> {
        let pair = KeyPair::generate(KeySize::Rsa2048).ok()?;
        let public = pair.public_key();
        let modulus = public.modulus().big_endian_without_leading_zero().to_vec();
        let exponent = public.exponent().big_endian_without_leading_zero().to_vec();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &modulus);
        Some(SigningKey {
            kid: b64url(&digest.as_ref()[..20]),
            n: b64url(&modulus),
            e: b64url(&exponent),
            pair,
        })
    }

    /// The key id tokens name in their header.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// An RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature)
            .ok()?;
        Some(signature)
    }

    /// The public key as a JSON Web Key, in Azure AD's shape.
    fn jwk(&self, issuer: &str) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": self.n,
            "e": self.e,
            "issuer": issuer,
        })
    }
}

/// The process's signing key, made on first use; `None` only if the platform's RSA key generation fails.
pub(crate) fn signing_key() -> Option<&'static SigningKey> {
    static KEY: OnceLock<Option<SigningKey>> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate).as_ref()
}

/// The issuer of tokens for `tenant`, as Azure AD's v2.0 endpoint names it, on the emulator's own host (MSAL checks
/// that the issuer's host is the authority's).
pub(crate) fn issuer(base: &str, tenant: &str) -> String {
    format!("{base}/{tenant}/v2.0")
}

/// The v2.0 OpenID Connect discovery document of `tenant`.
pub(crate) fn configuration(base: &str, tenant: &str) -> Value {
    let authority = format!("{base}/{tenant}");
    json!({
        "token_endpoint": format!("{authority}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{authority}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer(base, tenant),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{authority}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{authority}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{authority}/oauth2/v2.0/logout"),
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
            "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid",
            "ver", "at_hash", "c_hash", "email"
        ],
        "kerberos_endpoint": format!("{authority}/kerberos"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    })
}

/// The signing keys of `tenant` (a JWKS).
pub(crate) fn keys(base: &str, tenant: &str) -> Value {
    let keys: Vec<Value> = signing_key()
        .map(|k| k.jwk(&issuer(base, tenant)))
        .into_iter()
        .collect();
    json!({ "keys": keys })
}
