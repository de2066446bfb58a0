//! The HTTPS listener's service, as named steps: [`prepare`] (checks, the upstream URI, header
//! rewriting, the guarded body), [`exchange`] (send within the upstream timeout), [`respond`]
//! (the answer for the client, or the tunnel after a 101), then intercepting upstream errors.
//! Every failure is a [`Failure`], turned into the error page in one place.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::{ConnInfo, Lease, RawHead};
use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{BodyFault, FaultFlag, Guarded, ProxyBody};
use super::context::Shared;
use super::error::Failure;
use super::headers;
use super::hygiene;
use super::serve_files;
use super::upgrade::Upgrade;
use crate::compress;
use crate::inspect::Recording;
use crate::upstream::{BoxError, UpstreamAddr, UpstreamBody};

/// Upstream headers kept when an upstream error answer is replaced by our page.
const KEPT_ON_INTERCEPT: [header::HeaderName; 4] = [
    header::ALLOW,
    header::WWW_AUTHENTICATE,
    header::RETRY_AFTER,
    header::SET_COOKIE,
];

/// The HTTPS listener's service: forward to the upstream, or answer the error page.
pub async fn forward(
    shared: Arc<Shared>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let mut started = shared.started(&req, &conn);
    let mut recording = shared
        .inspect
        .as_ref()
        .map(|i| i.begin(&req, conn.peer, &started.request_id));
    let head = req.method() == Method::HEAD;
    let h1 = req.version() < Version::HTTP_2;
    // Only `Accept` (the error page) and `Accept-Encoding` (compression) matter for the answer;
    // keep them instead of the whole header map.
    let mut accept = HeaderMap::new();
    for name in [header::ACCEPT, header::ACCEPT_ENCODING] {
        for value in req.headers().get_all(&name) {
            accept.append(&name, value.clone());
        }
    }
    if let Some(resp) =
        serve_files::serve(&shared, conn.peer, &req, &started.request_id, &accept, head).await
    {
        let resp = compress::compress(&shared.config.compression, &accept, head, resp);
        let resp = match recording {
            Some(mut r) => {
                r.served_locally();
                r.respond(resp).map(BodyExt::boxed)
            }
            None => resp,
        };
        return Ok(shared.finish(resp, started, true));
    }
    // Boxed: the exchange's state is large; inline, every move of this future (into hyper's
    // connection, into its box) would copy it whole (callgrind: ~20k instructions a request).
    let sent = Box::pin(proxy(
        &shared,
        conn,
        req,
        &started.request_id,
        recording.as_ref(),
    ));
    let resp = match sent.await {
        Ok(answer) => {
            if let Some(r) = recording.as_mut() {
                r.upstream(answer.addr, answer.sent, answer.time);
            }
            started.entry.upstream_addr = Some(answer.addr);
            started.entry.upstream_time = Some(answer.time);
            intercept(&shared, answer.response, &started.request_id, &accept, head)
        }
        Err(failure) => {
            failure.log(started.id());
            let mut page = shared.page(failure.status(), &started.request_id, &accept, head);
            if matches!(failure, Failure::Unresolved(_)) {
                page.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(super::error::RETRY_AFTER_UNRESOLVED),
                );
            }
            if h1 && matches!(failure, Failure::Refused(_)) {
                // As nginx does: a refused request's connection is not reused (its body, if
                // any, was never read).
                page.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            page
        }
    };
    let resp = compress::compress(&shared.config.compression, &accept, head, resp);
    let resp = match recording {
        Some(r) => r.respond(resp).map(BodyExt::boxed),
        None => resp,
    };
    Ok(shared.finish(resp, started, true))
}

/// What the upstream answered, from where, and how long its head took.
struct Answer {
    response: Response<ProxyBody>,
    addr: SocketAddr,
    /// When the request left for the upstream.
    sent: Instant,
    time: Duration,
}

/// A request ready for the upstream.
struct Outgoing {
    request: Request<UpstreamBody>,
    /// The host the client named (sent as `Host`, or `:authority` over HTTP/2).
    host: Authority,
    upgrade: Option<Upgrade>,
    /// Set by the body guard when the body broke a limit while streaming.
    fault: FaultFlag,
}

/// Send one request upstream and turn its answer into the client's.
async fn proxy(
    shared: &Shared,
    conn: ConnInfo,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    recording: Option<&Recording>,
) -> Result<Answer, Failure> {
    let outgoing = prepare(shared, conn, req, request_id, recording)?;
    let sent = Instant::now();
    let resp = exchange(
        shared,
        outgoing.request,
        outgoing.host,
        outgoing.upgrade.is_some(),
    )
    .await
    .map_err(|failure| match (failure, outgoing.fault.get()) {
        (Failure::Upstream(_), BodyFault::TooLarge) => Failure::BodyTooLarge,
        (Failure::Upstream(_), BodyFault::TooSlow) => Failure::BodyTooSlow,
        (failure, _) => failure,
    })?;
    let tunnel_idle = shared.config.limits.tunnel_idle_timeout;
    let time = sent.elapsed();
    let addr = resp
        .extensions()
        .get::<UpstreamAddr>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |a| a.0);
    let response = respond(resp, outgoing.upgrade, tunnel_idle)?;
    Ok(Answer {
        response,
        addr,
        sent,
        time,
    })
}

/// Check the request and rewrite it for the upstream: its URI (the path normalised), its
/// headers (hop-by-hop gone, X-Forwarded-*, request id, names with `_`, cookie crumbs), its
/// body behind the size and read-gap guard.
fn prepare(
    shared: &Shared,
    conn: ConnInfo,
    mut req: Request<Incoming>,
    request_id: &HeaderValue,
    recording: Option<&Recording>,
) -> Result<Outgoing, Failure> {
    let config = &shared.config;
    let limits = &config.limits;
    let hygiene::Checked { host, target } = hygiene::check(&req, limits)?;
    let host_value = HeaderValue::from_str(host.as_str()).map_err(|_| StatusCode::BAD_REQUEST)?;
    let max = limits.max_body_size;
    if max > 0 && declared_length(req.headers()).is_some_and(|n| n > max) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE.into());
    }
    // What the connection lent this request stays here, never travels upstream.
    let lease = req.extensions_mut().remove::<Lease>();
    req.extensions_mut().remove::<RawHead>();
    let mut upgrade = Upgrade::from_request(&mut req, &config.upgrade_protocols, lease);
    if let (Some(u), Some(r)) = (upgrade.as_mut(), recording) {
        u.frames = Some(r.frames());
    }
    let (mut parts, body) = req.into_parts();
    parts.uri = shared
        .upstream
        .uri(target)
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    parts.version = Version::HTTP_11;
    let peer = conn.peer.ip();
    let trusted = headers::is_trusted(peer, &shared.config.trusted_proxies);
    let protocol = upgrade.as_ref().map(|u| &u.protocol);
    headers::request_headers(
        &mut parts.headers,
        peer,
        trusted,
        &host_value,
        request_id,
        protocol,
    );
    if !config.underscores_in_headers {
        headers::drop_underscored(&mut parts.headers);
    }
    headers::join_cookies(&mut parts.headers);
    let fault = FaultFlag::default();
    let body = Guarded::new(body, max, limits.body_timeout, fault.clone());
    let body = match recording {
        Some(r) => r.request_body(body).boxed(),
        None => body.boxed(),
    };
    Ok(Outgoing {
        request: Request::from_parts(parts, body),
        host,
        upgrade,
        fault,
    })
}

/// `Content-Length` as a number, when the client declared one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Send within `PROXY_UPSTREAM_TIMEOUT` (for the answer head).
async fn exchange(
    shared: &Shared,
    request: Request<UpstreamBody>,
    host: Authority,
    upgrade: bool,
) -> Result<Response<Incoming>, Failure> {
    let timeout = shared.config.upstream_timeout;
    match tokio::time::timeout(timeout, shared.upstream.send(request, host, upgrade)).await {
        Err(_) => Err(Failure::Timeout(timeout)),
        Ok(Err(e)) if crate::upstream::is_unresolved(e.as_ref()) => Err(Failure::Unresolved(e)),
        Ok(Err(e)) => Err(Failure::Upstream(e)),
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// The client's answer: hop-by-hop headers gone, the body streamed; after a 101 to an upgrade
/// request, the tunnel (closed after `tunnel_idle` without traffic).
fn respond(
    resp: Response<Incoming>,
    upgrade: Option<Upgrade>,
    tunnel_idle: Duration,
) -> Result<Response<ProxyBody>, Failure> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upgrade = upgrade.ok_or(Failure::UnexpectedUpgrade)?;
        return upgrade.tunnel(resp, tunnel_idle);
    }
    let (mut parts, body) = resp.into_parts();
    headers::response_headers(&mut parts.headers, None);
    let body = body.map_err(BoxError::from).boxed();
    Ok(Response::from_parts(parts, body))
}

/// With `PROXY_INTERCEPT_ERRORS`, an upstream answer ≥ 400 becomes our page (same status; a
/// few headers the client needs are kept).
fn intercept(
    shared: &Shared,
    resp: Response<ProxyBody>,
    request_id: &HeaderValue,
    accept: &HeaderMap,
    head: bool,
) -> Response<ProxyBody> {
    if !shared.config.intercept_errors || resp.status().as_u16() < 400 {
        return resp;
    }
    let mut ours = shared.page(resp.status(), request_id, accept, head);
    for name in KEPT_ON_INTERCEPT {
        for v in resp.headers().get_all(&name) {
            ours.headers_mut().append(name.clone(), v.clone());
        }
    }
    ours
}
