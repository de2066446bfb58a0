//! Request hygiene: refuse, before anything is forwarded, what is oversized or could be read
//! two ways (request smuggling): both Content-Length and Transfer-Encoding, repeated or invalid
//! Content-Length, a target naming another host than `Host`, CONNECT. Also the one parser of
//! the host a request names.

use http::uri::{Authority, Uri};
use http::{HeaderMap, Method, Request, StatusCode, header};

use crate::config::Limits;

/// The host the request names, or the status to answer with (rendered as the error page).
pub fn check<B>(req: &Request<B>, limits: &Limits) -> Result<Authority, StatusCode> {
    if req.method() == Method::CONNECT {
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
    framing(req.headers())?;
    // HTTP/1.1 requires Host, even with an absolute-form target (RFC 9112 §3.2).
    if req.version() == http::Version::HTTP_11 && !req.headers().contains_key(header::HOST) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let host = request_host(req.uri(), req.headers()).map_err(|_| StatusCode::BAD_REQUEST)?;
    // Absolute-form targets (and HTTP/2 :authority) must name the same host as `Host`.
    if let (Some(authority), Some(_)) = (req.uri().authority(), req.headers().get(header::HOST)) {
        if !authority.host().eq_ignore_ascii_case(host.host()) {
            return Err(StatusCode::BAD_REQUEST);
        }
    }
    Ok(host)
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

/// One unambiguous body framing, or 400.
fn framing(headers: &HeaderMap) -> Result<(), StatusCode> {
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let (first, second) = (lengths.next(), lengths.next());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    if chunked && first.is_some() {
        return Err(StatusCode::BAD_REQUEST);
    }
    match (first, second) {
        (None, _) => Ok(()),
        (Some(one), None) => {
            let text = one.to_str().map_err(|_| StatusCode::BAD_REQUEST)?;
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err(StatusCode::BAD_REQUEST)
            }
        }
        _ => Err(StatusCode::BAD_REQUEST),
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
}
