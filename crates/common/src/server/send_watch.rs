//! The send timeout (nginx `send_timeout`): an answer whose bytes the client does not take for
//! that long is given up, whatever else the client does (HTTP/2 PINGs, other streams). Each
//! request gets a [`Watch`]: its answer is *handed* (waiting for the client) from the moment the
//! head is ready and again each time the body gave hyper a frame, and *working* while the
//! service or the body waits for its own source (a slow upstream is not the client's fault).
//!
//! hyper polls an answer body only when the client has window for it, so the clock cannot live
//! in the body. Over HTTP/2 each stream is a task hyper spawns through its executor:
//! [`StreamExec`] runs it inside [`Watched`], which drops the task once its watch was handed
//! for the timeout. Dropping hyper's stream resets it (RST_STREAM CANCEL) and frees what it
//! held: its window, its buffered data, the answer body and through it the upstream stream.
//! hyper calls the service and spawns the stream's task back to back, on one thread, so the
//! service hands the watch to the executor through [`NEXT`]. Over HTTP/1.1 the connection loop
//! reads the connection's current watch and drops the connection, as nginx does.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// One answer's send clock.
#[derive(Debug)]
pub(super) struct Watch(Mutex<State>);

#[derive(Debug, Clone, Copy)]
struct State {
    /// Since when the answer waits for the client; `None` while it waits for its own source,
    /// or once it ended.
    handed: Option<Instant>,
}

impl Watch {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Watch(Mutex::new(State { handed: None })))
    }

    fn set(&self, handed: Option<Instant>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).handed = handed;
    }

    /// The answer (head or a body frame) is ready for the client.
    pub(super) fn handed(&self) {
        self.set(Some(Instant::now()));
    }

    /// The answer waits for its own source, or has ended.
    pub(super) fn working(&self) {
        self.set(None);
    }

    /// When the client will have taken nothing for `timeout`, if it is the one awaited.
    pub(super) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        let st = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        st.handed.map(|since| since + timeout)
    }
}

thread_local! {
    /// The watch of the request the service was just called with (HTTP/2), for the executor.
    static NEXT: RefCell<Option<Arc<Watch>>> = const { RefCell::new(None) };
}

/// Called by the service for an HTTP/2 request: its stream's task will be watched.
pub(super) fn watch_next(watch: Arc<Watch>) {
    NEXT.with(|n| *n.borrow_mut() = Some(watch));
}

/// hyper's HTTP/2 executor: tokio, each stream's task inside [`Watched`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamExec {
    pub(crate) timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        match NEXT.with(|n| n.borrow_mut().take()) {
            Some(watch) => {
                tokio::spawn(Watched {
                    fut: Box::pin(fut),
                    watch,
                    timeout: self.timeout,
                    timer: None,
                });
            }
            None => {
                tokio::spawn(fut);
            }
        }
    }
}

/// A stream's task, dropped when its answer was handed to the client for the timeout.
struct Watched<F> {
    fut: Pin<Box<F>>,
    watch: Arc<Watch>,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.fut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // The watch only changes while the task runs (the service and the body are polled
        // inside it), so the deadline is current.
        let Some(deadline) = this.watch.deadline(this.timeout) else {
            this.timer = None;
            return Poll::Pending;
        };
        if deadline <= Instant::now() {
            tracing::info!(timeout = ?this.timeout, "the client took no byte of an answer for the send timeout; stream reset");
            return Poll::Ready(());
        }
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if timer.deadline() != deadline.into() {
            timer.as_mut().reset(deadline.into());
        }
        if timer.as_mut().poll(cx).is_ready() {
            // Woken by the timer: poll again to see the deadline passed.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that works (waits for its source) 300 ms, then hands its answer and is never
    /// polled again: dropped one timeout later, not before.
    #[tokio::test]
    async fn a_watched_task_ends_once_handed_for_the_timeout_and_not_while_working() {
        let exec = StreamExec {
            timeout: Duration::from_millis(100),
        };
        let watch = Watch::new();
        watch_next(watch.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        hyper::rt::Executor::execute(&exec, async move {
            let _tx = tx;
            tokio::time::sleep(Duration::from_millis(300)).await;
            watch.handed();
            std::future::pending::<()>().await;
        });
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the handed task was dropped")
            .expect_err("dropped, not completed");
        assert!(started.elapsed() >= Duration::from_millis(400));
        // Without a watch handed to it, a task runs as it is.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        hyper::rt::Executor::execute(&exec, async move {
            let _ = tx.send(());
        });
        rx.await.expect("an unwatched task runs");
    }
}
