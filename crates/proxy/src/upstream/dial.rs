//! Reaching the upstream, shared by both protocols: resolve the name, rotate over its
//! addresses, pick the candidates a request tries, open a TCP connection within the connect
//! timeout. An address whose connect failed or timed out is skipped for
//! `PROXY_UPSTREAM_FAIL_TIMEOUT` unless every address is (nginx's `max_fails=1 fail_timeout`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Addresses one request tries at most before it fails: every resolved address, up to this.
pub const MAX_TRIES: usize = 8;

/// A resolver: name and port to addresses. The default asks the system (getaddrinfo, so
/// `/etc/hosts` and Docker's DNS) every time; tests plug in one they can change.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>>;
}

/// The system resolver, asked again for every lookup.
#[derive(Debug, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

/// Why no connection to the upstream could be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot resolve upstream {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("upstream {0} resolves to no address")]
    NoAddress(String),
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connect to {addr}: timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

impl DialError {
    /// The upstream name gave no address (answered 503 with `Retry-After`: the upstream may
    /// not exist yet, e.g. on a fresh deploy).
    pub fn is_unresolved(&self) -> bool {
        matches!(self, DialError::Resolve { .. } | DialError::NoAddress(_))
    }
}

/// Resolves and connects; one per worker (shared by both protocols), cheap to clone.
#[derive(Clone)]
pub struct Dialer {
    lookup: Arc<dyn Lookup>,
    next: Arc<AtomicUsize>,
    connect_timeout: Duration,
    fail_timeout: Duration,
    /// Addresses whose last connect failed, and until when they are skipped.
    down: Arc<Mutex<HashMap<SocketAddr, Instant>>>,
}

impl Dialer {
    /// `fail_timeout` zero: nothing is ever skipped.
    pub fn new(lookup: Arc<dyn Lookup>, connect_timeout: Duration, fail_timeout: Duration) -> Self {
        Dialer {
            lookup,
            next: Arc::new(AtomicUsize::new(0)),
            connect_timeout,
            fail_timeout,
            down: Arc::default(),
        }
    }

    fn down(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Instant>> {
        self.down.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The addresses not skipped now; all of them when every one is.
    pub fn live(&self, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut down = self.down();
        if down.is_empty() {
            return addrs.to_vec();
        }
        let now = Instant::now();
        down.retain(|_, until| *until > now);
        let live: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| !down.contains_key(a))
            .collect();
        if live.is_empty() {
            addrs.to_vec()
        } else {
            live
        }
    }

    /// `addr` failed its last connect and is skipped for now.
    pub fn is_down(&self, addr: SocketAddr) -> bool {
        self.down()
            .get(&addr)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Record the outcome of a connect to `addr` (also of the handshakes after TCP).
    pub fn mark(&self, addr: SocketAddr, ok: bool) {
        if ok {
            self.down().remove(&addr);
        } else if !self.fail_timeout.is_zero() {
            self.down().insert(addr, Instant::now() + self.fail_timeout);
        }
    }

    /// The addresses `host` resolves to now; none is an error.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
        let addrs = self
            .lookup
            .lookup(host, port)
            .await
            .map_err(|source| DialError::Resolve {
                host: host.to_owned(),
                source,
            })?;
        if addrs.is_empty() {
            return Err(DialError::NoAddress(host.to_owned()));
        }
        Ok(addrs)
    }

    /// The addresses one request tries, in order: of the [`live`](Dialer::live) ones, the
    /// rotation's next one and the ones after it, each once (at most [`MAX_TRIES`]), then
    /// `extra` more (wrapping around: one address and one extra give `[a, a]`). Each call
    /// moves the rotation on by one.
    pub fn candidates(&self, addrs: &[SocketAddr], extra: usize) -> Vec<SocketAddr> {
        let live = self.live(addrs);
        if live.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..live.len().min(MAX_TRIES) + extra)
            .map(|i| live[(start + i) % live.len()])
            .collect()
    }

    /// A TCP connection to `addr` (no Nagle) within the connect timeout; a failure marks the
    /// address down for the fail timeout, a success up again.
    pub async fn tcp(&self, addr: SocketAddr) -> Result<TcpStream, DialError> {
        let timeout = self.connect_timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| DialError::Timeout { addr, timeout })
            .and_then(|r| r.map_err(|source| DialError::Connect { addr, source }));
        self.mark(addr, tcp.is_ok());
        let tcp = tcp?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// `PROXY_UPSTREAM_CONNECT_TIMEOUT`, for the steps after TCP (the TLS handshake).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}
