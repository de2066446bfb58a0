//! The HTTP/2 upstream connections of one worker (issue 17 item 3): up to
//! `PROXY_UPSTREAM_H2_CONNECTIONS` per address, each request to the one that carried fewest, each
//! replaced after `PROXY_UPSTREAM_H2_MAX_REQUESTS` requests or `PROXY_UPSTREAM_H2_LIFETIME`.
//! A retired connection only stops taking new requests: the ones it carries complete (hyper
//! closes it once its last handle and stream are gone). So a balancer that balances per
//! connection (a Swarm VIP, a cloud load balancer) in front of several replicas sees several
//! connections, and new ones over time. Each connection's lifetime is jittered by ±10 %, so an
//! address's connections are not all replaced at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use hyper::client::conn::http2::SendRequest;

use crate::body::ProxyBody;
use crate::config::H2Pool;

/// Requests one connection carries at once before the next waits (issue 14 §1): never more than
/// the upstream lets open (RFC 9113 §6.5.2 advises at least 100), since h2 queues the rest
/// unsent, and a queued request whose client gives up goes out as HEADERS and RST_STREAM back to
/// back: the rapid reset the upstream's guard answers with GOAWAY.
pub const MAX_STREAMS: usize = 100;

/// One open upstream connection.
struct Conn {
    addr: SocketAddr,
    id: u64,
    sender: SendRequest<ProxyBody>,
    /// [`MAX_STREAMS`] permits.
    streams: Arc<Semaphore>,
    born: Instant,
    /// `PROXY_UPSTREAM_H2_LIFETIME` ± 10 % ([`jittered`]).
    lifetime: Duration,
    /// Requests given to it.
    sent: usize,
}

/// A connection to use: its id (to [`Pool::forget`] it), its sender, and its stream permits
/// (one held per request until its answer head).
pub type Chosen = (u64, SendRequest<ProxyBody>, Arc<Semaphore>);

/// What [`Pool::pick`] found for an address.
pub enum Pick {
    /// The pool is full: use this one.
    Use(Chosen),
    /// The pool is short of connections: open one; meanwhile this one can be used, if any.
    Grow(Option<Chosen>),
}

/// Every address's connections.
pub struct Pool {
    limits: H2Pool,
    conns: Vec<Conn>,
    next_id: u64,
}

impl Pool {
    pub fn new(limits: H2Pool) -> Self {
        Pool {
            limits,
            conns: Vec::new(),
            next_id: 0,
        }
    }

    /// The next connection to `addr` in turn (retiring those past their limits), and whether
    /// another should be opened.
    pub fn pick(&mut self, addr: SocketAddr) -> Pick {
        let H2Pool {
            max_requests,
            connections,
            ..
        } = self.limits;
        self.conns.retain(|c| {
            !c.sender.is_closed()
                && (c.addr != addr || (c.sent < max_requests && c.born.elapsed() < c.lifetime))
        });
        let live = self.conns.iter().filter(|c| c.addr == addr).count();
        // The one that has carried the fewest: round-robin, and a new one catches up.
        let chosen = self
            .conns
            .iter_mut()
            .filter(|c| c.addr == addr)
            .min_by_key(|c| c.sent)
            .map(|c| {
                c.sent += 1;
                (c.id, c.sender.clone(), c.streams.clone())
            });
        match chosen {
            Some(c) if live >= connections => Pick::Use(c),
            other => Pick::Grow(other),
        }
    }

    /// Add a new connection to `addr`, counted as having carried `sent` requests (1: the
    /// request that opened it goes on it).
    pub fn add(&mut self, addr: SocketAddr, sender: SendRequest<ProxyBody>, sent: usize) -> Chosen {
        let id = self.next_id;
        self.next_id += 1;
        let streams = Arc::new(Semaphore::new(MAX_STREAMS));
        self.conns.push(Conn {
            addr,
            id,
            sender: sender.clone(),
            streams: streams.clone(),
            born: Instant::now(),
            lifetime: jittered(self.limits.lifetime),
            sent,
        });
        (id, sender, streams)
    }

    /// No new request goes to connection `id` (it failed one).
    pub fn forget(&mut self, id: u64) {
        self.conns.retain(|c| c.id != id);
    }

    /// Keep only the connections to `addrs`.
    pub fn keep(&mut self, addrs: &[SocketAddr]) {
        self.conns.retain(|c| addrs.contains(&c.addr));
    }

    /// The addresses with a connection still open.
    pub fn open_addrs(&mut self) -> Vec<SocketAddr> {
        self.conns.retain(|c| !c.sender.is_closed());
        let mut addrs: Vec<SocketAddr> = self.conns.iter().map(|c| c.addr).collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }
}

/// `lifetime` ± 10 %, at random: connections opened together (an address's first ones, a burst
/// after a restart) are not all retired, and re-dialled, at the same moment.
fn jittered(lifetime: Duration) -> Duration {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    // 900..=1100 thousandths.
    lifetime.mul_f64((900 + r % 201) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_spread_within_ten_percent() {
        let base = Duration::from_secs(60);
        let ages: Vec<Duration> = (0..50).map(|_| jittered(base)).collect();
        assert!(
            ages.iter()
                .all(|a| (base.mul_f64(0.9)..=base.mul_f64(1.1)).contains(a)),
            "{ages:?}"
        );
        let mut distinct = ages.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 10, "spread: {distinct:?}");
    }
}
