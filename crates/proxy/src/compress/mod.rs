//! On-the-fly compression (`PROXY_COMPRESSION`): which answers qualify (compressible type, big
//! enough, not already encoded, not partial, not `no-transform`, not HEAD), the coding
//! negotiated from `Accept-Encoding` ([`negotiate`]), and the header changes (`Vary`, no
//! `Content-Length`, a weak `ETag`). The proxy's own answers (static files, error pages) carry
//! the [`Ours`] mark and are compressed by default; the app's only with
//! `PROXY_COMPRESSION_UPSTREAM` (BREACH).

mod body;
mod negotiate;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;

pub use body::Compressed;
pub use negotiate::negotiate;

use crate::body::ProxyBody;
use crate::config::{Coding, Compression};

/// Marks a response the proxy made itself (a static file, an error page).
#[derive(Debug, Clone, Copy)]
pub struct Ours;

/// Compress `resp` when it qualifies and the client accepts a coding of `config`.
/// `req_headers` holds the client's `Accept-Encoding`.
pub fn compress(
    config: &Compression,
    req_headers: &HeaderMap,
    head: bool,
    mut resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let ours = resp.extensions().get::<Ours>().is_some();
    if config.codings.is_empty() || head || !(ours || config.upstream) || !eligible(&resp, config) {
        return resp;
    }
    add_vary(resp.headers_mut());
    let Some(coding) = negotiate(req_headers, &on_the_fly(config)) else {
        return resp;
    };
    let length = resp.body().size_hint().exact();
    let (mut parts, inner) = resp.into_parts();
    let body = Compressed::new(inner, coding, length);
    let h = &mut parts.headers;
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    if let Some(weak) = h.get(header::ETAG).and_then(weaken) {
        h.insert(header::ETAG, weak);
    }
    Response::from_parts(parts, body.boxed())
}

/// The codings of `config` the proxy encodes itself (brotli only precompressed).
fn on_the_fly(config: &Compression) -> Vec<Coding> {
    config
        .codings
        .iter()
        .copied()
        .filter(|c| c.on_the_fly())
        .collect()
}

/// Whether a full answer of this type and length, to this request, would be compressed on the
/// fly (a 304 then carries the weak tag the compressed 200 had).
pub fn would_compress(
    config: &Compression,
    req_headers: &HeaderMap,
    content_type: &HeaderValue,
    length: u64,
) -> bool {
    compressible(content_type)
        && length >= config.min_size
        && negotiate(req_headers, &on_the_fly(config)).is_some()
}

/// A full answer of a compressible type, big enough (when its length is known), not encoded
/// yet, and without `Cache-Control: no-transform`.
fn eligible(resp: &Response<ProxyBody>, config: &Compression) -> bool {
    let status = resp.status();
    let h = resp.headers();
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
        || h.contains_key(header::CONTENT_ENCODING)
        || h.contains_key(header::CONTENT_RANGE)
        || no_transform(h)
        || !h.get(header::CONTENT_TYPE).is_some_and(compressible)
    {
        return false;
    }
    let length = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| resp.body().size_hint().exact());
    length.is_none_or(|n| n >= config.min_size)
}

fn no_transform(h: &HeaderMap) -> bool {
    h.get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
}

/// Text, JSON, JavaScript, XML (SVG, RSS…), wasm and a few more that compress well.
pub fn compressible(content_type: &HeaderValue) -> bool {
    let Ok(ct) = content_type.to_str() else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    top == "text"
        || sub.ends_with("+json")
        || sub.ends_with("+xml")
        || (top == "application"
            && matches!(
                sub,
                "json"
                    | "javascript"
                    | "x-javascript"
                    | "ecmascript"
                    | "xml"
                    | "wasm"
                    | "x-ndjson"
                    | "ndjson"
                    | "graphql-response+json"
            ))
        || essence == "image/x-icon"
}

/// `Vary: Accept-Encoding`, once.
pub fn add_vary(h: &mut HeaderMap) {
    let present = h
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*");
    if !present {
        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// `"x"` → `W/"x"` (a compressed body is not byte-identical to the one the tag named).
pub fn weaken(etag: &HeaderValue) -> Option<HeaderValue> {
    let bytes = etag.as_bytes();
    if bytes.starts_with(b"W/") {
        return None;
    }
    let mut weak = b"W/".to_vec();
    weak.extend_from_slice(bytes);
    HeaderValue::from_bytes(&weak).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_types() {
        for ct in [
            "text/html; charset=utf-8",
            "application/json",
            "application/problem+json",
            "image/svg+xml",
            "application/wasm",
            "text/javascript",
            "Application/JavaScript",
        ] {
            assert!(compressible(&HeaderValue::from_static(ct)), "{ct}");
        }
        for ct in ["image/png", "application/octet-stream", "video/mp4", "gzip"] {
            assert!(!compressible(&HeaderValue::from_static(ct)), "{ct}");
        }
    }

    #[test]
    fn tags_weaken_and_vary_is_added_once() {
        let tag = HeaderValue::from_static("\"abc\"");
        assert_eq!(weaken(&tag).expect("weak"), "W/\"abc\"");
        assert!(weaken(&HeaderValue::from_static("W/\"abc\"")).is_none());
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("Accept"));
        add_vary(&mut h);
        add_vary(&mut h);
        assert_eq!(h.get_all(header::VARY).iter().count(), 2);
    }
}
