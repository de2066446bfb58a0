//! One connection's life after accept: hyper (HTTP/1.1, or HTTP/2 when ALPN chose it) serves
//! it while a periodic check enforces the header timeout before the first request, the idle timeout, the keep-alive limits (requests,
//! lifetime) and the drop of a connection that makes no progress after it was asked to close;
//! shutdown closes it gracefully. The service is wrapped ([`Counted`]) to count requests, mark
//! the last one, and hand an HTTP/1 request the connection's [`Lease`] (when it asks for an
//! upgrade) and its [`RawHead`] (when the head held more than one framing field), and to give
//! each answer its send clock ([`send_watch`](super::send_watch)).
//!
//! Idle means no request: none open, and none started or finished for the idle timeout; bytes
//! alone (HTTP/2 PINGs, a trickled header) do not keep a connection. While a request is open,
//! the byte clock still closes a connection on which nothing moves (a client that stopped
//! reading).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Tracked};
use super::builders::Builders;
use super::cleartext::NoPriorKnowledge;
use super::lease::Lease;
use super::limits::Limits;
use super::rawhead::{HeadScanner, Heads};
use super::send_watch::{self, Watch};
use super::service::HttpService;

/// What every connection of one listener is served with, shared: a connection holds one `Arc`
/// of it rather than its own copies (an idle connection's task stays small).
pub(super) struct Site {
    pub(super) builders: Builders,
    /// A cleartext listener: HTTP/1.1 only (the HTTP/2 preface is refused).
    pub(super) cleartext: bool,
    pub(super) limits: Limits,
    /// Cancelled on shutdown: connections finish their requests and close.
    pub(super) closing: CancellationToken,
    /// Cancelled once the drain timeout is over: whatever is left is closed.
    pub(super) aborting: CancellationToken,
}

/// One accepted connection and what it is served with.
pub(super) struct Conn {
    pub(super) site: Arc<Site>,
    pub(super) lease: Lease,
    pub(super) peer: SocketAddr,
    /// Changes at the listener's connection limit: close if idle ([`super::RECLAIM_AGE`]).
    pub(super) reclaim: tokio::sync::watch::Receiver<u64>,
}

/// The protocol a connection speaks: HTTP/2 only when its TLS handshake chose it (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    H1,
    H2,
}

impl Proto {
    pub(super) fn of_alpn(alpn: Option<&[u8]>) -> Self {
        match alpn {
            Some(b"h2") => Proto::H2,
            _ => Proto::H1,
        }
    }
}

/// What the periodic check decided about a connection.
enum Verdict {
    Fine,
    /// Close gracefully: in-flight requests complete first.
    Close,
    /// Drop it now.
    Drop,
}

impl Conn {
    /// Serve the connection until it ends; on shutdown, when idle, or at a keep-alive limit,
    /// shut it down gracefully (in-flight requests complete, then it closes).
    pub(super) async fn drive<IO, S>(self, io: IO, service: S, proto: Proto)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        S: HttpService,
    {
        let site = &*self.site;
        let bytes = Activity::default();
        let mut io = Tracked::new(io, bytes.clone());
        if site.cleartext {
            io = io.observed(Box::new(NoPriorKnowledge::default()));
        }
        // HTTP/1 heads only: an HTTP/2 connection carries no scanner (nor its queue).
        let heads = (proto == Proto::H1).then(Heads::default);
        if let Some(heads) = &heads {
            let scanner = HeadScanner::new(heads.clone(), site.limits.read_buffer());
            io = io.observed(Box::new(scanner));
        }
        let io = TokioIo::new(io);
        let counts = Counts::new(&site.limits);
        let service = Counted {
            inner: service,
            counts: counts.clone(),
            heads,
            lease: self.lease.clone(),
        };
        // Each protocol's connection boxed on its own: an idle HTTP/1.1 connection does not
        // carry room for an HTTP/2 one (and the reverse).
        let b = &site.builders;
        match proto {
            Proto::H1 => {
                let conn = Box::pin(b.h1.serve_connection(io, service).with_upgrades());
                self.supervise(conn, |c| c.graceful_shutdown(), &bytes, &counts)
                    .await;
            }
            Proto::H2 => {
                let conn = Box::pin(b.h2.serve_connection(io, service));
                self.supervise(conn, |c| c.graceful_shutdown(), &bytes, &counts)
                    .await;
            }
        }
    }

    /// Run `conn` to its end, closing it gracefully (`graceful`) or dropping it when the
    /// periodic check, the shutdown or the keep-alive limits say so.
    async fn supervise<C, E>(
        &self,
        mut conn: Pin<Box<C>>,
        graceful: impl Fn(Pin<&mut C>),
        bytes: &Activity,
        counts: &Counts,
    ) where
        C: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let peer = self.peer;
        let site = &*self.site;
        let limits = &site.limits;
        let shortest = [
            Some(limits.idle_timeout),
            Some(limits.header_read_timeout),
            Some(limits.send_timeout),
            limits.max_lifetime,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(limits.idle_timeout);
        let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        let mut check = tokio::time::interval(tick);
        let mut stopping: Option<Instant> = None;
        let mut reclaim = self.reclaim.clone();
        let mut reclaiming = true;
        loop {
            let close = tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                // Past the drain timeout: close whatever is left.
                _ = site.aborting.cancelled() => return,
                _ = site.closing.cancelled(), if stopping.is_none() => true,
                _ = counts.0.retire.cancelled(), if stopping.is_none() => {
                    tracing::debug!(%peer, "keep-alive limit reached; closing after this answer");
                    true
                }
                r = reclaim.changed(), if reclaiming => {
                    reclaiming = r.is_ok();
                    let c = &counts.0;
                    if reclaiming && c.open.load(Ordering::Acquire) == 0 && c.requests.idle_for() >= super::RECLAIM_AGE {
                        tracing::debug!(%peer, "at the connection limit: closing an idle connection");
                        return;
                    }
                    false
                }
                _ = check.tick() => match self.verdict(bytes, counts, stopping, tick) {
                    Verdict::Fine => false,
                    Verdict::Close => true,
                    Verdict::Drop => return,
                },
            };
            if close && stopping.is_none() {
                stopping = Some(Instant::now());
                graceful(conn.as_mut());
            }
        }
    }

    /// The periodic check: header timeout before the first request, idleness, lifetime, and a
    /// connection that makes no progress after it was asked to close.
    fn verdict(
        &self,
        bytes: &Activity,
        counts: &Counts,
        stopping: Option<Instant>,
        tick: Duration,
    ) -> Verdict {
        let peer = self.peer;
        let limits = &self.site.limits;
        let c = &counts.0;
        let open = c.open.load(Ordering::Acquire);
        if c.started.load(Ordering::Acquire) == 0
            && c.opened.elapsed() >= limits.header_read_timeout
        {
            // No complete request head since the connection opened: silent after the
            // handshake, or trickling an HTTP/2 HEADERS frame (hyper's own header timer covers
            // HTTP/1 only, and only once it knows the version).
            tracing::debug!(%peer, "no request within the header timeout; closing");
            return Verdict::Drop;
        }
        if counts.send_timed_out(limits.send_timeout) {
            // HTTP/1.1: the client took no byte of the answer for the send timeout (nginx
            // `send_timeout` closes the connection too). HTTP/2 streams time out one by one.
            tracing::info!(%peer, timeout = ?limits.send_timeout, "the client took no byte of an answer for the send timeout; closing");
            return Verdict::Drop;
        }
        let Some(since) = stopping else {
            if open == 0 && c.requests.idle_for() >= limits.idle_timeout {
                tracing::debug!(%peer, "idle timeout; closing the connection");
                return Verdict::Close;
            }
            if bytes.idle_for() >= limits.idle_timeout {
                tracing::debug!(%peer, "nothing moved for the idle timeout; closing");
                return Verdict::Close;
            }
            if counts.past_lifetime() {
                tracing::debug!(%peer, "keep-alive lifetime reached; closing");
                return Verdict::Close;
            }
            return Verdict::Fine;
        };
        let grace = limits.idle_timeout + 2 * tick;
        if bytes.idle_for() >= grace && c.pending.load(Ordering::Acquire) == 0 {
            // Asked to close, yet nothing moves and no request waits for its answer: a client
            // that stopped reading, or an HTTP/2 peer that never acks the GOAWAY ping (nginx
            // `send_timeout`). Drop it.
            tracing::debug!(%peer, "no progress after graceful close; dropping the connection");
            return Verdict::Drop;
        }
        if open == 0 && since.elapsed() >= grace {
            // Asked to close, nothing open, and still there (an HTTP/2 peer that keeps sending
            // PINGs but never completes the GOAWAY).
            tracing::debug!(%peer, "still open long after graceful close; dropping the connection");
            return Verdict::Drop;
        }
        Verdict::Fine
    }
}

/// Requests a connection may abandon before their answer head (HTTP/2 RST_STREAM, a timeout)
/// before it is closed gracefully (GOAWAY), once they are more than half of its requests: each
/// one leaves work behind upstream, so one client cannot keep cancelling at will (issue 14 §1).
pub const MAX_CANCELLED: usize = 100;

/// Requests of one connection, shared by the service wrapper and the periodic check.
#[derive(Clone)]
struct Counts(Arc<CountsInner>);

struct CountsInner {
    /// Answer heads not ready yet: a stalled connection is only cut while none is legitimately
    /// waiting (e.g. for a slow upstream).
    pending: AtomicUsize,
    /// Requests whose answer has not ended (head and body).
    open: AtomicUsize,
    /// Requests whose head arrived, ever.
    started: AtomicUsize,
    /// Requests abandoned before their answer head.
    cancelled: AtomicUsize,
    /// When a request last started or finished.
    requests: Activity,
    /// Cancelled once the connection has taken its last request: close gracefully.
    retire: CancellationToken,
    opened: Instant,
    /// HTTP/1.1: the send clock of the answer in progress.
    answering: Mutex<Option<Arc<Watch>>>,
    max_requests: Option<usize>,
    max_lifetime: Option<Duration>,
}

impl Counts {
    fn new(limits: &Limits) -> Self {
        Counts(Arc::new(CountsInner {
            pending: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            requests: Activity::default(),
            retire: CancellationToken::new(),
            opened: Instant::now(),
            answering: Mutex::new(None),
            max_requests: limits.max_requests,
            max_lifetime: limits.max_lifetime,
        }))
    }

    fn past_lifetime(&self) -> bool {
        self.0
            .max_lifetime
            .is_some_and(|l| self.0.opened.elapsed() >= l)
    }

    /// Whether the HTTP/1.1 answer in progress waited for the client for `timeout`.
    fn send_timed_out(&self, timeout: Duration) -> bool {
        let answering = self
            .0
            .answering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        answering
            .as_ref()
            .and_then(|w| w.deadline(timeout))
            .is_some_and(|d| d <= Instant::now())
    }

    /// Request number `n` is the connection's last (a keep-alive limit).
    fn is_last(&self, n: usize) -> bool {
        self.0.max_requests.is_some_and(|m| n >= m) || self.past_lifetime()
    }
}

/// Decrements a counter of [`Counts`] when dropped; `finish` also marks request activity. A
/// `pending` guard dropped before it is `done` counts a cancelled request.
struct Guard {
    counts: Counts,
    finish: bool,
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let c = &self.counts.0;
        if self.finish {
            c.open.fetch_sub(1, Ordering::AcqRel);
            c.requests.touch();
        } else {
            c.pending.fetch_sub(1, Ordering::AcqRel);
            if !self.done {
                let n = c.cancelled.fetch_add(1, Ordering::AcqRel) + 1;
                if n > MAX_CANCELLED && n * 2 > c.started.load(Ordering::Acquire) {
                    c.retire.cancel();
                }
            }
        }
    }
}

/// A service that keeps [`Counts`], closes HTTP/1.1 connections after their last request, and
/// hands HTTP/1 requests the connection's [`Lease`] (upgrades) and their [`RawHead`].
struct Counted<S> {
    inner: S,
    counts: Counts,
    /// HTTP/1 only.
    heads: Option<Heads>,
    lease: Lease,
}

impl<S, B, RB> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<Finishing<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        let c = &self.counts.0;
        c.pending.fetch_add(1, Ordering::AcqRel);
        c.open.fetch_add(1, Ordering::AcqRel);
        let n = c.started.fetch_add(1, Ordering::AcqRel) + 1;
        c.requests.touch();
        let mut pending = Guard {
            counts: self.counts.clone(),
            finish: false,
            done: false,
        };
        let open = Guard {
            counts: self.counts.clone(),
            finish: true,
            done: false,
        };
        if self.counts.is_last(n) {
            c.retire.cancel();
        }
        let h1 = req.version() < Version::HTTP_2;
        let watch = Watch::new();
        if h1 {
            *c.answering.lock().unwrap_or_else(PoisonError::into_inner) = Some(watch.clone());
        } else {
            send_watch::watch_next(watch.clone());
        }
        if h1 {
            // Only a head that says more than the parsed request is worth an extension.
            if let Some(raw) = self
                .heads
                .as_ref()
                .and_then(|h| h.take(req.method(), req.uri()))
                && raw.content_length_fields + raw.transfer_encoding_fields > 1
            {
                req.extensions_mut().insert(raw);
            }
            // Only an upgrade can outlive the exchange.
            if req.headers().contains_key(header::UPGRADE) {
                req.extensions_mut().insert(self.lease.clone());
            }
        }
        // Boxed where it is made: the service's future (the proxy's is large) is then copied
        // once, not again into this wrapper's state and again into its box.
        let fut = Box::pin(self.inner.call(req));
        Box::pin(async move {
            let resp = fut.await;
            watch.handed();
            pending.done = true;
            drop(pending);
            resp.map(|resp| {
                let (mut parts, body) = resp.into_parts();
                // The last answer on an HTTP/1.1 connection says so (hyper then closes it).
                if h1 && parts.status != StatusCode::SWITCHING_PROTOCOLS && open.counts.is_last(n) {
                    parts
                        .headers
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Response::from_parts(
                    parts,
                    Finishing {
                        inner: body,
                        watch,
                        _open: open,
                    },
                )
            })
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its send clock (handed to the client after each frame,
    /// working while it waits for its source) and ends its request's `open` count when it is
    /// dropped (sent, failed or abandoned).
    struct Finishing<B> {
        #[pin]
        inner: B,
        watch: Arc<Watch>,
        _open: Guard,
    }

    impl<B> PinnedDrop for Finishing<B> {
        fn drop(this: Pin<&mut Self>) {
            this.watch.working();
        }
    }
}

impl<B: Body> Body for Finishing<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let me = self.project();
        let polled = me.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => me.watch.handed(),
            Poll::Ready(_) | Poll::Pending => me.watch.working(),
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
