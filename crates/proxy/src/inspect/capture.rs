//! Recording one exchange while it is forwarded: its head when it arrives, the upstream's
//! address and timing, and both bodies through a [`Tee`] that copies their first part into the
//! capture as the frames pass (nothing is buffered on the forward path; past the body limit
//! bytes are only counted). The entry is kept when the answer's body ends or is dropped.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};

use super::Inspector;
use super::frames::{FRAMES_BYTES, Frames};
use super::store::{BodyBuf, Entry, Fields, Slot, Timing};

/// Per-entry bookkeeping counted against the budget besides header bytes.
const ENTRY_OVERHEAD: u64 = 512;

/// An exchange being recorded; kept when its answer's body ends.
pub struct Recording(Box<Draft>);

struct Draft {
    inspector: Arc<Inspector>,
    id: u64,
    replay_of: Option<u64>,
    at: Instant,
    time: time::OffsetDateTime,
    client: SocketAddr,
    method: Method,
    host: String,
    target: String,
    protocol: &'static str,
    request_id: String,
    route: Arc<str>,
    upstream_addr: Option<SocketAddr>,
    timing: Timing,
    request_headers: Fields,
    request_body: Arc<Slot>,
    frames: OnceLock<Arc<Frames>>,
}

impl Recording {
    pub(super) fn new<B>(
        inspector: Arc<Inspector>,
        req: &Request<B>,
        client: SocketAddr,
        request_id: &HeaderValue,
    ) -> Self {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                let h = req.headers().get(http::header::HOST)?;
                h.to_str().ok().map(str::to_owned)
            })
            .unwrap_or_default();
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_owned());
        let replay_of = inspector.replay_of(client);
        Recording(Box::new(Draft {
            id: inspector.store.next_id(),
            replay_of,
            at: Instant::now(),
            time: time::OffsetDateTime::now_utc(),
            client,
            method: req.method().clone(),
            host,
            target,
            protocol: protocol(req.version()),
            request_id: request_id.to_str().unwrap_or("-").to_owned(),
            route: inspector.route.clone(),
            upstream_addr: None,
            timing: Timing::default(),
            request_headers: Fields::copy(req.headers()),
            request_body: Arc::default(),
            frames: OnceLock::new(),
            inspector,
        }))
    }

    /// The request body, copied into the capture as it streams upstream.
    pub fn request_body<B>(&self, body: B) -> Tee<B> {
        let buf = BodyBuf::new(self.0.inspector.store.budget.clone());
        Tee::new(
            body,
            buf,
            self.0.inspector.body_limit,
            Sink::Slot(self.0.request_body.clone()),
        )
    }

    /// Where the request went and how long its answer head took.
    pub fn upstream(&mut self, addr: SocketAddr, sent: Instant, ttfb: Duration) {
        self.0.upstream_addr = Some(addr);
        self.0.timing.queued = Some(sent.saturating_duration_since(self.0.at));
        self.0.timing.ttfb = Some(ttfb);
    }

    /// Where the frames of this exchange's WebSocket tunnel go.
    pub fn frames(&self) -> Arc<Frames> {
        self.0.frames.get_or_init(Arc::default).clone()
    }

    /// Forwarded on `label`'s route (`PROXY_ROUTES`, or `PROXY_UPSTREAM`'s `*` route).
    pub fn route(&mut self, label: Arc<str>) {
        self.0.route = label;
    }

    /// Answered by the proxy itself from a folder (`PROXY_STATIC`).
    pub fn served_locally(&mut self) {
        self.0.route = self.0.inspector.local.clone();
    }

    /// The answer, its body copied into the capture as it streams to the client; the entry is
    /// kept when that body ends or is dropped.
    pub fn respond<B>(self, resp: Response<B>) -> Response<Tee<B>> {
        let (parts, body) = resp.into_parts();
        let inspector = &self.0.inspector;
        let buf = BodyBuf::new(inspector.store.budget.clone());
        let limit = inspector.body_limit;
        inspector.metrics.started();
        let head = Head {
            status: parts.status.as_u16(),
            headers: Fields::copy(&parts.headers),
        };
        let tee = Tee::new(body, buf, limit, Sink::Keep(self.0, Box::new(head)));
        Response::from_parts(parts, tee)
    }
}

/// The answer head, kept with the entry.
struct Head {
    status: u16,
    headers: Fields,
}

/// Where a tee's bytes go when its body ends.
enum Sink {
    /// The request body: into the entry's slot.
    Slot(Arc<Slot>),
    /// The answer's body: finish and keep the entry.
    Keep(Box<Draft>, Box<Head>),
}

/// A body passed through unchanged, its first bytes copied into the capture.
pub struct Tee<B> {
    inner: B,
    buf: Option<BodyBuf>,
    limit: u64,
    sink: Option<Sink>,
}

impl<B> Tee<B> {
    fn new(inner: B, buf: BodyBuf, limit: u64, sink: Sink) -> Self {
        Tee {
            inner,
            buf: Some(buf),
            limit,
            sink: Some(sink),
        }
    }

    fn end(&mut self) {
        let (Some(buf), Some(sink)) = (self.buf.take(), self.sink.take()) else {
            return;
        };
        match sink {
            Sink::Slot(slot) => slot.set(buf),
            Sink::Keep(draft, head) => keep(*draft, *head, buf),
        }
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(buf)) = (frame.data_ref(), this.buf.as_mut()) {
                    buf.push(data, this.limit);
                }
            }
            Poll::Ready(None) => this.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Tee<B> {
    fn drop(&mut self) {
        self.end();
    }
}

/// The answer is over: count it and keep the entry.
fn keep(draft: Draft, head: Head, body: BodyBuf) {
    let Draft {
        inspector,
        id,
        replay_of,
        at,
        time,
        client,
        method,
        host,
        target,
        protocol,
        request_id,
        route,
        upstream_addr,
        mut timing,
        request_headers,
        request_body,
        frames,
    } = draft;
    timing.total = at.elapsed();
    let frames = frames.into_inner();
    let bytes_in = request_body.with(|b| b.map_or(0, |b| b.total));
    inspector
        .metrics
        .finished(&route, head.status, timing.total, bytes_in, body.total);
    let head_bytes = ENTRY_OVERHEAD
        + request_headers.size()
        + head.headers.size()
        + (host.len() + target.len() + request_id.len()) as u64
        + frames.as_ref().map_or(0, |_| FRAMES_BYTES);
    let budget = inspector.store.budget.clone();
    budget.force(head_bytes);
    inspector.store.publish(Entry {
        id,
        replay_of,
        time,
        client,
        method,
        host,
        target,
        protocol,
        request_id,
        route,
        upstream_addr,
        status: head.status,
        timing,
        request_headers,
        response_headers: head.headers,
        request_body,
        response_body: body,
        frames,
        head_bytes,
        budget,
    });
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}
