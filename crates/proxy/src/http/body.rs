//! Body wrappers: the response body that writes the access-log line when it ends (so every
//! request is logged exactly once, with the bytes really sent), and the request body guard that
//! enforces the size limit and the read-gap timeout while streaming, and tells the exchange
//! ([`SendClock`]) when the body last moved toward the upstream; and the upstream's answer body
//! with its read-gap timeout ([`UpstreamRead`]).

use crate::config::settings::{BODY_TIMEOUT, MAX_BODY_SIZE};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::body::{BoxError, ProxyBody};
use crate::config::settings::UPSTREAM_TIMEOUT;
use crate::logs::{AccessEntry, AccessLog};

/// A response body that counts what it sends and logs the request when dropped (finished,
/// failed, or abandoned by the client).
pub struct Logged {
    inner: ProxyBody,
    entry: Option<Box<AccessEntry>>,
    started: Instant,
    log: AccessLog,
}

impl Logged {
    pub fn new(inner: ProxyBody, entry: AccessEntry, started: Instant, log: AccessLog) -> Self {
        Logged {
            inner,
            entry: Some(Box::new(entry)),
            started,
            log,
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let (Some(data), Some(entry)) = (frame.data_ref(), self.entry.as_mut())
        {
            entry.body_bytes_sent += data.len() as u64;
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

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.request_time = self.started.elapsed();
            self.log.log_boxed(entry);
        }
    }
}

/// Why a request body was cut short; the handler turns it into 413 or 408.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    None = 0,
    TooLarge = 1,
    TooSlow = 2,
}

/// Shared between the guard and the handler: the first fault seen.
#[derive(Debug, Default, Clone)]
pub struct FaultFlag(Arc<AtomicU8>);

impl FaultFlag {
    fn set(&self, f: BodyFault) {
        let _ = self
            .0
            .compare_exchange(0, f as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn get(&self) -> BodyFault {
        match self.0.load(Ordering::SeqCst) {
            1 => BodyFault::TooLarge,
            2 => BodyFault::TooSlow,
            _ => BodyFault::None,
        }
    }
}

/// The error a guarded body fails with.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {max} ({0} bytes)", max = MAX_BODY_SIZE)]
    TooLarge(u64),
    #[error("no request body data for {0:?} ({BODY_TIMEOUT})")]
    TooSlow(Duration),
}

/// Where a request's exchange with the upstream stands, for `PROXY_UPSTREAM_TIMEOUT` (nginx's
/// `proxy_send_timeout` and `proxy_read_timeout`: between two successive operations, never a
/// total): the last time the body moved toward the upstream (or ended, after which the upstream
/// owes the answer head), and whether the upstream is waiting on the client meanwhile (the body
/// guard's `PROXY_BODY_TIMEOUT` is then in charge, not the upstream timeout).
#[derive(Debug, Clone)]
pub struct SendClock(Arc<Mutex<ClockState>>);

#[derive(Debug)]
struct ClockState {
    last: Instant,
    waiting_on_client: bool,
}

impl Default for SendClock {
    fn default() -> Self {
        SendClock(Arc::new(Mutex::new(ClockState {
            last: Instant::now(),
            waiting_on_client: false,
        })))
    }
}

impl SendClock {
    fn set(&self, waiting_on_client: bool) {
        let mut st = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        st.last = Instant::now();
        st.waiting_on_client = waiting_on_client;
    }

    /// When the upstream has been silent for `timeout`: `None` while the body waits on the
    /// client (ask again later).
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let st = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (!st.waiting_on_client).then(|| st.last + timeout)
    }
}

/// The longest a body may go without a frame: armed when a poll finds nothing, cleared by a
/// frame (both request and answer bodies keep one).
struct GapTimer {
    gap: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl GapTimer {
    fn new(gap: Duration) -> Self {
        GapTimer { gap, timer: None }
    }

    /// A frame arrived: the next wait starts a new gap.
    fn reset(&mut self) {
        self.timer = None;
    }

    /// Nothing arrived on this poll: whether the gap is over (else `cx` is woken when it is).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let gap = self.gap;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
        timer.as_mut().poll(cx).is_ready()
    }
}

/// A request body with a size cap (0 = none) and a maximum gap between reads.
pub struct Guarded<B> {
    inner: B,
    seen: u64,
    max: u64,
    gap: GapTimer,
    fault: FaultFlag,
    clock: SendClock,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, max: u64, gap: Duration, fault: FaultFlag, clock: SendClock) -> Self {
        Guarded {
            inner,
            seen: 0,
            max,
            gap: GapTimer::new(gap),
            fault,
            clock,
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.gap.reset();
                this.clock.set(false);
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.max > 0 && this.seen > this.max {
                        this.fault.set(BodyFault::TooLarge);
                        return Poll::Ready(Some(Err(BodyError::TooLarge(this.max).into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.clock.set(false);
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.clock.set(true);
                if this.gap.expired(cx) {
                    this.fault.set(BodyFault::TooSlow);
                    return Poll::Ready(Some(Err(BodyError::TooSlow(this.gap.gap).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why the upstream's answer body was cut short.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamReadError {
    #[error("upstream timed out ({UPSTREAM_TIMEOUT}, {0:?}) while reading the answer body")]
    TimedOut(Duration),
}

/// The upstream's answer body, failing when the upstream sends nothing for `gap` while the
/// client waits for more (nginx `proxy_read_timeout` between two reads). Either way it is cut
/// (timed out, or the upstream closed or reset it early), error.log says so, and the failure
/// reaches the client as one: RST_STREAM over HTTP/2, a connection closed without the final
/// chunk over HTTP/1.1.
pub struct UpstreamRead<B> {
    inner: B,
    gap: GapTimer,
    request_id: http::HeaderValue,
}

impl<B> UpstreamRead<B> {
    pub fn new(inner: B, gap: Duration, request_id: http::HeaderValue) -> Self {
        UpstreamRead {
            inner,
            gap: GapTimer::new(gap),
            request_id,
        }
    }

    fn cut(&self, error: &(dyn std::error::Error + 'static)) {
        let request_id = String::from_utf8_lossy(self.request_id.as_bytes());
        tracing::warn!(request_id = %request_id, error = %common::error_chain(error), "upstream answer body cut short");
    }
}

impl<B> Body for UpstreamRead<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                this.cut(e.as_ref());
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.gap.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if !this.gap.expired(cx) {
                    return Poll::Pending;
                }
                let e = UpstreamReadError::TimedOut(this.gap.gap);
                this.cut(&e);
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
