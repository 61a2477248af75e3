//! Dataverse error answers: `{"error":{"code":"0x...","message":"..."}}` with the documented codes.

use http::StatusCode;
use serde_json::json;

use crate::metadata::TableDef;

/// Not found (`ObjectDoesNotExist`).
pub(crate) const NOT_FOUND: &str = "0x80040217";
/// Not found by alternate key.
pub(crate) const NOT_FOUND_BY_KEY: &str = "0x80060891";
/// A privilege is missing.
pub(crate) const PRIVILEGE_DENIED: &str = "0x80040220";
/// Duplicate record.
pub(crate) const DUPLICATE: &str = "0x80040237";
/// Alternate key violated.
pub(crate) const KEY_VIOLATION: &str = "0x80060892";
/// Etag mismatch (`ConcurrencyVersionMismatch`).
pub(crate) const CONCURRENCY: &str = "0x80060882";
/// OData syntax, unknown segment or unknown property.
pub(crate) const ODATA: &str = "0x80060888";
/// A validation error (length, option value).
pub(crate) const VALIDATION: &str = "0x80044331";
/// Invalid argument (read-only column, bad value).
pub(crate) const INVALID_ARGUMENT: &str = "0x80040203";
/// Payload errors (bad JSON, wrong value type).
pub(crate) const PAYLOAD: &str = "0x80048d19";
/// Expired change-tracking version stamp.
pub(crate) const EXPIRED_VERSION_STAMP: &str = "0x80044352";
/// Service protection: number of requests.
pub(crate) const THROTTLE_REQUESTS: &str = "0x80072322";
/// Service protection: execution time.
pub(crate) const THROTTLE_TIME: &str = "0x80072321";
/// Service protection: concurrency.
pub(crate) const THROTTLE_CONCURRENCY: &str = "0x80072326";
/// A generic server error (injected 5xx).
pub(crate) const GENERIC: &str = "0x80040216";

/// An error answer with its HTTP status.
#[derive(Debug, Clone)]
pub(crate) struct DvError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Seconds for a `Retry-After` header (429 only).
    pub(crate) retry_after: Option<u64>,
}

impl DvError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn odata(message: impl Into<String>) -> Self {
        Self::bad_request(ODATA, message)
    }

    pub(crate) fn unknown_property(def: &TableDef, name: &str) -> Self {
        Self::odata(format!(
            "Could not find a property named '{name}' on type '{}'.",
            def.type_name()
        ))
    }

    pub(crate) fn not_found(def: &TableDef, id: &uuid::Uuid) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            format!("{} With Id = {id} Does Not Exist", def.logical_name),
        )
    }

    pub(crate) fn not_found_by_key(def: &TableDef) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            NOT_FOUND_BY_KEY,
            format!(
                "A record with the specified key values does not exist in {} entity",
                def.logical_name
            ),
        )
    }

    pub(crate) fn segment(segment: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ODATA,
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}
