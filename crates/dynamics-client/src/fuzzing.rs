//! Entry points for the fuzz targets under `fuzz/` (cargo-fuzz), compiled only with the `fuzzing` feature. Each is a
//! thin wrapper around a crate-private decoder that the client runs on what Dynamics or Azure AD sends back, so the
//! fuzzers exercise exactly the production code without these decoders becoming part of the crate's API.

use http::HeaderMap;
use url::Url;

use crate::batch::PartResult;
use crate::changes::ChangePage;
use crate::error::{Error, Result};
use crate::query::Page;
use crate::write::Written;
use field_mapping::Row;

/// Decodes a `$batch` answer into one result per operation, as `DynamicsClient::execute_batch` does.
pub fn batch_response(content_type: &str, body: &[u8], expected: usize, atomic: bool) -> Result<Vec<PartResult>> {
    crate::batch::decode_batch(content_type, body, expected, atomic)
}

/// Reads a successful write's answer (a batch part or a single response), as `TableWriter` does.
pub fn written(status: u16, headers: &HeaderMap, body: &[u8], primary_id: &str) -> Written {
    crate::write::written_from(status, headers, body, primary_id)
}

/// Decodes a page of rows and checks its `@odata.nextLink` against `api_base`, as `DynamicsClient::pages` does.
pub fn page_of_rows(body: &[u8], api_base: &Url) -> Result<(Page<Row>, Option<Url>)> {
    let (page, next) = crate::query::decode_page::<Row>(body, "fuzz")?;
    let next = next
        .map(|link| crate::query::same_origin_as(api_base, &link))
        .transpose()?;
    Ok((page, next))
}

/// Decodes a change-tracking page (upserts and `$deletedEntity` rows) and checks its next link, as
/// `DynamicsClient::track_changes` and `changes_since` do.
pub fn change_page(body: &[u8], api_base: &Url) -> Result<(ChangePage, Option<Url>)> {
    let (page, next) = crate::query::decode_page::<Row>(body, "fuzz")?;
    let next = next
        .map(|link| crate::query::same_origin_as(api_base, &link))
        .transpose()?;
    Ok((crate::changes::to_change_page(page)?, next))
}

/// Checks a next or delta link against `api_base`, as the client does before following one.
pub fn follow_link(api_base: &Url, link: &str) -> Result<Url> {
    crate::query::same_origin_as(api_base, link)
}

/// Decodes an error answer into the variant a caller branches on.
pub fn error_response(status: u16, body: &[u8]) -> Error {
    crate::error::from_response(status, body)
}

/// The code and message of an error answer, as used for 401 and 429 answers.
pub fn error_parts(body: &[u8]) -> (String, String) {
    crate::error::error_parts(body)
}

/// The first `AADSTS<digits>` code in Azure AD's error text.
pub fn find_aadsts(text: &str) -> Option<u32> {
    crate::error::find_aadsts(text)
}
