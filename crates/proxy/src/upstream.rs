//! The upstream side: a pooled keep-alive HTTPS client whose connector resolves the upstream
//! name again for every new connection and spreads connections round-robin over its addresses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::config::Upstream;

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;
/// The pooled client.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<RoundRobin>, UpstreamBody>;

/// A resolver: name and port to addresses. The default asks the system (getaddrinfo, so
/// `/etc/hosts` and Docker's DNS) every time; tests plug in one they can change.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>>;
}

/// The system resolver, asked again for every new upstream connection.
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

/// Extension put on every upstream response: the address it came from.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAddr(pub SocketAddr);

/// The connector: resolve, rotate, connect (with a timeout), and on failure try the next
/// address once. Nothing is ever marked down (nginx's `fail_timeout=0`).
#[derive(Clone)]
pub struct RoundRobin {
    lookup: Arc<dyn Lookup>,
    next: Arc<AtomicUsize>,
    connect_timeout: Duration,
}

impl RoundRobin {
    pub fn new(lookup: Arc<dyn Lookup>, connect_timeout: Duration) -> Self {
        RoundRobin {
            lookup,
            next: Arc::new(AtomicUsize::new(0)),
            connect_timeout,
        }
    }

    async fn connect(self, uri: Uri) -> Result<Stream, io::Error> {
        let host = uri.host().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "upstream URI without host")
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let addrs = self.lookup.lookup(host, port).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot resolve upstream {host}: {e}"))
        })?;
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("upstream {host} resolves to no address"),
            ));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..addrs.len().min(2) {
            let addr = addrs[(start + i) % addrs.len()];
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(Stream {
                        io: TokioIo::new(tcp),
                        addr,
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(upstream = %addr, error = %e, "upstream connect failed");
                    last = Some(io::Error::new(e.kind(), format!("connect to {addr}: {e}")));
                }
                Err(_) => {
                    tracing::warn!(upstream = %addr, timeout = ?self.connect_timeout, "upstream connect timed out");
                    last = Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "connect to {addr}: timed out after {:?}",
                            self.connect_timeout
                        ),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no upstream address tried")))
    }
}

impl tower_service::Service<Uri> for RoundRobin {
    type Response = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// A TCP connection to one upstream address, which it reports on every response.
pub struct Stream {
    io: TokioIo<TcpStream>,
    addr: SocketAddr,
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new().extra(UpstreamAddr(self.addr))
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// An upstream set-up problem (start-up only).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("PROXY_UPSTREAM_CA={}: {source}", path.display())]
    Ca {
        path: std::path::PathBuf,
        #[source]
        source: common::tls::TlsError,
    },
    #[error("PROXY_UPSTREAM_CA={}: no usable CA certificate: {source}", path.display())]
    CaRejected {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("PROXY_UPSTREAM={0}: not a valid host:port")]
    Authority(String),
    #[error("PROXY_UPSTREAM={0}: not a valid TLS server name")]
    ServerName(String),
    #[error("upstream TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// The upstream TLS client configuration. Without `ca` the upstream certificate is not verified
/// (nginx's `proxy_ssl_verify off`); with it, it must chain to that CA and name the upstream host.
pub fn tls_config(ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, UpstreamError> {
    let provider = common::tls::provider();
    Ok(match ca {
        None => common::client::insecure_client_config(&[])?,
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in common::tls::load_certs(path).map_err(|source| UpstreamError::Ca {
                path: path.to_owned(),
                source,
            })? {
                roots
                    .add(cert)
                    .map_err(|source| UpstreamError::CaRejected {
                        path: path.to_owned(),
                        source,
                    })?;
            }
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
    })
}

/// Build the pooled HTTP/1.1 client (HTTP/2 to the upstream is [`crate::upstream_h2`]).
pub fn client(
    tls: rustls::ClientConfig,
    lookup: Arc<dyn Lookup>,
    connect_timeout: Duration,
    keepalive: usize,
) -> UpstreamClient {
    let connector = RoundRobin::new(lookup, connect_timeout);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let mut client = Client::builder(TokioExecutor::new());
    client
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(keepalive);
    client.build(builder.enable_http1().wrap_connector(connector))
}

/// The authority requests are sent to (`host:port`, IPv6 in brackets).
pub fn authority(upstream: &Upstream) -> Result<http::uri::Authority, UpstreamError> {
    upstream
        .to_string()
        .parse()
        .map_err(|_| UpstreamError::Authority(upstream.to_string()))
}
