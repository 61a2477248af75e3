//! The client's error type: the cases a caller branches on, decoded from Dataverse's and Azure AD's error bodies.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a Dataverse call failed. No variant ever holds a secret, a bearer token or a whole record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No token could be obtained from Azure AD.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Dynamics refused the token even after a fresh one was fetched.
    #[error(
        "Dynamics refused the application user (the app registration has no application user in this environment, or it is disabled); ask HLF IT to add it under Application users in the Power Platform admin center"
    )]
    Unauthorized {
        /// Dynamics' own message, if it sent one.
        message: String,
    },
    /// Dynamics kept throttling after every retry the budget allowed.
    #[error("Dynamics throttled the request (code {code}) and the retry budget is spent; the run continues next time")]
    Throttled {
        /// How long Dynamics asked to wait last.
        retry_after: Duration,
        /// The service-protection error code.
        code: String,
    },
    /// Someone changed the row since it was read (HTTP 412, ConcurrencyVersionMismatch): re-read and decide again.
    #[error("the row changed in Dynamics since it was read (412); re-read it and decide again")]
    Concurrency,
    /// The row does not exist.
    #[error("not found in Dynamics ({code}): {message}")]
    NotFound {
        /// The Dataverse error code.
        code: String,
        /// Dataverse's message.
        message: String,
    },
    /// The application user lacks a privilege.
    #[error(
        "Dynamics denied a privilege the sync needs ({code}): {message}; ask HLF IT to add it to the application user's security role (`health-check --privileges` lists every privilege the sync needs)"
    )]
    PrivilegeDenied {
        /// The Dataverse error code.
        code: String,
        /// Dataverse's message, naming the privilege.
        message: String,
    },
    /// A duplicate row or alternate key value.
    #[error("Dynamics refused a duplicate ({code}): {message}")]
    Duplicate {
        /// The Dataverse error code.
        code: String,
        /// Dataverse's message.
        message: String,
    },
    /// A column the request names does not exist on the table (schema drift).
    #[error("column `{column}` does not exist in Dynamics; the schema changed: update the field mapping")]
    UnknownColumn {
        /// The column.
        column: String,
    },
    /// The write guard refused a column the mapping does not declare writable.
    #[error("refused to write column `{column}` of `{entity_set}`: the mapping does not declare it app-owned")]
    ColumnNotWritable {
        /// The table's entity set.
        entity_set: String,
        /// The column.
        column: String,
    },
    /// An alternate key value Dataverse would reject.
    #[error(
        "alternate key value for `{column}` is empty or contains a character Dataverse forbids in keys (one of / < > * % & : \\ ? +)"
    )]
    InvalidKey {
        /// The key column.
        column: String,
    },
    /// Any other error answer from Dynamics.
    #[error("Dynamics answered {status} ({code}): {message}")]
    Service {
        /// The HTTP status.
        status: u16,
        /// The Dataverse error code (may be empty).
        code: String,
        /// Dataverse's message (or the start of a non-JSON body).
        message: String,
    },
    /// The request never got an answer: connection refused or reset, DNS, TLS, timeout; after every retry.
    #[error("cannot reach Dynamics at {url} after {attempts} attempt(s)")]
    Transport {
        /// Where (without query).
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: reqwest::Error,
    },
    /// A request that is not safe to send twice (a create, an etag-guarded update, a `$batch` holding one) was sent,
    /// and no answer came back (timeout, reset, a gateway's 502/503/504): Dynamics may or may not have carried it out.
    /// It is not resent; re-read the rows it wrote before deciding again (an etag-guarded update shows whether it
    /// landed).
    #[error(
        "no answer from Dynamics to a write at {url} ({reason}); it may or may not have been carried out, so it was not sent again: re-read the rows before deciding"
    )]
    OutcomeUnknown {
        /// Where (without query or key values).
        url: String,
        /// What happened instead of an answer.
        reason: String,
    },
    /// The change-tracking token has expired (ExpiredVersionStamp, 0x80044352): a full resync is needed.
    #[error("the change-tracking token has expired (0x80044352); a full resync is needed")]
    DeltaTokenExpired,
    /// An answer that could not be understood.
    #[error("could not decode Dynamics' answer ({what})")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The parser's complaint.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why Azure AD issued no token. The message tells the operator what to do; the AADSTS code is kept for alerts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// AADSTS7000222: the client secret has expired.
    #[error(
        "the client secret has expired (AADSTS7000222); HLF IT must create a new secret for the app registration, then update {prefix}_CLIENT_SECRET"
    )]
    SecretExpired {
        /// The credential variable prefix.
        prefix: String,
    },
    /// AADSTS7000215: the client secret is wrong.
    #[error(
        "Azure AD rejected the client secret (AADSTS7000215); check that {prefix}_CLIENT_SECRET holds the secret's value, not its id"
    )]
    InvalidSecret {
        /// The credential variable prefix.
        prefix: String,
    },
    /// AADSTS700016: no such application in the tenant.
    #[error(
        "Azure AD does not know this application in the tenant (AADSTS700016); check {prefix}_CLIENT_ID and {prefix}_TENANT_ID, and ask HLF IT whether the app registration exists"
    )]
    UnknownApplication {
        /// The credential variable prefix.
        prefix: String,
    },
    /// AADSTS90002: no such tenant.
    #[error("Azure AD does not know this tenant (AADSTS90002); check {prefix}_TENANT_ID")]
    UnknownTenant {
        /// The credential variable prefix.
        prefix: String,
    },
    /// Any other Azure AD refusal.
    #[error("Azure AD refused the token request{}: {message}", code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default())]
    Rejected {
        /// The AADSTS code, if Azure AD gave one.
        code: Option<u32>,
        /// Azure AD's description, first line only.
        message: String,
    },
    /// The client secret's file (`<PREFIX>_CLIENT_SECRET_FILE`) could not be read when a token was needed.
    #[error("{0}")]
    SecretFile(#[from] integration_config::SecretFileError),
    /// Azure AD could not be reached or answered something unreadable.
    #[error("cannot obtain a token from Azure AD at {authority}: {message}")]
    Unavailable {
        /// The authority host.
        authority: String,
        /// What went wrong.
        message: String,
    },
}

impl AuthError {
    /// The AADSTS code, when Azure AD gave one.
    pub fn aadsts_code(&self) -> Option<u32> {
        match self {
            AuthError::SecretExpired { .. } => Some(7_000_222),
            AuthError::InvalidSecret { .. } => Some(7_000_215),
            AuthError::UnknownApplication { .. } => Some(700_016),
            AuthError::UnknownTenant { .. } => Some(90_002),
            AuthError::Rejected { code, .. } => *code,
            AuthError::Unavailable { .. } | AuthError::SecretFile(_) => None,
        }
    }

    /// Builds the error for an AADSTS code and Azure AD's description.
    pub fn from_aadsts(code: Option<u32>, description: &str, prefix: &str) -> Self {
        let prefix = prefix.to_owned();
        match code {
            Some(7_000_222) => AuthError::SecretExpired { prefix },
            Some(7_000_215) => AuthError::InvalidSecret { prefix },
            Some(700_016) => AuthError::UnknownApplication { prefix },
            Some(90_002) => AuthError::UnknownTenant { prefix },
            code => AuthError::Rejected {
                code,
                message: description.lines().next().unwrap_or_default().trim().to_owned(),
            },
        }
    }
}

/// Finds the first `AADSTS<digits>` in a text.
pub(crate) fn find_aadsts(text: &str) -> Option<u32> {
    let start = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Error {
    /// Whether this is a throttling answer that was given up on.
    pub fn is_throttled(&self) -> bool {
        matches!(self, Error::Throttled { .. })
    }

    /// Whether the failure concerns the whole run (credentials, a missing privilege, reachability, throttling),
    /// not one record.
    pub fn is_run_level(&self) -> bool {
        matches!(
            self,
            Error::Auth(_)
                | Error::Unauthorized { .. }
                | Error::PrivilegeDenied { .. }
                | Error::Throttled { .. }
                | Error::Transport { .. }
                | Error::OutcomeUnknown { .. }
        )
    }

    pub(crate) fn decode(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Decode {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// Dataverse's error body: `{"error":{"code":"0x...","message":"..."}}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The code and message of an error answer, tolerating empty, truncated and non-JSON bodies.
pub(crate) fn error_parts(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) if !parsed.error.message.is_empty() || !parsed.error.code.is_empty() => {
            (parsed.error.code, parsed.error.message)
        }
        _ => {
            // Not Dataverse's JSON (a proxy page, a truncated body): keep a short, printable start of it.
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
            (String::new(), snippet.trim().to_owned())
        }
    }
}

/// Decodes an error answer into the variant a caller branches on.
pub(crate) fn from_response(status: u16, body: &[u8]) -> Error {
    let (code, message) = error_parts(body);
    let code_lower = code.to_ascii_lowercase();
    if code_lower == "0x80044352" || message.contains("Version stamp associated with the client has expired") {
        return Error::DeltaTokenExpired;
    }
    if let Some(column) = unknown_column(&message) {
        return Error::UnknownColumn { column };
    }
    // The code decides before the status: Dataverse answers a duplicate key with 412 on some paths and 400 or 409
    // on others, and only 0x80060882 (or no code at all) on a 412 is a version mismatch.
    match (status, code_lower.as_str()) {
        (_, "0x80040237" | "0x80060892" | "0x80040333") => Error::Duplicate { code, message },
        (412, "" | "0x80060882") => Error::Concurrency,
        (_, "0x80040217" | "0x80060891") | (404, _) => Error::NotFound { code, message },
        (_, "0x80040220") | (403, _) => Error::PrivilegeDenied { code, message },
        _ => Error::Service { status, code, message },
    }
}

/// The column named by Dataverse's "Could not find a property named 'x' on type ..." message.
fn unknown_column(message: &str) -> Option<String> {
    let rest = message.split("Could not find a property named '").nth(1)?;
    Some(rest.split('\'').next()?.to_owned())
}

/// The service-protection error codes Dataverse answers with 429: requests, execution time, concurrent requests.
pub(crate) const THROTTLE_CODES: [&str; 3] = ["0x80072322", "0x80072321", "0x80072326"];

/// Whether an error answer is a service-protection refusal (by status or by code).
pub(crate) fn is_throttle(status: u16, code: &str) -> bool {
    status == 429 || THROTTLE_CODES.iter().any(|c| c.eq_ignore_ascii_case(code))
}

/// Formats a URL for logs and messages without its query (a `$filter` can name member numbers) and without
/// alternate key values: `contacts(hlf_membernumber='1001')` is shown as `contacts(hlf_membernumber=…)`. Row ids
/// (GUIDs) are kept: they are what the logs name.
pub(crate) struct UrlForLog<'a>(pub(crate) &'a url::Url);

impl fmt::Display for UrlForLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.0.origin().ascii_serialization(),
            redact_keys(self.0.path())
        )
    }
}

/// Replaces every value inside `(...)` that is not a GUID with `…`, keeping the column names of alternate keys.
pub(crate) fn redact_keys(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(')') else {
            out.push('…');
            return out;
        };
        let inside = &after[..close];
        if uuid::Uuid::parse_str(inside).is_ok() || inside.is_empty() {
            out.push_str(inside);
        } else {
            let pairs: Vec<String> = inside
                .split(',')
                .map(|pair| match pair.split_once('=') {
                    Some((column, _)) => format!("{column}=…"),
                    None => "…".to_owned(),
                })
                .collect();
            out.push_str(&pairs.join(","));
        }
        out.push(')');
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(status: u16, body: &str, expected: &str) {
        let got = from_response(status, body.as_bytes()).to_string();
        assert_eq!(got, expected, "status {status}, body {body:?}");
    }

    #[test]
    fn error_bodies_decode_into_the_variant_a_caller_branches_on() {
        check(
            404,
            r#"{"error":{"code":"0x80060891","message":"A record with the specified key values does not exist in contact entity"}}"#,
            "not found in Dynamics (0x80060891): A record with the specified key values does not exist in contact entity",
        );
        check(
            403,
            r#"{"error":{"code":"0x80040220","message":"Principal user (Id=1) is missing prvWriteContact privilege"}}"#,
            "Dynamics denied a privilege the sync needs (0x80040220): Principal user (Id=1) is missing prvWriteContact privilege; ask HLF IT to add it to the application user's security role (`health-check --privileges` lists every privilege the sync needs)",
        );
        check(
            400,
            r#"{"error":{"code":"0x80060888","message":"Could not find a property named 'hlf_gone' on type 'Microsoft.Dynamics.CRM.contact'."}}"#,
            "column `hlf_gone` does not exist in Dynamics; the schema changed: update the field mapping",
        );
        check(
            412,
            r#"{"error":{"code":"0x80060882","message":"The version of the existing record doesn't match the RowVersion property provided."}}"#,
            "the row changed in Dynamics since it was read (412); re-read it and decide again",
        );
        check(
            400,
            r#"{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}"#,
            "Dynamics refused a duplicate (0x80040237): A record with matching key values already exists.",
        );
        check(
            500,
            r#"{"error":{"code":"","message":"Generic SQL error."}}"#,
            "Dynamics answered 500 (): Generic SQL error.",
        );
    }

    #[test]
    fn the_code_decides_before_the_status() {
        let duplicate =
            r#"{"error":{"code":"0x80040237","message":"A record with matching key values already exists."}}"#;
        for status in [400, 409, 412] {
            assert!(
                matches!(from_response(status, duplicate.as_bytes()), Error::Duplicate { .. }),
                "{status}"
            );
        }
        assert!(matches!(from_response(412, b""), Error::Concurrency));
        assert!(matches!(
            from_response(412, br#"{"error":{"code":"0x80060882","message":"x"}}"#),
            Error::Concurrency
        ));
        assert!(matches!(
            from_response(412, br#"{"error":{"code":"0x80048d19","message":"other"}}"#),
            Error::Service { status: 412, .. }
        ));
    }

    #[test]
    fn urls_in_logs_keep_ids_and_lose_key_values_and_queries() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        let shown = |s: &str| UrlForLog(&url(s)).to_string();
        assert_eq!(
            shown("https://x.crm4.dynamics.com/api/data/v9.2/contacts(hlf_membernumber='1001')?$select=a"),
            "https://x.crm4.dynamics.com/api/data/v9.2/contacts(hlf_membernumber=…)"
        );
        assert_eq!(
            shown(
                "https://x/api/data/v9.2/contacts(7d3f9a2e-0000-4000-8000-000000000001)?$filter=hlf_membernumber eq '1'"
            ),
            "https://x/api/data/v9.2/contacts(7d3f9a2e-0000-4000-8000-000000000001)"
        );
        assert_eq!(
            shown("https://x/api/data/v9.2/accounts(a='1',b='Ola%20Nordmann')/x"),
            "https://x/api/data/v9.2/accounts(a=…,b=…)/x"
        );
        assert_eq!(
            shown("https://x/api/data/v9.2/contacts('1001'"),
            "https://x/api/data/v9.2/contacts(…"
        );
        assert_eq!(
            shown("https://x/api/data/v9.2/WhoAmI()"),
            "https://x/api/data/v9.2/WhoAmI()"
        );
    }

    #[test]
    fn malformed_truncated_empty_and_html_bodies_never_panic() {
        check(500, "", "Dynamics answered 500 (): ");
        check(
            500,
            r#"{"error":{"code":"0x8004"#,
            r#"Dynamics answered 500 (): {"error":{"code":"0x8004"#,
        );
        check(
            502,
            "<html><body>Bad gateway</body></html>",
            "Dynamics answered 502 (): <html><body>Bad gateway</body></html>",
        );
        check(400, "[1,2,3]", "Dynamics answered 400 (): [1,2,3]");
        check(
            400,
            r#"{"error":"plain"}"#,
            r#"Dynamics answered 400 (): {"error":"plain"}"#,
        );
        check(400, "\u{0}\u{1}binary", "Dynamics answered 400 (): binary");
    }

    #[test]
    fn expired_delta_tokens_are_recognised_by_code_or_message() {
        let expired = |body: &str| matches!(from_response(400, body.as_bytes()), Error::DeltaTokenExpired);
        assert!(expired(r#"{"error":{"code":"0x80044352","message":"x"}}"#));
        assert!(expired(
            r#"{"error":{"code":"","message":"Version stamp associated with the client has expired. Please perform a full sync."}}"#
        ));
        assert!(!expired(r#"{"error":{"code":"0x80040217","message":"x"}}"#));
    }

    #[test]
    fn aadsts_codes_are_found_in_descriptions() {
        assert_eq!(
            find_aadsts("AADSTS7000222: The provided client secret keys are expired."),
            Some(7_000_222)
        );
        assert_eq!(
            find_aadsts("ClientSecretCredential authentication failed. AADSTS90002: Tenant"),
            Some(90_002)
        );
        assert_eq!(find_aadsts("no code here"), None);
        assert_eq!(find_aadsts("AADSTS"), None);
    }
}
