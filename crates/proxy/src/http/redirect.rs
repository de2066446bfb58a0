//! The HTTP listener's answer: `301` to the same host and path over HTTPS (a missing or
//! malformed `Host` is a 400 page).

use std::convert::Infallible;
use std::sync::Arc;

use common::server::ConnInfo;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

use super::context::Shared;
use super::hygiene;
use crate::body::ProxyBody;

/// The HTTP listener's service: 301 to HTTPS, or the error page.
pub async fn redirect(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = shared.started(&req, &conn);
    let head = req.method() == Method::HEAD;
    let checked = hygiene::check(&req, &shared.config.limits).and_then(|checked| {
        let target = location(&checked.host, &checked.target, shared.config.https_port);
        HeaderValue::from_str(&target).map_err(|_| StatusCode::BAD_REQUEST)
    });
    let resp = match checked {
        Ok(location) => {
            let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        Err(status) => shared.page(status, &started.request_id, req.headers(), head),
    };
    Ok(shared.finish(resp, started, false))
}

/// `https://<host>[:port]<path-and-query>`; the port only when it isn't 443.
pub fn location(host: &Authority, target: &PathAndQuery, https_port: u16) -> String {
    let path = target.as_str();
    let path = if path.starts_with('/') { path } else { "/" };
    if https_port == 443 {
        format!("https://{}{path}", host.host())
    } else {
        format!("https://{}:{https_port}{path}", host.host())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::hygiene::{BadHost, request_host};
    use http::HeaderMap;
    use http::uri::Uri;

    /// The redirect target for a request with these headers, or why there is none.
    fn location(uri: &Uri, headers: &HeaderMap, https_port: u16) -> Result<String, BadHost> {
        let host = request_host(uri, headers)?;
        let target = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(super::location(&host, &target, https_port))
    }

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
