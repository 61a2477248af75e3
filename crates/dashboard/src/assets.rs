//! Assets embedded in the binary: the dashboard loads nothing from anywhere else.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet.
pub(crate) const STYLE: &str = include_str!("../assets/style.css");

/// `GET /assets/style.css`.
pub(crate) async fn style() -> Response {
    let mut response = STYLE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    // Private: it is served behind the admin credential, so no shared cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    response
}
