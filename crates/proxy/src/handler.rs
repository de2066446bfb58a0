//! Per-request handling: the HTTPS side forwards to the upstream (or answers an error page), the
//! HTTP side redirects. Both write exactly one access-log line per request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::server::ConnInfo;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use crate::access_log::{AccessEntry, AccessLog};
use crate::body::{BodyFault, FaultFlag, Guarded, Logged, ProxyBody};
use crate::config::Limits;
use crate::error_page::ErrorPages;
use crate::forward::{self, X_REQUEST_ID};
use crate::redirect;
use crate::upstream::{UpstreamAddr, UpstreamClient};
use crate::upstream_h2::H2Upstream;

/// Upstream headers kept when an upstream error answer is replaced by our page.
const KEPT_ON_INTERCEPT: [header::HeaderName; 4] = [
    header::ALLOW,
    header::WWW_AUTHENTICATE,
    header::RETRY_AFTER,
    header::SET_COOKIE,
];

/// What every request handler needs; built once at start-up.
pub struct Shared {
    pub client: UpstreamClient,
    /// `PROXY_UPSTREAM_HTTP2`: multiplexed HTTP/2 to the upstream (upgrades still use `client`).
    pub h2: Option<H2Upstream>,
    /// `host:port` of the upstream, for request URIs.
    pub upstream_authority: http::uri::Authority,
    pub upstream_timeout: Duration,
    pub trusted: Vec<IpNet>,
    pub hsts: Option<HeaderValue>,
    pub pages: ErrorPages,
    pub intercept: bool,
    pub access: AccessLog,
    pub https_port: u16,
    pub limits: Limits,
}

/// What the access log needs to know about a request, captured before it is consumed. Header
/// values and the target are shared with the request, not copied.
fn entry_for<B>(req: &Request<B>, conn: &ConnInfo, request_id: &HeaderValue) -> AccessEntry {
    let header = |name: header::HeaderName| req.headers().get(name).cloned().map(Into::into);
    AccessEntry {
        remote_addr: forward::canonical(conn.peer.ip()),
        remote_user: None,
        time: time::OffsetDateTime::now_utc(),
        method: req.method().clone().into(),
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string().into(), |pq| pq.clone().into()),
        protocol: protocol(req.version()),
        status: 0,
        body_bytes_sent: 0,
        referer: header(header::REFERER),
        user_agent: header(header::USER_AGENT),
        request_id: request_id.clone().into(),
        upstream_addr: None,
        request_time: Duration::ZERO,
        upstream_time: None,
    }
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Finish a response: request id, optional HSTS, and the logging body.
fn finish(
    shared: &Shared,
    resp: Response<ProxyBody>,
    mut entry: AccessEntry,
    started: Instant,
    request_id: &HeaderValue,
    https: bool,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(&X_REQUEST_ID, request_id.clone());
    if https {
        if let Some(hsts) = &shared.hsts {
            parts
                .headers
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    entry.status = parts.status.as_u16();
    let body = Logged::new(body, entry, started, shared.access.clone());
    Response::from_parts(parts, BodyExt::boxed(body))
}

fn page(
    shared: &Shared,
    status: StatusCode,
    request_id: &HeaderValue,
    req_headers: &http::HeaderMap,
    head: bool,
) -> Response<ProxyBody> {
    let rid = request_id.to_str().unwrap_or("-");
    shared
        .pages
        .render(status, rid, req_headers, head)
        .map(|b| b.map_err(|never| match never {}).boxed())
}

/// The HTTP listener: 301 to HTTPS, 400 for a missing or malformed Host.
pub async fn redirect(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let rid = forward::request_id(req.headers());
    let entry = entry_for(&req, &conn, &rid);
    let head = req.method() == Method::HEAD;
    let checked = crate::hygiene::check(&req, &shared.limits).and_then(|()| {
        redirect::location(req.uri(), req.headers(), shared.https_port)
            .ok()
            .and_then(|l| HeaderValue::from_str(&l).ok())
            .ok_or(StatusCode::BAD_REQUEST)
    });
    let resp = match checked {
        Ok(location) => {
            let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        Err(status) => page(&shared, status, &rid, req.headers(), head),
    };
    Ok(finish(&shared, resp, entry, started, &rid, false))
}

/// The HTTPS listener: forward to the upstream.
pub async fn forward(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let rid = forward::request_id(req.headers());
    let mut entry = entry_for(&req, &conn, &rid);
    let head = req.method() == Method::HEAD;
    // Only `Accept` matters for an error page; keep it instead of the whole header map.
    let mut req_headers = http::HeaderMap::new();
    if let Some(accept) = req.headers().get(header::ACCEPT) {
        req_headers.insert(header::ACCEPT, accept.clone());
    }
    let resp = match proxy(&shared, conn, req, &rid).await {
        Ok((resp, addr, upstream_time)) => {
            entry.upstream_addr = Some(addr);
            entry.upstream_time = Some(upstream_time);
            if shared.intercept && resp.status().as_u16() >= 400 {
                let status = resp.status();
                let mut ours = page(&shared, status, &rid, &req_headers, head);
                for name in KEPT_ON_INTERCEPT {
                    for v in resp.headers().get_all(&name) {
                        ours.headers_mut().append(name.clone(), v.clone());
                    }
                }
                ours
            } else {
                resp
            }
        }
        Err(status) => page(&shared, status, &rid, &req_headers, head),
    };
    Ok(finish(&shared, resp, entry, started, &rid, true))
}

/// Send one request upstream; an error is the status to answer with.
async fn proxy(
    shared: &Shared,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    rid: &HeaderValue,
) -> Result<(Response<ProxyBody>, SocketAddr, Duration), StatusCode> {
    crate::hygiene::check(&req, &shared.limits)?;
    let host =
        redirect::request_host(req.uri(), req.headers()).map_err(|_| StatusCode::BAD_REQUEST)?;
    let host_value = HeaderValue::from_str(host.as_str()).map_err(|_| StatusCode::BAD_REQUEST)?;
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let max = shared.limits.max_body_size;
    if max > 0 {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
    let upgrade = if req.version() == Version::HTTP_11 {
        forward::upgrade_request(req.headers())
    } else {
        None
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let mut uri_parts = http::uri::Parts::default();
    uri_parts.scheme = Some(http::uri::Scheme::HTTPS);
    uri_parts.authority = Some(shared.upstream_authority.clone());
    uri_parts.path_and_query = Some(pq);
    let uri = Uri::from_parts(uri_parts).map_err(|_| StatusCode::BAD_REQUEST)?;
    let (mut parts, body) = req.into_parts();
    let trusted = forward::is_trusted(conn.peer.ip(), &shared.trusted);
    forward::request_headers(
        &mut parts.headers,
        conn.peer.ip(),
        trusted,
        &host_value,
        rid,
        upgrade.as_ref(),
    );
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let fault = FaultFlag::default();
    let body = Guarded::new(body, max, shared.limits.body_timeout, fault.clone()).boxed();
    let mut up_req = Request::from_parts(parts, body);

    let sent = Instant::now();
    let exchange = async {
        match (&shared.h2, &upgrade) {
            (Some(h2), None) if h2.in_use() => {
                let h1_authority = up_req.uri().authority().cloned();
                as_http2(&mut up_req, host)?;
                match h2.request(up_req).await {
                    Ok(resp) => Ok(resp),
                    // `auto` and the upstream does not speak HTTP/2: this one goes by HTTP/1.1.
                    Err(failure) if !h2.in_use() && failure.unsent.is_some() => {
                        let mut req = failure.unsent.ok_or("request lost")?;
                        as_http1(&mut req, h1_authority, host_value)?;
                        shared.client.request(req).await.map_err(BoxError::from)
                    }
                    Err(failure) => Err(BoxError::from(failure.error)),
                }
            }
            _ => shared.client.request(up_req).await.map_err(BoxError::from),
        }
    };
    let result = tokio::time::timeout(shared.upstream_timeout, exchange).await;
    let mut resp = match result {
        Err(_) => {
            tracing::warn!(request_id = %rid.to_str().unwrap_or("-"), timeout = ?shared.upstream_timeout, "upstream timed out (PROXY_UPSTREAM_TIMEOUT)");
            return Err(StatusCode::GATEWAY_TIMEOUT);
        }
        Ok(Err(e)) => {
            return Err(match fault.get() {
                BodyFault::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                BodyFault::TooSlow => StatusCode::REQUEST_TIMEOUT,
                BodyFault::None => {
                    tracing::warn!(request_id = %rid.to_str().unwrap_or("-"), error = %common::error_chain(e.as_ref()), "upstream request failed");
                    StatusCode::BAD_GATEWAY
                }
            });
        }
        Ok(Ok(resp)) => resp,
    };
    let upstream_time = sent.elapsed();
    let addr = resp
        .extensions()
        .get::<UpstreamAddr>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |a| a.0);

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), Some(up)) = (client_upgrade, upgrade.as_ref()) else {
            return Err(StatusCode::BAD_GATEWAY);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, upstream)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(upstream),
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let (mut parts, _) = resp.into_parts();
        forward::response_headers(&mut parts.headers, Some(up));
        return Ok((
            Response::from_parts(
                parts,
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            ),
            addr,
            upstream_time,
        ));
    }

    let (mut parts, body) = resp.into_parts();
    forward::response_headers(&mut parts.headers, None);
    let body = body.map_err(BoxError::from).boxed();
    Ok((Response::from_parts(parts, body), addr, upstream_time))
}

type BoxError = crate::upstream::BoxError;

/// HTTP/2 carries the host in `:authority`, taken from the URI; a `Host` header beside it would
/// be redundant (RFC 9113 §8.3.1).
fn as_http2<B>(req: &mut Request<B>, host: http::uri::Authority) -> Result<(), BoxError> {
    let mut uri = std::mem::take(req.uri_mut()).into_parts();
    uri.authority = Some(host);
    *req.uri_mut() = Uri::from_parts(uri)?;
    req.headers_mut().remove(header::HOST);
    *req.version_mut() = Version::HTTP_2;
    Ok(())
}

/// Undo [`as_http2`]: the upstream's authority in the URI, the original host in `Host`.
fn as_http1<B>(
    req: &mut Request<B>,
    authority: Option<http::uri::Authority>,
    host: HeaderValue,
) -> Result<(), BoxError> {
    let mut uri = std::mem::take(req.uri_mut()).into_parts();
    uri.authority = authority;
    *req.uri_mut() = Uri::from_parts(uri)?;
    req.headers_mut().insert(header::HOST, host);
    *req.version_mut() = Version::HTTP_11;
    Ok(())
}
