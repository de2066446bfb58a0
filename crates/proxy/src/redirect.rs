//! The HTTP listener's answer: `301` to the same host and path over HTTPS.

use http::uri::{Authority, Uri};
use http::{HeaderMap, header};

/// Why a redirect could not be built (answered with 400).
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

/// `https://<host>[:port]<path-and-query>`; the port only when it isn't 443.
pub fn location(uri: &Uri, headers: &HeaderMap, https_port: u16) -> Result<String, BadHost> {
    let auth = request_host(uri, headers)?;
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let path = if path.starts_with('/') { path } else { "/" };
    Ok(if https_port == 443 {
        format!("https://{}{path}", auth.host())
    } else {
        format!("https://{}:{https_port}{path}", auth.host())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_host(h: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(h).expect("value"));
        m
    }

    #[test]
    fn keeps_host_path_and_query_and_drops_the_port() {
        let uri: Uri = "/a/b?c=d".parse().expect("uri");
        assert_eq!(
            location(&uri, &with_host("example.test:8080"), 443),
            Ok("https://example.test/a/b?c=d".into())
        );
        assert_eq!(
            location(&uri, &with_host("example.test"), 8443),
            Ok("https://example.test:8443/a/b?c=d".into())
        );
        assert_eq!(
            location(&uri, &with_host("[::1]:80"), 443),
            Ok("https://[::1]/a/b?c=d".into())
        );
    }

    #[test]
    fn refuses_missing_or_malformed_hosts() {
        let uri: Uri = "/".parse().expect("uri");
        assert_eq!(
            location(&uri, &HeaderMap::new(), 443),
            Err(BadHost::Missing)
        );
        for bad in [
            "evil.com@good.com",
            "a b",
            "a/b",
            "",
            "x:y",
            "a\"b",
            "x:99999",
            "x:0",
            "x:+1",
        ] {
            assert!(location(&uri, &with_host(bad), 443).is_err(), "{bad}");
        }
        let mut two = with_host("a");
        two.append(header::HOST, HeaderValue::from_static("b"));
        assert_eq!(location(&uri, &two, 443), Err(BadHost::Malformed));
    }

    #[test]
    fn a_path_that_looks_like_a_host_stays_a_path() {
        let uri: Uri = "//evil.test/x".parse().expect("uri");
        assert_eq!(
            location(&uri, &with_host("good.test"), 443),
            Ok("https://good.test//evil.test/x".into())
        );
    }
}
