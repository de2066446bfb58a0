//! The connection loop both services run: accept (bounded), optional TLS (with a handshake
//! timeout and a friendly answer to plain HTTP, `handshake`), HTTP/1.1 + HTTP/2 (by ALPN) via hyper
//! with the per-connection timeouts and keep-alive limits (`conn`), graceful drain. Beside it:
//! `activity` (the byte clock), `cleartext` (no HTTP/2 prior knowledge without TLS), `lease`
//! (what a tunnel borrows from its connection), `rawhead` (HTTP/1 heads as sent, before hyper
//! folds them).

mod activity;
mod cleartext;
mod conn;
mod handshake;
mod lease;
mod limits;
mod rawhead;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use activity::{Activity, ReadObserver, Tracked};
use conn::{Conn, Proto};
use handshake::handshake;
pub use lease::Lease;
pub use limits::Limits;
pub use rawhead::RawHead;
pub use service::{BoxError, HttpService};

/// Facts about one accepted connection, handed to the service factory.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

/// Plain TCP or TLS. The TLS acceptor is re-read per connection through the config's resolver,
/// so certificate reloads take effect on new handshakes.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 only: no HTTP/2 prior knowledge (h2c) on a cleartext port.
    Plain,
    /// HTTP/1.1 and HTTP/2 (by ALPN), with upgrades.
    Tls(TlsAcceptor),
}

/// Serve `listener` until `shutdown` resolves, then drain in-flight requests for at most
/// `limits.drain_timeout`. `make_service` is called once per connection.
pub async fn serve<F, S>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(ConnInfo) -> S,
    S: HttpService,
{
    let permits = connection_permits(&limits);
    serve_with_permits(listener, transport, limits, permits, make_service, shutdown).await;
}

/// The connection budget for one listener: `limits.max_connections` permits. Several event
/// loops serving the same listener share one.
pub fn connection_permits(limits: &Limits) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(limits.max_connections.max(1)))
}

/// [`serve`] drawing connection permits from `permits`, shared with other event loops that
/// accept on the same socket.
pub async fn serve_with_permits<F, S>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    permits: Arc<Semaphore>,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(ConnInfo) -> S,
    S: HttpService,
{
    let connections = Connections::new(transport, limits);
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            local: stream.local_addr().ok().or(local).unwrap_or(peer),
            tls: matches!(connections.transport, Transport::Tls(_)),
        };
        connections.spawn(stream, make_service(info), permit, peer);
    }
    drop(listener);
    connections.drain().await;
}

/// An accepted connection's byte stream, TLS or cleartext.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The connections one listener has accepted: how they are served, and their drain.
struct Connections {
    builders: Arc<Builders>,
    transport: Transport,
    limits: Limits,
    tracker: TaskTracker,
    /// Cancelled on shutdown: connections finish their requests and close.
    closing: CancellationToken,
    /// Cancelled once the drain timeout is over: whatever is left is closed.
    aborting: CancellationToken,
}

impl Connections {
    fn new(transport: Transport, limits: Limits) -> Self {
        Connections {
            builders: Arc::new(Builders::new(&limits)),
            transport,
            limits,
            tracker: TaskTracker::new(),
            closing: CancellationToken::new(),
            aborting: CancellationToken::new(),
        }
    }

    /// Serve one accepted connection (TLS first, when the listener has it) on its own task,
    /// holding `permit` until it ends (and any tunnel it became, through its [`Lease`]).
    fn spawn<S: HttpService>(
        &self,
        stream: TcpStream,
        service: S,
        permit: OwnedSemaphorePermit,
        peer: SocketAddr,
    ) {
        let conn = Conn {
            builders: self.builders.clone(),
            cleartext: matches!(self.transport, Transport::Plain),
            limits: self.limits.clone(),
            closing: self.closing.clone(),
            aborting: self.aborting.clone(),
            lease: Lease::new(permit, self.tracker.clone(), self.aborting.clone()),
            peer,
        };
        let transport = self.transport.clone();
        self.tracker.spawn(async move {
            // One stream type for both transports: hyper's connection machinery is compiled
            // once per service, not once per service and transport.
            let (io, proto): (Box<dyn Stream>, Proto) = match transport {
                Transport::Plain => (Box::new(stream), Proto::H1),
                Transport::Tls(acceptor) => {
                    // Boxed: the handshake's state (rustls mid-handshake, the timer) is freed
                    // once it is done instead of sizing the task for the connection's life.
                    let handshake = Box::pin(tokio::time::timeout(
                        conn.limits.handshake_timeout,
                        handshake(acceptor, stream, peer),
                    ));
                    let tls = tokio::select! {
                        _ = conn.closing.cancelled() => return,
                        r = handshake => r,
                    };
                    match tls {
                        Ok(Some(s)) => {
                            let proto = Proto::of_alpn(s.get_ref().1.alpn_protocol());
                            (Box::new(s), proto)
                        }
                        Ok(None) => return,
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            conn.drive(io, service, proto).await;
        });
    }

    /// Ask every connection to close after its requests, wait for them and their tunnels (at
    /// most the drain timeout), then close what is left.
    async fn drain(self) {
        self.closing.cancel();
        self.tracker.close();
        tokio::select! {
            _ = self.tracker.wait() => tracing::debug!("all connections drained"),
            _ = tokio::time::sleep(self.limits.drain_timeout) => {
                tracing::warn!(timeout = ?self.limits.drain_timeout, open = self.tracker.len(), "drain timeout reached; closing remaining connections");
                self.aborting.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
            }
        }
    }
}

/// hyper's servers with the limits applied: HTTP/2 when the TLS handshake chose it (ALPN),
/// HTTP/1.1 otherwise (cleartext, `http/1.1`, or no ALPN: HTTP/2 over TLS needs ALPN, RFC 9113
/// §3.2, and nginx does not sniff either).
pub(super) struct Builders {
    pub(super) h1: http1::Builder,
    pub(super) h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &Limits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.read_buffer())
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.h2_max_header_list_size)
            // Rapid-reset (CVE-2023-44487) and error-reset floods: bounded.
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(1024));
        Builders { h1, h2 }
    }
}

/// Bind a TCP listener, naming `var` and the address in the error.
pub async fn bind(var: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        var: var.to_owned(),
        addr,
        source,
    })
}

/// A listener that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{var}={addr}: cannot listen: {source}")]
pub struct BindError {
    pub var: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}
