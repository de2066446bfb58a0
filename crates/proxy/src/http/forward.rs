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
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{BodyFault, FaultFlag, Guarded, SendClock, UpstreamRead};
use super::context::Shared;
use super::error::Failure;
use super::headers;
use super::hygiene;
use super::serve_files;
use super::upgrade::Upgrade;
use crate::body::ProxyBody;
use crate::compress;
use crate::config::UpgradeProtocols;
use crate::config::settings::UPSTREAM_MAX_HEADER_SIZE;
use crate::inspect::Recording;
use crate::upstream::{Client, UpstreamAddr};

/// Upstream headers kept when an upstream error answer is replaced by our page.
const KEPT_ON_INTERCEPT: [header::HeaderName; 4] = [
    header::ALLOW,
    header::WWW_AUTHENTICATE,
    header::RETRY_AFTER,
    header::SET_COOKIE,
];

/// One HTTPS connection's share: the worker's state and the connection's facts (its SNI among
/// them), made once per connection so that a request clones one `Arc`.
pub struct Connection {
    pub shared: Arc<Shared>,
    pub conn: ConnInfo,
}

/// The HTTPS listener's service: forward to the upstream, or answer the error page.
pub async fn forward(
    connection: Arc<Connection>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (shared, conn): (&Shared, &ConnInfo) = (&connection.shared, &connection.conn);
    let mut started = shared.started(&req, conn);
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
    if let Some(matched) = serve_files::route(shared, &req) {
        // Boxed like the exchange below: a static file's state stays out of this future.
        let id = &started.request_id;
        let resp = Box::pin(serve_files::serve(
            shared, matched, conn.peer, &req, id, &accept, head,
        ))
        .await;
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
        shared,
        conn,
        req,
        &started.request_id,
        recording.as_ref(),
    ));
    let resp = match sent.await {
        Ok(answer) => {
            if let Some(r) = recording.as_mut() {
                r.upstream(answer.addr, answer.sent, answer.time);
                if let Some(label) = answer.label {
                    r.route(label);
                }
            }
            started.entry.upstream_addr = Some(answer.addr);
            started.entry.upstream_time = Some(answer.time);
            intercept(shared, answer.response, &started.request_id, &accept, head)
        }
        Err(failure) => {
            failure.log(started.id());
            let mut page = match &failure {
                // In development (the proxy's own CA), a typo in a host explains itself.
                Failure::NoRoute(hosts) | Failure::Misdirected(hosts)
                    if shared.config.tls.generate =>
                {
                    let explained = no_route(hosts);
                    let (status, rid) = (failure.status(), &started.request_id);
                    shared.page_explained(status, &explained, rid, &accept, head)
                }
                _ => shared.page(failure.status(), &started.request_id, &accept, head),
            };
            if matches!(failure, Failure::Unresolved(_)) {
                page.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(super::error::RETRY_AFTER_UNRESOLVED),
                );
            }
            if h1 && matches!(failure, Failure::Refused(_) | Failure::Misdirected(_)) {
                // As nginx does: a refused request's connection is not reused (its body, if
                // any, was never read). A misdirected one's TLS name serves nothing here.
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

/// The 404 page's sentence for a host no route serves: the hosts that are (at most 20).
fn no_route(hosts: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut list = hosts
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if hosts.len() > SHOWN {
        list.push_str(&format!(" and {} more", hosts.len() - SHOWN));
    }
    match hosts.is_empty() {
        true => format!(
            "No route serves this host: {} is empty.",
            crate::config::settings::ROUTES
        ),
        false => format!("No route serves this host. The routes serve: {list}."),
    }
}

/// What the upstream answered, from where, and how long its head took.
struct Answer {
    response: Response<ProxyBody>,
    addr: SocketAddr,
    /// When the request left for the upstream.
    sent: Instant,
    time: Duration,
    /// The route as the inspector labels it (only while it records).
    label: Option<Arc<str>>,
}

/// A request ready for the upstream.
struct Outgoing {
    /// The client of the route the request matched (kept to its end: a reload meanwhile does
    /// not move it).
    client: Arc<Client>,
    request: Request<ProxyBody>,
    /// The host the client named (sent as `Host`, or `:authority` over HTTP/2).
    host: Authority,
    upgrade: Option<Upgrade>,
    /// Set by the body guard when the body broke a limit while streaming.
    fault: FaultFlag,
    /// When the body last moved toward the upstream.
    clock: SendClock,
    /// The route as the inspector labels it (only while it records).
    label: Option<Arc<str>>,
}

/// Send one request upstream and turn its answer into the client's.
async fn proxy(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    recording: Option<&Recording>,
) -> Result<Answer, Failure> {
    let outgoing = prepare(shared, conn, req, request_id, recording)?;
    let sent = Instant::now();
    let resp = exchange(
        &outgoing.client,
        outgoing.request,
        outgoing.host,
        outgoing.upgrade.is_some(),
        &outgoing.clock,
    )
    .await
    .map_err(|failure| match (failure, outgoing.fault.get()) {
        (Failure::Upstream(_), BodyFault::TooLarge) => Failure::BodyTooLarge,
        (Failure::Upstream(_), BodyFault::TooSlow) => Failure::BodyTooSlow,
        (failure, _) => failure,
    })?;
    let tunnel_idle = shared.config.limits.tunnel_idle_timeout;
    let time = sent.elapsed();
    head_within(&resp, shared.config.limits.upstream_max_header_size)?;
    let addr = resp
        .extensions()
        .get::<UpstreamAddr>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |a| a.0);
    let read_gap = (outgoing.client.timeout(), request_id.clone());
    let response = respond(resp, outgoing.upgrade, tunnel_idle, read_gap)?;
    Ok(Answer {
        response,
        addr,
        sent,
        time,
        label: outgoing.label,
    })
}

/// Check the request and rewrite it for the upstream: its URI (the path normalised), its
/// headers (hop-by-hop gone, X-Forwarded-*, request id, names with `_`, cookie crumbs), its
/// body behind the size and read-gap guard.
fn prepare(
    shared: &Shared,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    request_id: &HeaderValue,
    recording: Option<&Recording>,
) -> Result<Outgoing, Failure> {
    let config = &shared.config;
    let limits = &config.limits;
    let hygiene::Checked { host, target } = hygiene::check(&req, limits)?;
    let host_value = HeaderValue::from_str(host.as_str()).map_err(|_| StatusCode::BAD_REQUEST)?;
    let routes = shared.routes.load();
    let found = routes.find(host.as_str(), target.path()).ok_or_else(|| {
        match conn.server_name.as_deref() {
            // The connection's TLS name serves nothing either: 421, the client may retry on a
            // connection made for the request's host (RFC 9110 §15.5.20).
            Some(sni) if !routes.serves_host(sni) => Failure::Misdirected(routes.hosts()),
            _ => Failure::NoRoute(routes.hosts()),
        }
    })?;
    let (route, client) = (found.route, found.value.clone());
    let max = route.max_body.unwrap_or(limits.max_body_size);
    if max > 0 && declared_length(req.headers()).is_some_and(|n| n > max) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE.into());
    }
    // What the connection lent this request stays here, never travels upstream.
    let lease = req.extensions_mut().remove::<Lease>();
    req.extensions_mut().remove::<RawHead>();
    let mut upgrade = match route.websocket {
        true => Upgrade::from_request(&mut req, &config.upgrade_protocols, lease),
        false => Upgrade::from_request(&mut req, &UpgradeProtocols::none(), lease),
    };
    if let (Some(u), Some(r)) = (upgrade.as_mut(), recording) {
        u.frames = Some(r.frames());
    }
    let (target, prefix) = match route.strip {
        true => strip(target, &route.prefix)?,
        false => (target, None),
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = client.uri(target).map_err(|_| StatusCode::BAD_REQUEST)?;
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
    headers::forwarded_route(&mut parts.headers, &host_value, prefix.as_ref());
    if !config.underscores_in_headers {
        headers::drop_underscored(&mut parts.headers);
    }
    headers::join_cookies(&mut parts.headers);
    let fault = FaultFlag::default();
    let clock = SendClock::default();
    let body = Guarded::new(body, max, limits.body_timeout, fault.clone(), clock.clone());
    let body = match recording {
        Some(r) => r.request_body(body).boxed(),
        None => body.boxed(),
    };
    let label = recording.map(|_| Arc::from(route.to_string()));
    Ok(Outgoing {
        client,
        request: Request::from_parts(parts, body),
        host,
        upgrade,
        fault,
        clock,
        label,
    })
}

/// `target` without the route's path `prefix` (`/` when nothing is left), and the prefix for
/// `X-Forwarded-Prefix`.
fn strip(
    target: PathAndQuery,
    prefix: &str,
) -> Result<(PathAndQuery, Option<HeaderValue>), Failure> {
    let rest = target.path().get(prefix.len()..).unwrap_or_default();
    let rest = if rest.is_empty() { "/" } else { rest };
    let stripped = match target.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let stripped = PathAndQuery::try_from(stripped).map_err(|_| StatusCode::BAD_REQUEST)?;
    let prefix = HeaderValue::from_str(prefix).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok((stripped, Some(prefix)))
}

/// `Content-Length` as a number, when the client declared one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Send, failing when the upstream stays silent for `PROXY_UPSTREAM_TIMEOUT`: it takes no
/// request body for that long, or gives no answer head that long after the body was sent (a
/// slow client's upload is the body guard's business, however long it takes in total).
async fn exchange(
    client: &Client,
    request: Request<ProxyBody>,
    host: Authority,
    upgrade: bool,
    clock: &SendClock,
) -> Result<Response<Incoming>, Failure> {
    let timeout = client.timeout();
    let send = client.send(request, host, upgrade);
    tokio::pin!(send);
    let sent = loop {
        let deadline = clock.deadline(timeout);
        let wake = deadline.unwrap_or_else(|| Instant::now() + timeout);
        tokio::select! {
            sent = send.as_mut() => break sent,
            _ = tokio::time::sleep_until(wake.into()) => {
                if clock.deadline(timeout).is_some_and(|d| d <= Instant::now()) {
                    return Err(Failure::Timeout(timeout));
                }
            }
        }
    };
    match sent {
        Err(e) if crate::upstream::is_unresolved(e.as_ref()) => Err(Failure::Unresolved(e)),
        Err(e) => Err(Failure::Upstream(e)),
        Ok(resp) => Ok(resp),
    }
}

/// An upstream answer head larger than `PROXY_UPSTREAM_MAX_HEADER_SIZE`.
#[derive(Debug, thiserror::Error)]
#[error("upstream answer head of {size} bytes, above {UPSTREAM_MAX_HEADER_SIZE} ({limit})")]
struct HeadTooLarge {
    size: u64,
    limit: u64,
}

/// `resp`'s head (measured as HTTP/1.1 carries it: `name: value` lines) within `limit`, else
/// a 502.
fn head_within<B>(resp: &Response<B>, limit: u64) -> Result<(), Failure> {
    let size = resp.headers().iter().fold(16u64, |n, (k, v)| {
        n + (k.as_str().len() + v.len() + 4) as u64
    });
    if size <= limit {
        return Ok(());
    }
    Err(Failure::Upstream(Box::new(HeadTooLarge { size, limit })))
}

/// The client's answer: hop-by-hop headers gone, the body streamed (cut when the upstream is
/// silent for `read_gap`'s timeout, see [`UpstreamRead`]); after a 101 to an upgrade request,
/// the tunnel (closed after `tunnel_idle` without traffic).
fn respond(
    resp: Response<Incoming>,
    upgrade: Option<Upgrade>,
    tunnel_idle: Duration,
    read_gap: (Duration, HeaderValue),
) -> Result<Response<ProxyBody>, Failure> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upgrade = upgrade.ok_or(Failure::UnexpectedUpgrade)?;
        return upgrade.tunnel(resp, tunnel_idle);
    }
    let (mut parts, body) = resp.into_parts();
    headers::response_headers(&mut parts.headers, None);
    let (gap, request_id) = read_gap;
    let body = UpstreamRead::new(body, gap, request_id).boxed();
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
