//! The connection loop both services run: accept (bounded), optional TLS (with a handshake
//! timeout and a friendly answer to plain HTTP), HTTP/1.1 + HTTP/2 via hyper-util, graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds on every connection. Defaults follow nginx where nginx has one.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the TLS handshake (nginx: `ssl_handshake_timeout` 60 s; we use 10 s).
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's header block (nginx `client_header_timeout`).
    pub header_read_timeout: Duration,
    /// Largest accepted HTTP/1 header block in bytes (hyper's read buffer).
    pub max_header_bytes: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 header list size.
    pub h2_max_header_list_size: u32,
    /// Connections served at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed gracefully
    /// (nginx `keepalive_timeout`); an in-flight request still completes.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            h2_max_concurrent_streams: 128,
            h2_max_header_list_size: 32 * 1024,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
        }
    }
}

/// Facts about one accepted connection, handed to the service factory.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// Plain TCP or TLS. The TLS acceptor is re-read per connection through the config's resolver,
/// so certificate reloads take effect on new handshakes.
#[derive(Clone)]
pub enum Transport {
    Plain,
    Tls(TlsAcceptor),
}

const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 54\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS only; use https:// in the URL.\n";

/// Errors a service or a body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A per-connection hyper service the loop can drive: what hyper-util's server needs of it and
/// of its body, said once (every service `service_fn` makes from an async handler is one).
pub trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Send
    + 'static
{
    /// The response body.
    type Body: hyper::body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}

/// Serve `listener` until `shutdown` resolves, then drain in-flight requests for at most
/// `limits.drain_timeout`. `make_service` is called once per connection.
pub async fn serve<F, S>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(ConnInfo) -> S,
    S: HttpService,
{
    let permits = connection_permits(&limits);
    serve_with_permits(listener, transport, limits, permits, make_service, shutdown).await;
}

/// The connection budget for one listener: `limits.max_connections` permits. Several event
/// loops serving the same listener share one.
pub fn connection_permits(limits: &Limits) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(limits.max_connections.max(1)))
}

/// [`serve`] drawing connection permits from `permits`, shared with other event loops that
/// accept on the same socket.
pub async fn serve_with_permits<F, S>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    permits: Arc<Semaphore>,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(ConnInfo) -> S,
    S: HttpService,
{
    let connections = Connections::new(transport, limits);
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            local: stream.local_addr().ok().or(local).unwrap_or(peer),
            tls: matches!(connections.transport, Transport::Tls(_)),
        };
        connections.spawn(stream, make_service(info), permit, peer);
    }
    drop(listener);
    connections.drain().await;
}

/// The connections one listener has accepted: how they are served, and their drain.
struct Connections {
    builder: Arc<auto::Builder<TokioExecutor>>,
    transport: Transport,
    limits: Limits,
    tracker: TaskTracker,
    /// Cancelled on shutdown: connections finish their requests and close.
    closing: CancellationToken,
    /// Cancelled once the drain timeout is over: whatever is left is closed.
    aborting: CancellationToken,
}

impl Connections {
    fn new(transport: Transport, limits: Limits) -> Self {
        Connections {
            builder: Arc::new(http_builder(&limits)),
            transport,
            limits,
            tracker: TaskTracker::new(),
            closing: CancellationToken::new(),
            aborting: CancellationToken::new(),
        }
    }

    /// Serve one accepted connection (TLS first, when the listener has it) on its own task,
    /// holding `permit` until it ends.
    fn spawn<S: HttpService>(
        &self,
        stream: TcpStream,
        service: S,
        permit: OwnedSemaphorePermit,
        peer: SocketAddr,
    ) {
        let conn = Conn {
            builder: self.builder.clone(),
            limits: self.limits.clone(),
            closing: self.closing.clone(),
            aborting: self.aborting.clone(),
            peer,
        };
        let transport = self.transport.clone();
        self.tracker.spawn(async move {
            let _permit = permit;
            match transport {
                Transport::Plain => conn.drive(stream, service).await,
                Transport::Tls(acceptor) => {
                    let handshake = tokio::time::timeout(
                        conn.limits.handshake_timeout,
                        handshake(acceptor, stream, peer),
                    );
                    let tls = tokio::select! {
                        _ = conn.closing.cancelled() => return,
                        r = handshake => r,
                    };
                    match tls {
                        Ok(Some(s)) => conn.drive(s, service).await,
                        Ok(None) => {}
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }

    /// Ask every connection to close after its requests, wait for them (at most the drain
    /// timeout), then close what is left.
    async fn drain(self) {
        self.closing.cancel();
        self.tracker.close();
        tokio::select! {
            _ = self.tracker.wait() => tracing::debug!("all connections drained"),
            _ = tokio::time::sleep(self.limits.drain_timeout) => {
                tracing::warn!(timeout = ?self.limits.drain_timeout, open = self.tracker.len(), "drain timeout reached; closing remaining connections");
                self.aborting.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
            }
        }
    }
}

/// hyper-util's HTTP/1.1 + HTTP/2 server with the limits applied.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Headroom above the limit so the service can answer 431 with a proper page; hyper
        // itself answers a bare 431 beyond it.
        .max_buf_size(limits.max_header_bytes.saturating_mul(2).max(16 * 1024) + 8192)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size)
        // Rapid-reset (CVE-2023-44487) and error-reset floods: bounded.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024));
    builder
}

/// Answer plain HTTP on a TLS port with a clear 400, else complete the handshake.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    if !looks_like_tls(&stream).await {
        let mut stream = stream;
        let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
        let _ = stream.shutdown().await;
        return None;
    }
    match acceptor.accept(stream).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// One accepted connection and what it is served with.
struct Conn {
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Limits,
    closing: CancellationToken,
    aborting: CancellationToken,
    peer: SocketAddr,
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
    /// Serve the connection until it ends; on shutdown or after `idle_timeout` without traffic,
    /// shut it down gracefully (in-flight requests complete, then it closes).
    async fn drive<IO, S>(self, io: IO, service: S)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        S: HttpService,
    {
        let peer = self.peer;
        let activity = Activity::default();
        let io = Tracked {
            inner: io,
            activity: activity.clone(),
        };
        let counts = Counts::default();
        let service = Counted {
            inner: service,
            counts: counts.clone(),
        };
        let opened = Instant::now();
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let tick = (self
            .limits
            .idle_timeout
            .min(self.limits.header_read_timeout)
            / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(5));
        let mut check = tokio::time::interval(tick);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                // Past the drain timeout: close whatever is left.
                _ = self.aborting.cancelled() => return,
                _ = self.closing.cancelled(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = check.tick() => match self.verdict(&activity, &counts, opened, stopping, tick) {
                    Verdict::Fine => {}
                    Verdict::Close => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Verdict::Drop => return,
                },
            }
        }
    }

    /// The periodic check: header timeout before the first request, idle timeout, and a
    /// connection that makes no progress after it was asked to close.
    fn verdict(
        &self,
        activity: &Activity,
        counts: &Counts,
        opened: Instant,
        stopping: bool,
        tick: Duration,
    ) -> Verdict {
        let peer = self.peer;
        let idle = activity.idle_for();
        if counts.started.load(Ordering::Acquire) == 0
            && opened.elapsed() >= self.limits.header_read_timeout
        {
            // No complete request head since the connection opened: silent after the
            // handshake, or trickling an HTTP/2 HEADERS frame (hyper's own header timer covers
            // HTTP/1 only, and only once it knows the version).
            tracing::debug!(%peer, "no request within the header timeout; closing");
            return Verdict::Drop;
        }
        if !stopping && idle >= self.limits.idle_timeout {
            tracing::debug!(%peer, "idle timeout; closing the connection");
            return Verdict::Close;
        }
        if stopping
            && idle >= self.limits.idle_timeout + 2 * tick
            && counts.pending.load(Ordering::Acquire) == 0
        {
            // Asked to close, yet nothing moves and no request waits for its answer: a client
            // that stopped reading, or an HTTP/2 peer that never acks the GOAWAY ping (nginx
            // `send_timeout`). Drop it.
            tracing::debug!(%peer, "no progress after graceful close; dropping the connection");
            return Verdict::Drop;
        }
        Verdict::Fine
    }
}

/// Requests of one connection: whose answer head is not ready yet, and how many ever started.
#[derive(Clone, Default)]
struct Counts {
    /// Answer heads not ready yet: a stalled connection is only cut while none is legitimately
    /// waiting (e.g. for a slow upstream).
    pending: Arc<AtomicUsize>,
    /// Requests whose head arrived, ever.
    started: Arc<AtomicUsize>,
}

/// A service that keeps [`Counts`].
struct Counted<S> {
    inner: S,
    counts: Counts,
}

struct PendingGuard(Arc<AtomicUsize>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> Service<R> for Counted<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        self.counts.pending.fetch_add(1, Ordering::AcqRel);
        self.counts.started.fetch_add(1, Ordering::AcqRel);
        let guard = PendingGuard(self.counts.pending.clone());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

/// When a connection last moved a byte.
#[derive(Clone)]
struct Activity {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// An I/O stream that records activity on every successful read or write.
struct Tracked<IO> {
    inner: IO,
    activity: Activity,
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_answer_declares_its_real_length() {
        let text = std::str::from_utf8(super::PLAIN_HTTP_ON_TLS).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }
}

/// Peek at the first byte: a TLS record starts with 0x16 (handshake). Anything else on a TLS
/// port is most likely plain HTTP.
async fn looks_like_tls(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => first[0] == 0x16,
        _ => true, // let the TLS layer report the error
    }
}

/// Bind a TCP listener, naming `var` and the address in the error.
pub async fn bind(var: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        var: var.to_owned(),
        addr,
        source,
    })
}

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{var}={addr}: cannot listen: {source}")]
pub struct BindError {
    pub var: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}
