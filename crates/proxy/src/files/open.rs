//! The bound on open static files: at most [`PER_CONNECTION`] files streaming on one client
//! connection at a time (its further requests wait their turn), at most [`TOTAL`] in the
//! process (beyond it, 503). A client that asks for many files and never reads them (its
//! HTTP/2 streams stall on flow control) holds a few descriptors, not all of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Files one connection may stream at once (a browser loads a page's assets 6–16 at a time).
pub const PER_CONNECTION: usize = 16;
/// Files the whole proxy may have open (nginx: every stream costs a `worker_connections` slot).
pub const TOTAL: usize = 1024;
/// How long a request waits for its connection's turn before it gets 503.
pub const WAIT: Duration = Duration::from_secs(10);

/// Shared by every worker.
#[derive(Debug)]
pub struct OpenFiles {
    total: Arc<Semaphore>,
    per_conn: Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
}

impl Default for OpenFiles {
    fn default() -> Self {
        OpenFiles::new(TOTAL)
    }
}

/// Held while a file is open (dropped with the response body).
#[derive(Debug)]
pub struct OpenPermit {
    _total: OwnedSemaphorePermit,
    conn: Option<OwnedSemaphorePermit>,
    peer: SocketAddr,
    files: Arc<OpenFiles>,
}

impl OpenFiles {
    pub fn new(total: usize) -> Self {
        OpenFiles {
            total: Arc::new(Semaphore::new(total)),
            per_conn: Mutex::new(HashMap::new()),
        }
    }

    /// A permit for connection `peer` to open one file: waits (at most [`WAIT`]) for one of
    /// the connection's own; `None` when that wait or the process-wide bound runs out.
    pub async fn acquire(self: &Arc<Self>, peer: SocketAddr) -> Option<OpenPermit> {
        let conn_sem = {
            let mut map = self.per_conn.lock().unwrap_or_else(PoisonError::into_inner);
            map.entry(peer)
                .or_insert_with(|| Arc::new(Semaphore::new(PER_CONNECTION)))
                .clone()
        };
        // `acquire_owned` takes the Arc: while waiting, the entry is referenced and stays.
        let conn = tokio::time::timeout(WAIT, conn_sem.acquire_owned()).await;
        let mut permit = OpenPermit {
            _total: match self.total.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                    drop(conn);
                    self.forget_if_unused(peer);
                    return None;
                }
            },
            conn: None,
            peer,
            files: self.clone(),
        };
        match conn {
            Ok(Ok(p)) => {
                permit.conn = Some(p);
                Some(permit)
            }
            _ => None,
        }
    }

    /// Drop the connection's entry when no permit and no waiter refers to it any more.
    fn forget_if_unused(&self, peer: SocketAddr) {
        let mut map = self.per_conn.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&peer).is_some_and(|s| Arc::strong_count(s) == 1) {
            map.remove(&peer);
        }
    }

    /// Connections with an entry (tests).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.per_conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for OpenPermit {
    fn drop(&mut self) {
        drop(self.conn.take());
        self.files.forget_if_unused(self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn one_connection_waits_its_turn_and_others_go_on() {
        let files = Arc::new(OpenFiles::new(TOTAL));
        let mut held = Vec::new();
        for _ in 0..PER_CONNECTION {
            held.push(files.acquire(peer(1)).await.expect("permit"));
        }
        // The 17th of the same connection waits; another connection does not.
        let waiting = tokio::spawn({
            let files = files.clone();
            async move { files.acquire(peer(1)).await.is_some() }
        });
        assert!(files.acquire(peer(2)).await.is_some());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        held.pop();
        assert!(waiting.await.expect("join"));
        drop(held);
        assert_eq!(files.tracked(), 0, "entries are forgotten");
    }

    #[tokio::test]
    async fn beyond_the_total_is_refused_at_once() {
        let files = Arc::new(OpenFiles::new(2));
        let a = files.acquire(peer(1)).await;
        let b = files.acquire(peer(2)).await;
        assert!(a.is_some() && b.is_some());
        assert!(files.acquire(peer(3)).await.is_none());
        drop(a);
        assert!(files.acquire(peer(3)).await.is_some());
    }
}
