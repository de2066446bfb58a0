//! One connection's life after accept: hyper-util serves it while a periodic check enforces the
//! header timeout before the first request, the idle timeout, and the drop of a connection
//! that makes no progress after it was asked to close; shutdown closes it gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio_util::sync::CancellationToken;

use super::limits::Limits;
use super::service::HttpService;

/// One accepted connection and what it is served with.
pub(super) struct Conn {
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(super) limits: Limits,
    pub(super) closing: CancellationToken,
    pub(super) aborting: CancellationToken,
    pub(super) peer: SocketAddr,
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
    pub(super) async fn drive<IO, S>(self, io: IO, service: S)
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
