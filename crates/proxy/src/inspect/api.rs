//! The inspector's listener (plain HTTP, never on the public listeners): the page at `/`, the
//! JSON API under `/api/` (list with filters, one entry, replay, curl, HAR, the live stream of
//! new entries as Server-Sent Events) and `/metrics`. Only requests naming it by an IP address
//! or a `localhost` name are answered (a guard against DNS rebinding); replays need a JSON
//! body (so no plain HTML form of another site can trigger one).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::server::{self, BoxError, Transport};
use http::{Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::Inspector;
use super::metrics::Gauges;
use super::replay::{self, Edit};
use super::view::{self, Filter};
use crate::config::settings::INSPECT_BODY_LIMIT;
use crate::tls::CertStore;

/// Live streams served at once; more get 503.
const MAX_STREAMS: usize = 32;
/// Replays in flight at once; more get 503.
const MAX_REPLAYS: usize = 8;
/// A comment line sent this often on an idle stream (proxies and browsers keep it open).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The list answers at most this many entries unless `limit` asks for fewer.
const LIST_MAX: usize = 1000;
/// Room for headers and JSON around an edited replay body.
const EDIT_OVERHEAD: u64 = 64 * 1024;

/// Resolves the upstream now: each address, and whether it is up.
pub type UpstreamProbe = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Option<Vec<(SocketAddr, bool)>>> + Send>> + Send + Sync,
>;

/// What `/metrics` and replay read from the running proxy.
pub struct Sources {
    /// The HTTPS listener replays are sent through.
    pub https: SocketAddr,
    pub certs: Arc<CertStore>,
    /// Each public listener's connection budget.
    pub listeners: Vec<(&'static str, Arc<Semaphore>)>,
    pub max_connections: usize,
    /// Permits held by workers waiting in `accept` (one per worker and listener).
    pub accepting: usize,
    pub upstreams: UpstreamProbe,
}

struct Ctx {
    inspector: Arc<Inspector>,
    sources: Sources,
    streams: AtomicUsize,
    replays: Arc<Semaphore>,
    shutdown: CancellationToken,
}

type Out = BoxBody<Bytes, BoxError>;

/// Serve the inspector on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    inspector: Arc<Inspector>,
    sources: Sources,
    limits: server::Limits,
    shutdown: CancellationToken,
) {
    let ctx = Arc::new(Ctx {
        inspector,
        sources,
        streams: AtomicUsize::new(0),
        replays: Arc::new(Semaphore::new(MAX_REPLAYS)),
        shutdown: shutdown.clone(),
    });
    server::serve(
        listener,
        Transport::Plain,
        limits,
        move |_conn| {
            let ctx = ctx.clone();
            hyper::service::service_fn(move |req| handle(ctx.clone(), req))
        },
        shutdown.cancelled_owned(),
    )
    .await;
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<Out>, Infallible> {
    if !local_name(&req) {
        return Ok(text(
            StatusCode::MISDIRECTED_REQUEST,
            "the inspector answers only to an IP address or a localhost name\n",
        ));
    }
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let i = &ctx.inspector;
    let resp = match (get, parts.as_slice()) {
        (true, [""]) => page(),
        (true, ["metrics"]) => metrics(&ctx).await,
        (true, ["api", "entries"]) => list(i, req.uri().query()),
        (true, ["api", "events"]) => events(&ctx, req.uri().query()),
        (true, ["api", "har"]) => {
            let all = i.store.newest_first();
            json_ok(&super::export::har(
                all.iter().rev().map(|e| &**e),
                i.mask,
                i.body_limit,
            ))
        }
        (_, ["api", "entries", id, rest @ ..]) => {
            match id.parse().ok().and_then(|id| i.store.get(id)) {
                None => not_found(),
                Some(e) => match (get, rest) {
                    (true, []) => json_ok(&view::detail(&e, i.mask, i.body_limit)),
                    (true, ["har"]) => json_ok(&super::export::har(
                        std::iter::once(&*e),
                        i.mask,
                        i.body_limit,
                    )),
                    (true, ["curl"]) => text(StatusCode::OK, &super::export::curl(&e, i.mask)),
                    (false, ["replay"]) if req.method() == Method::POST => {
                        replay_entry(&ctx, &e, req).await
                    }
                    _ => not_found(),
                },
            }
        }
        _ => not_found(),
    };
    Ok(resp)
}

/// `Host` is an IP address or `localhost` (or a name under it): not a rebound foreign name.
fn local_name<B>(req: &Request<B>) -> bool {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost")
}

fn page() -> Response<Out> {
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from_static(super::page::PAGE.as_bytes()),
    )
}

fn list(i: &Inspector, query: Option<&str>) -> Response<Out> {
    let filter = Filter::from_query(query);
    let limit = filter.limit.unwrap_or(LIST_MAX).min(LIST_MAX);
    let entries: Vec<Value> = i
        .store
        .newest_first()
        .iter()
        .filter(|e| filter.matches(e))
        .take(limit)
        .map(|e| view::summary(e))
        .collect();
    json_ok(
        &json!({"entries": entries, "kept": i.store.len(), "memory_used": i.store.budget.used(), "memory_cap": i.store.budget.cap()}),
    )
}

async fn replay_entry(ctx: &Ctx, e: &super::store::Entry, req: Request<Incoming>) -> Response<Out> {
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json (an empty object replays as captured)",
        );
    }
    let limit = ctx.inspector.body_limit + EDIT_OVERHEAD;
    let bytes = match Limited::new(
        req.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .collect()
    .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the edit is larger than {INSPECT_BODY_LIMIT} allows"),
            );
        }
    };
    let edit: Edit = if bytes.iter().all(u8::is_ascii_whitespace) {
        Edit::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(edit) => edit,
            Err(err) => return error(StatusCode::BAD_REQUEST, &format!("bad edit: {err}")),
        }
    };
    let Ok(_slot) = ctx.replays.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many replays in flight",
        );
    };
    match replay::replay(&ctx.inspector, ctx.sources.https, e, edit).await {
        Ok(id) => match ctx.inspector.store.get(id) {
            Some(new) => json_ok(&view::summary(&new)),
            None => json_ok(&json!({"id": id})),
        },
        Err(err @ (replay::ReplayError::Edit(_) | replay::ReplayError::PartialBody { .. })) => {
            error(StatusCode::BAD_REQUEST, &err.to_string())
        }
        Err(err) => error(StatusCode::BAD_GATEWAY, &err.to_string()),
    }
}

async fn metrics(ctx: &Ctx) -> Response<Out> {
    let s = &ctx.sources;
    let info = s.certs.info();
    let store = &ctx.inspector.store;
    let gauges = Gauges {
        connections: s
            .listeners
            .iter()
            .map(|(name, permits)| {
                let open = s
                    .max_connections
                    .saturating_sub(permits.available_permits());
                (*name, open.saturating_sub(s.accepting))
            })
            .collect(),
        upstreams: (s.upstreams)().await,
        route: ctx.inspector.route.clone(),
        cert_expiry: info.not_after.unix_timestamp(),
        cert_reloads: s.certs.changes(),
        cert_reload_failing: s.certs.last_reload_error().is_some(),
        entries: store.len(),
        memory_used: store.budget.used(),
        memory_cap: store.budget.cap(),
    };
    let body = ctx.inspector.metrics.render(&gauges);
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        body.into(),
    )
}

/// `text/event-stream` of new entries (`event: entry`, the summary as data), filtered like the
/// list; ends at shutdown.
fn events(ctx: &Arc<Ctx>, query: Option<&str>) -> Response<Out> {
    if ctx.streams.fetch_add(1, Ordering::Relaxed) >= MAX_STREAMS {
        ctx.streams.fetch_sub(1, Ordering::Relaxed);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams open",
        );
    }
    let filter = Filter::from_query(query);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut news = ctx.inspector.store.subscribe();
        let mut tick = tokio::time::interval(KEEPALIVE);
        let _ = tx.send(Bytes::from_static(b"retry: 2000\n\n")).await;
        loop {
            let line = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = tx.closed() => break,
                _ = tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
                r = news.recv() => match r {
                    Ok(id) => match ctx.inspector.store.get(id).filter(|e| filter.matches(e)) {
                        Some(e) => Bytes::from(format!("event: entry\ndata: {}\n\n", view::summary(&e))),
                        None => continue,
                    },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        Bytes::from(format!("event: lagged\ndata: {n}\n\n"))
                    }
                    Err(_) => break,
                },
            };
            if tx.send(line).await.is_err() {
                break;
            }
        }
        ctx.streams.fetch_sub(1, Ordering::Relaxed);
    });
    let mut resp = Response::new(Stream(rx).boxed());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// A body fed by a channel, ending when the sender goes.
struct Stream(mpsc::Receiver<Bytes>);

impl Body for Stream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn respond(status: StatusCode, ctype: &'static str, body: Bytes) -> Response<Out> {
    let mut resp = Response::new(Full::new(body).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

fn json_ok(v: &Value) -> Response<Out> {
    respond(
        StatusCode::OK,
        "application/json",
        Bytes::from(v.to_string()),
    )
}

fn error(status: StatusCode, message: &str) -> Response<Out> {
    let body = json!({"error": message}).to_string();
    respond(status, "application/json", Bytes::from(body))
}

fn text(status: StatusCode, t: &str) -> Response<Out> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(t.to_owned()),
    )
}

fn not_found() -> Response<Out> {
    error(StatusCode::NOT_FOUND, "no such entry or endpoint")
}
