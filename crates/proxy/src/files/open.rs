//! The bound on open static files: at most [`PER_CONNECTION`] files streaming on one client
//! connection and [`PER_ADDRESS`] from one client address at a time (further requests wait
//! their turn), at most [`TOTAL`] in the process (beyond it, 503). A client that asks for many files and never reads them (its
//! HTTP/2 streams stall on flow control) holds a few descriptors, not all of them.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Files one connection may stream at once (a browser loads a page's assets 6–16 at a time).
pub const PER_CONNECTION: usize = 16;
/// Files one client address may stream at once, over all its connections (8 connections' worth):
/// a client that opens many connections cannot take the process-wide budget (issue 26 item 2).
pub const PER_ADDRESS: usize = 128;
/// Files the whole proxy may have open (nginx: every stream costs a `worker_connections` slot).
pub const TOTAL: usize = 1024;
/// How long a request waits for its connection's and its address's turn before it gets 503.
pub const WAIT: Duration = Duration::from_secs(10);

/// One semaphore per key, made on first use and forgotten when nothing refers to it.
#[derive(Debug)]
struct Keyed<K> {
    map: Mutex<HashMap<K, Arc<Semaphore>>>,
    each: usize,
}

impl<K: Hash + Eq + Copy> Keyed<K> {
    fn new(each: usize) -> Self {
        Keyed {
            map: Mutex::new(HashMap::new()),
            each,
        }
    }

    /// `key`'s semaphore; while the returned `Arc` (or a permit of it) lives, the entry stays.
    fn get(&self, key: K) -> Arc<Semaphore> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.each)))
            .clone()
    }

    /// Drop `key`'s entry when no permit and no waiter refers to it any more.
    fn forget_if_unused(&self, key: K) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&key).is_some_and(|s| Arc::strong_count(s) == 1) {
            map.remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Shared by every worker.
#[derive(Debug)]
pub struct OpenFiles {
    total: Arc<Semaphore>,
    per_conn: Keyed<SocketAddr>,
    per_addr: Keyed<IpAddr>,
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
    held: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    peer: SocketAddr,
    files: Arc<OpenFiles>,
}

impl OpenFiles {
    pub fn new(total: usize) -> Self {
        Self::with_bounds(total, PER_CONNECTION, PER_ADDRESS)
    }

    fn with_bounds(total: usize, per_conn: usize, per_addr: usize) -> Self {
        OpenFiles {
            total: Arc::new(Semaphore::new(total)),
            per_conn: Keyed::new(per_conn),
            per_addr: Keyed::new(per_addr),
        }
    }

    /// A permit for connection `peer` to open one file: waits (at most [`WAIT`]) for one of
    /// the connection's own and then one of its address's; `None` when that wait or the
    /// process-wide bound runs out.
    pub async fn acquire(self: &Arc<Self>, peer: SocketAddr) -> Option<OpenPermit> {
        // `acquire_owned` takes the Arcs: while waiting, the entries are referenced and stay.
        let (addr_sem, conn_sem) = (self.per_addr.get(peer.ip()), self.per_conn.get(peer));
        let held = tokio::time::timeout(WAIT, async move {
            // The connection's turn first: its waiting requests hold none of the address's.
            let conn = conn_sem.acquire_owned().await.ok()?;
            let addr = addr_sem.acquire_owned().await.ok()?;
            Some((conn, addr))
        })
        .await
        .ok()
        .flatten();
        let mut permit = OpenPermit {
            _total: match self.total.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                    drop(held);
                    self.forget_if_unused(peer);
                    return None;
                }
            },
            held: None,
            peer,
            files: self.clone(),
        };
        permit.held = Some(held?);
        Some(permit)
    }

    fn forget_if_unused(&self, peer: SocketAddr) {
        self.per_conn.forget_if_unused(peer);
        self.per_addr.forget_if_unused(peer.ip());
    }

    /// Connections and addresses with an entry (tests).
    #[cfg(test)]
    pub fn tracked(&self) -> (usize, usize) {
        (self.per_conn.len(), self.per_addr.len())
    }
}

impl Drop for OpenPermit {
    fn drop(&mut self) {
        drop(self.held.take());
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
        assert_eq!(files.tracked(), (0, 0), "entries are forgotten");
    }

    /// One address's connections together take at most their address's share; another address
    /// goes on. Before: 70 connections × 16 files of one address took all 1,024 slots.
    #[tokio::test]
    async fn one_address_cannot_take_the_whole_budget() {
        let files = Arc::new(OpenFiles::with_bounds(8, 2, 4));
        let mut held = Vec::new();
        for port in 1..=2 {
            for _ in 0..2 {
                held.push(files.acquire(peer(port)).await.expect("permit"));
            }
        }
        // A third connection of the same address waits for the address's turn.
        let waiting = tokio::spawn({
            let files = files.clone();
            async move { files.acquire(peer(3)).await.is_some() }
        });
        let other = SocketAddr::from(([127, 0, 0, 2], 1));
        assert!(
            files.acquire(other).await.is_some(),
            "another address goes on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        held.pop();
        assert!(waiting.await.expect("join"));
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
