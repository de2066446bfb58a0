//! When bytes last moved: [`Activity`] (a clock shared by whoever watches it) and [`Tracked`] (an
//! I/O stream that touches it on every read and write, and can hand what it reads to observers
//! such as the HTTP/1 head scanner, which may also refuse it). Connections and upgrade tunnels
//! both use them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The last time something happened, readable from any thread.
#[derive(Clone, Debug)]
pub struct Activity {
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
    /// Something happened now.
    pub fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the last [`Activity::touch`] was (or the creation, before any).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// Sees every byte read from a [`Tracked`] stream, in order; an error fails that read.
pub trait ReadObserver: Send {
    fn observe(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

/// An I/O stream that touches its [`Activity`] on every successful read or write.
pub struct Tracked<IO> {
    inner: IO,
    activity: Activity,
    observers: Vec<Box<dyn ReadObserver>>,
}

impl<IO> Tracked<IO> {
    pub fn new(inner: IO, activity: Activity) -> Self {
        Tracked {
            inner,
            activity,
            observers: Vec::new(),
        }
    }

    /// Also hand every byte read to `observer` (after the observers already there).
    pub fn observed(mut self, observer: Box<dyn ReadObserver>) -> Self {
        self.observers.push(observer);
        self
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
            for observer in &mut this.observers {
                if let Err(e) = observer.observe(&buf.filled()[before..]) {
                    return Poll::Ready(Err(e));
                }
            }
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
