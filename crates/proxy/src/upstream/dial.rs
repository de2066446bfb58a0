//! Reaching the upstream, shared by both protocols: resolve the name, rotate over its
//! addresses, pick the candidates a request tries, open a TCP connection within the connect
//! timeout. Nothing is ever marked down (nginx's `fail_timeout=0`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

/// Resolves and connects; one per worker and protocol, cheap to clone.
#[derive(Clone)]
pub struct Dialer {
    lookup: Arc<dyn Lookup>,
    next: Arc<AtomicUsize>,
    connect_timeout: Duration,
}

impl Dialer {
    pub fn new(lookup: Arc<dyn Lookup>, connect_timeout: Duration) -> Self {
        Dialer {
            lookup,
            next: Arc::new(AtomicUsize::new(0)),
            connect_timeout,
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

    /// The addresses one request tries, in order: the rotation's next one and the ones after
    /// it, `tries` in all (wrapping around: with one address, `[a, a]` for two tries). Each
    /// call moves the rotation on by one.
    pub fn candidates(&self, addrs: &[SocketAddr], tries: usize) -> Vec<SocketAddr> {
        if addrs.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..tries)
            .map(|i| addrs[(start + i) % addrs.len()])
            .collect()
    }

    /// A TCP connection to `addr` (no Nagle) within the connect timeout.
    pub async fn tcp(&self, addr: SocketAddr) -> Result<TcpStream, DialError> {
        let timeout = self.connect_timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| DialError::Timeout { addr, timeout })?
            .map_err(|source| DialError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// `PROXY_UPSTREAM_CONNECT_TIMEOUT`, for the steps after TCP (the TLS handshake).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
}
