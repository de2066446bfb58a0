//! What a connection lends the requests that may outlive their exchange (a [`Lease`] in the
//! extensions of every HTTP/1.1 request with an `Upgrade` field), so that an upgraded
//! connection — a tunnel, which hyper detaches from the connection task —
//! still lives under the connection's rules: it keeps the connection's slot (the listener's
//! `max_connections` permit), the drain waits for it, and it learns when the drain is over.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A share in one accepted connection: its slot is free only once every share is dropped.
#[derive(Clone)]
pub struct Lease(Arc<Inner>);

struct Inner {
    _permit: OwnedSemaphorePermit,
    tracker: TaskTracker,
    aborting: CancellationToken,
}

impl Lease {
    pub(super) fn new(
        permit: OwnedSemaphorePermit,
        tracker: TaskTracker,
        aborting: CancellationToken,
    ) -> Self {
        Lease(Arc::new(Inner {
            _permit: permit,
            tracker,
            aborting,
        }))
    }

    /// Run `task` as part of the connection: it holds the connection's slot until it ends, and
    /// shutdown waits for it as for a request (at most the drain timeout; see
    /// [`Lease::aborting`]).
    pub fn spawn<F>(self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let tracker = self.0.tracker.clone();
        tracker.spawn(async move {
            let _lease = self;
            task.await;
        });
    }

    /// Cancelled once the drain timeout is over: whatever still runs must close now (cleanly,
    /// and quickly: the listener waits one more second at most).
    pub fn aborting(&self) -> CancellationToken {
        self.0.aborting.clone()
    }
}
