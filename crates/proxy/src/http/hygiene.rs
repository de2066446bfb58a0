//! Request hygiene: refuse, before anything is forwarded, what is oversized or could be read
//! two ways (request smuggling): both Content-Length and Transfer-Encoding (as sent: see
//! `common::server::RawHead`), repeated or invalid Content-Length or Transfer-Encoding, a
//! transfer coding other than `chunked` (501), a target naming another host than `Host`,
//! CONNECT, TRACE (405), a method not in capitals, the `*` target, a path climbing above the
//! root. Also the one parser of the host a request names,
//! and the one normaliser of its path ([`normalize_path`]).

use std::borrow::Cow;

use common::server::RawHead;
use http::uri::{Authority, PathAndQuery, Uri};
use http::{HeaderMap, Method, Request, StatusCode, header};

use crate::config::Limits;

/// What a request that passed the checks names: its host, and its target with the path
/// normalised (what is routed and forwarded).
#[derive(Debug)]
pub struct Checked {
    pub host: Authority,
    pub target: PathAndQuery,
}

/// The host and normalised target the request names, or the status to answer with (rendered
/// as the error page).
pub fn check<B>(req: &Request<B>, limits: &Limits) -> Result<Checked, StatusCode> {
    method(req.method())?;
    // `*` (the asterisk form) is no resource to forward; nginx refuses it for every method.
    if req.uri().path() == "*" {
        return Err(StatusCode::BAD_REQUEST);
    }
    let target_len = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string().len(), |pq| pq.as_str().len());
    if target_len > limits.max_uri_length {
        return Err(StatusCode::URI_TOO_LONG);
    }
    if header_block_size(req.headers()) > limits.connection.max_header_bytes {
        return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    framing(req.headers(), req.extensions().get::<RawHead>())?;
    // HTTP/1.1 requires Host, even with an absolute-form target (RFC 9112 §3.2).
    if req.version() == http::Version::HTTP_11 && !req.headers().contains_key(header::HOST) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let host = request_host(req.uri(), req.headers()).map_err(|_| StatusCode::BAD_REQUEST)?;
    // Absolute-form targets (and HTTP/2 :authority) must name the same host as `Host`.
    if let (Some(authority), Some(_)) = (req.uri().authority(), req.headers().get(header::HOST))
        && !authority.host().eq_ignore_ascii_case(host.host())
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    let target = normalized_target(req.uri()).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(Checked { host, target })
}

/// What nginx answers for a method: 400 for CONNECT and for anything but capitals, `_` and `-`
/// (`get` is no GET: a backend that reads it case-insensitively would see another request than
/// the proxy routed), 405 for TRACE (it would echo the request, cookies included, back).
fn method(method: &Method) -> Result<(), StatusCode> {
    if *method == Method::CONNECT
        || !method
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    if *method == Method::TRACE {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    Ok(())
}

/// Why a path is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// A `..` segment would climb above the root (nginx answers 400 too).
    AboveRoot,
    /// A dot segment hidden behind an encoded slash or backslash, or followed by `;` parameters
    /// (`..%2f`, `..%5c`, `..;`): a backend that decodes them, or reads path parameters
    /// (Tomcat), would climb with it.
    HiddenDotSegment,
}

/// RFC 3986 §5.2.4 `remove_dot_segments` for an origin-form path (one starting with `/`;
/// anything else is returned as is), with percent-encoded dots (`%2e`) recognised as dots. A
/// path that would climb above the root is refused, as nginx does, where RFC 3986 would stop at
/// the root. Encoded slashes (`%2F`) and backslashes (`%5C`) are not separators and stay encoded
/// (nginx's `proxy_pass` without a URI forwards them untouched too; decoding would break APIs
/// that carry `group%2Fproject` in one segment), but a dot segment hidden behind one is refused.
/// Borrowed when nothing changes.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, BadPath> {
    let Some(rest) = path.strip_prefix('/') else {
        return Ok(Cow::Borrowed(path));
    };
    let count = rest.split('/').count();
    let mut out: Vec<&str> = Vec::with_capacity(count);
    let mut changed = false;
    for (i, segment) in rest.split('/').enumerate() {
        let last = i + 1 == count;
        match dots(segment) {
            Some(dots) => {
                changed = true;
                if dots == 2 && out.pop().is_none() {
                    return Err(BadPath::AboveRoot);
                }
                if last {
                    out.push("");
                }
            }
            None if hides_dot_segment(segment) => return Err(BadPath::HiddenDotSegment),
            None => out.push(segment),
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(format!("/{}", out.join("/"))))
}

/// 1 for a `.` segment, 2 for `..`, with `%2e`/`%2E` counting as a dot; `None` otherwise.
fn dots(segment: &str) -> Option<usize> {
    let mut rest = segment.as_bytes();
    let mut n = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        n += 1;
    }
    (1..=2).contains(&n).then_some(n)
}

/// A dot segment inside `segment` once encoded slashes or backslashes, a literal backslash, or
/// `;` split it.
fn hides_dot_segment(segment: &str) -> bool {
    if !segment.contains(['%', ';', '\\']) {
        return false;
    }
    let lower = segment.to_ascii_lowercase();
    lower
        .replace("%2f", "/")
        .replace("%5c", "/")
        .split(['/', '\\', ';'])
        .any(|piece| dots(piece).is_some())
}

/// The request target with its path normalised ([`normalize_path`]); the query as sent.
pub fn normalized_target(uri: &Uri) -> Result<PathAndQuery, BadPath> {
    let Some(pq) = uri.path_and_query() else {
        return Ok(PathAndQuery::from_static("/"));
    };
    match normalize_path(pq.path())? {
        Cow::Borrowed(_) => Ok(pq.clone()),
        Cow::Owned(path) => {
            let target = match pq.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            // A normalised path only loses characters of a valid one.
            PathAndQuery::try_from(target).map_err(|_| BadPath::HiddenDotSegment)
        }
    }
}

/// Why a request names no usable host (answered with 400).
#[derive(Debug, PartialEq, Eq)]
pub enum BadHost {
    Missing,
    Malformed,
}

/// The host a request names: the `Host` header, or the URI authority (HTTP/2, absolute form).
pub fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<Authority, BadHost> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let raw = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(BadHost::Malformed),
        (Some(h), None) => h.to_str().map_err(|_| BadHost::Malformed)?.to_owned(),
        (None, _) => uri.authority().ok_or(BadHost::Missing)?.as_str().to_owned(),
    };
    let auth: Authority = raw.parse().map_err(|_| BadHost::Malformed)?;
    let port = &auth.as_str()[auth.host().len()..];
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
        });
    if raw.contains('@') || !valid_host(auth.host()) || !port_ok {
        return Err(BadHost::Malformed);
    }
    Ok(auth)
}

/// A DNS name or IPv4 literal (letters, digits, `-`, `.`, `_`), or a bracketed IPv6 literal.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

/// Bytes of the header block as sent on the wire (`name: value\r\n` per field).
pub fn header_block_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum()
}

/// One unambiguous body framing, as nginx wants it: at most one `Content-Length` and one
/// `Transfer-Encoding`, never both (400); a transfer coding other than exactly `chunked` is 501.
/// `raw` is the head as the client sent it (HTTP/1), where hyper already dropped a
/// `Content-Length` beside `Transfer-Encoding` and merged repeated ones.
fn framing(headers: &HeaderMap, raw: Option<&RawHead>) -> Result<(), StatusCode> {
    let raw = raw.copied().unwrap_or_default();
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let (length, second_length) = (lengths.next(), lengths.next());
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let (coding, second_coding) = (codings.next(), codings.next());
    if second_length.is_some()
        || second_coding.is_some()
        || raw.content_length_fields > 1
        || raw.transfer_encoding_fields > 1
    {
        return Err(StatusCode::BAD_REQUEST);
    }
    if coding.is_some_and(|c| !c.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    let chunked = coding.is_some() || raw.transfer_encoding_fields > 0;
    if chunked && (length.is_some() || raw.content_length_fields > 0) {
        return Err(StatusCode::BAD_REQUEST);
    }
    match length.map(|l| l.as_bytes()) {
        Some(l) if l.is_empty() || !l.iter().all(u8::is_ascii_digit) => {
            Err(StatusCode::BAD_REQUEST)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// [`super::check`], for the outcome only.
    fn check<B>(req: &Request<B>, limits: &Limits) -> Result<(), StatusCode> {
        super::check(req, limits).map(|_| ())
    }

    fn limits() -> Limits {
        Limits {
            connection: common::server::Limits {
                max_header_bytes: 1024,
                ..common::server::Limits::default()
            },
            body_timeout: Duration::from_secs(1),
            max_uri_length: 64,
            max_body_size: 0,
            tunnel_idle_timeout: Duration::from_secs(1),
            upstream_max_header_size: 32 * 1024,
        }
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(
            check(&req("/a?b", &[("host", "x.test")]), &limits()),
            Ok(())
        );
        assert_eq!(
            check(
                &req("/", &[("host", "x.test"), ("content-length", "5")]),
                &limits()
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &req("https://x.test/", &[("host", "x.test:443")]),
                &limits()
            ),
            Ok(())
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let l = limits();
        for headers in [
            vec![
                ("host", "x"),
                ("content-length", "5"),
                ("transfer-encoding", "chunked"),
            ],
            vec![
                ("host", "x"),
                ("content-length", "5"),
                ("content-length", "5"),
            ],
            vec![("host", "x"), ("content-length", "+5")],
            vec![("host", "x"), ("content-length", "5, 5")],
        ] {
            assert_eq!(
                check(&req("/", &headers), &l),
                Err(StatusCode::BAD_REQUEST),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn other_hosts_connect_and_sizes_are_refused() {
        let l = limits();
        assert_eq!(
            check(&req("http://evil.test/", &[("host", "x.test")]), &l),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(check(&req("/", &[]), &l), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            check(&req("http://x.test/", &[]), &l),
            Err(StatusCode::BAD_REQUEST)
        );
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri("x.test:443")
            .header("host", "x.test")
            .body(())
            .expect("req");
        assert_eq!(check(&connect, &l), Err(StatusCode::BAD_REQUEST));
        let long = format!("/{}", "a".repeat(64));
        assert_eq!(
            check(&req(&long, &[("host", "x")]), &l),
            Err(StatusCode::URI_TOO_LONG)
        );
        let big = "v".repeat(1100);
        assert_eq!(
            check(&req("/", &[("host", "x"), ("x-big", &big)]), &l),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }

    #[test]
    fn transfer_codings_and_raw_heads_decide_the_framing() {
        let te = |v: &str| req("/", &[("host", "x"), ("transfer-encoding", v)]);
        let l = limits();
        assert_eq!(check(&te("chunked"), &l), Ok(()));
        assert_eq!(check(&te("Chunked"), &l), Ok(()));
        for other in ["gzip, chunked", "gzip", "chunked, chunked", "identity"] {
            assert_eq!(
                check(&te(other), &l),
                Err(StatusCode::NOT_IMPLEMENTED),
                "{other}"
            );
        }
        // What hyper folded away, seen in the raw head.
        let mut folded = te("chunked");
        folded.extensions_mut().insert(RawHead {
            content_length_fields: 1,
            transfer_encoding_fields: 1,
        });
        assert_eq!(check(&folded, &l), Err(StatusCode::BAD_REQUEST));
        let mut merged = req("/", &[("host", "x"), ("content-length", "5")]);
        merged.extensions_mut().insert(RawHead {
            content_length_fields: 2,
            transfer_encoding_fields: 0,
        });
        assert_eq!(check(&merged, &l), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        for (path, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/a//../b", "/a/b"),
            ("/a/%2e/b/%2E%2e/c", "/a/c"),
            ("/a/.%2E/b", "/b"),
            ("/a/...", "/a/..."),
            ("/a/.hidden/%2e%2eb", "/a/.hidden/%2e%2eb"),
            ("/group%2Fproject/x", "/group%2Fproject/x"),
            ("*", "*"),
        ] {
            assert_eq!(normalize_path(path).as_deref(), Ok(want), "{path}");
        }
        assert!(matches!(normalize_path("/a/b"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn paths_above_the_root_and_hidden_dot_segments_are_refused() {
        for path in [
            "/..",
            "/../a",
            "/a/../..",
            "/./../a",
            "/%2e%2e/a",
            "/a/%2E./../b",
        ] {
            assert_eq!(normalize_path(path), Err(BadPath::AboveRoot), "{path}");
        }
        for path in [
            "/..%2f..%2fetc/passwd",
            "/a/..%2F",
            "/x/..%5c..%5cwin",
            "/a/..;jsessionid=1/b",
            "/a/%2e%2e%2fb",
        ] {
            assert_eq!(
                normalize_path(path),
                Err(BadPath::HiddenDotSegment),
                "{path}"
            );
        }
        let uri: Uri = "/a/../b?x=/../y".parse().expect("uri");
        assert_eq!(normalized_target(&uri).expect("target"), "/b?x=/../y");
    }
}
