//! The custom error page (STUB — owned by the error-page/logs work; keep these signatures).

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

/// A template problem found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ErrorPageError {
    #[error("PROXY_ERROR_PAGE={path}: {reason}")]
    Template { path: String, reason: String },
}

/// Renders the proxy's own error answers (HTML, JSON or plain text by `Accept`).
#[derive(Debug, Clone)]
pub struct ErrorPages {}

impl ErrorPages {
    /// The built-in page, or the template file at `path`, validated now.
    pub fn load(_path: Option<&Path>) -> Result<Self, ErrorPageError> {
        Ok(ErrorPages {})
    }

    /// The answer for `status`. `req_headers` are the client's (for `Accept`); `head` drops the body.
    pub fn render(
        &self,
        status: StatusCode,
        request_id: &str,
        _req_headers: &HeaderMap,
        head: bool,
    ) -> Response<Full<Bytes>> {
        let body = if head {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "{} {}\nrequest id: {request_id}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            ))
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        resp
    }
}
