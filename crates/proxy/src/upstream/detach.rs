//! Never reset an upstream HTTP/2 stream before the upstream has seen it (issue 14 §1): when the
//! client gives up on a request (RST_STREAM, a closed connection, a timeout), dropping hyper's
//! response future would send RST_STREAM(CANCEL) upstream at once. A flood of such resets, on
//! the one connection every client shares, trips the upstream's rapid-reset guard
//! (`max_pending_accept_reset_streams` in hyper, Go, Envoy): GOAWAY, and every bystander's
//! request on that connection fails. [`Detach`] lets an abandoned exchange run on until the
//! answer head arrives (then the stream is accepted and the reset is harmless), bounded in time
//! ([`GRACE`]) and in number ([`MAX_ORPHANS`] per worker). The request body is the other way
//! to a reset: hyper streams it upstream on its own, and when the client's reset breaks it,
//! hyper resets the upstream stream at once. [`HoldErrors`] keeps such a break pending until the
//! exchange has its answer head (or [`GRACE`] is over).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::Sleep;

use crate::body::{BoxError, ProxyBody};

/// How long an abandoned exchange may wait for its answer head before it is dropped.
pub const GRACE: Duration = Duration::from_secs(2);
/// Abandoned exchanges kept at once per worker; beyond, one is dropped right away.
pub const MAX_ORPHANS: usize = 1024;

/// A future that, dropped before it completes, finishes in the background (see the module).
pub struct Detach<F: Future + Send + 'static> {
    fut: Option<Pin<Box<F>>>,
    orphans: Arc<AtomicUsize>,
}

impl<F: Future + Send + 'static> Detach<F> {
    /// `orphans` counts this worker's abandoned exchanges.
    pub fn new(fut: F, orphans: Arc<AtomicUsize>) -> Self {
        Detach {
            fut: Some(Box::pin(fut)),
            orphans,
        }
    }
}

impl<F: Future + Send + 'static> Future for Detach<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Pending;
        };
        let out = std::task::ready!(fut.as_mut().poll(cx));
        self.fut = None;
        Poll::Ready(out)
    }
}

impl<F: Future + Send + 'static> Drop for Detach<F> {
    fn drop(&mut self) {
        let Some(fut) = self.fut.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.orphans.fetch_add(1, Ordering::AcqRel) >= MAX_ORPHANS {
            self.orphans.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let orphans = self.orphans.clone();
        runtime.spawn(async move {
            // The answer (if any) is dropped here: its stream was accepted, a reset is harmless.
            let _ = tokio::time::timeout(GRACE, fut).await;
            orphans.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// A request body whose failure from the client's side (a `hyper::Error`: the client reset its
/// stream or went away) is held back, the body neither ending nor failing, until `answered`
/// fires (its sender is dropped when the exchange has its answer head or is given up) or
/// [`GRACE`] has passed. Our own limits (size, read gap) fail at once.
pub struct HoldErrors {
    inner: ProxyBody,
    answered: Option<oneshot::Receiver<()>>,
    held: Option<(BoxError, Pin<Box<Sleep>>)>,
}

impl HoldErrors {
    pub fn new(inner: ProxyBody, answered: oneshot::Receiver<()>) -> Self {
        HoldErrors {
            inner,
            answered: Some(answered),
            held: None,
        }
    }

    /// Whether the held error may go now (registering for a wake-up if not).
    fn may_release(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(rx) = self.answered.as_mut() {
            if Pin::new(rx).poll(cx).is_pending() {
                return self
                    .held
                    .as_mut()
                    .is_some_and(|(_, grace)| grace.as_mut().poll(cx).is_ready());
            }
            self.answered = None;
        }
        true
    }
}

impl Body for HoldErrors {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.held.is_none() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) if this.answered.is_some() && e.is::<hyper::Error>() => {
                    this.held = Some((e, Box::pin(tokio::time::sleep(GRACE))));
                }
                other => return other,
            }
        }
        if !this.may_release(cx) {
            return Poll::Pending;
        }
        match this.held.take() {
            Some((e, _)) => Poll::Ready(Some(Err(e))),
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_abandoned_future_still_completes_and_a_finished_one_is_not_kept() {
        let orphans = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let fut = Detach::new(
            async move {
                let _ = rx.await;
                let _ = done_tx.send(());
            },
            orphans.clone(),
        );
        drop(fut);
        assert_eq!(orphans.load(Ordering::Acquire), 1);
        let _ = tx.send(());
        done_rx.await.expect("the abandoned future ran to its end");
        let finished = Detach::new(async {}, orphans.clone());
        finished.await;
        tokio::task::yield_now().await;
        assert_eq!(orphans.load(Ordering::Acquire), 0);
    }
}
