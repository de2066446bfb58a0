//! The connection loop both services run: accept (bounded), optional TLS (with a handshake
//! timeout and a friendly answer to plain HTTP, `handshake`), HTTP/1.1 + HTTP/2 (by ALPN) via hyper
//! with the per-connection timeouts and keep-alive limits (`conn`), graceful drain. Beside it:
//! `activity` (the byte clock), `builders` (hyper's servers with the limits), `send_watch` (the
//! send timeout), `listen` (a listening socket per worker), `cleartext` (no HTTP/2 prior knowledge without TLS), `lease`
//! (what a tunnel borrows from its connection), `rawhead` (HTTP/1 heads as sent, before hyper
//! folds them).

mod activity;
mod builders;
mod cleartext;
mod conn;
mod handshake;
mod lease;
mod limits;
mod listen;
mod rawhead;
mod send_watch;
mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use activity::{Activity, ReadObserver, Tracked};
use builders::Builders;
use conn::{Conn, Proto, Site};
use handshake::handshake;
pub use lease::Lease;
pub use limits::Limits;
pub use listen::{BindError, bind, worker_listener};
pub use rawhead::RawHead;
pub use service::{BoxError, HttpService};

/// Facts about one accepted connection, handed to the service factory once its TLS handshake
/// (if any) is done.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The name the client asked for in its TLS ClientHello (SNI); `None` on cleartext or when
    /// it sent none (an IP address). Made once per connection.
    pub server_name: Option<Arc<str>>,
}

/// Plain TCP or TLS. The TLS acceptor is re-read per connection through the config's resolver,
/// so certificate reloads take effect on new handshakes.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 only: no HTTP/2 prior knowledge (h2c) on a cleartext port.
    Plain,
    /// HTTP/1.1 and HTTP/2 (by ALPN), with upgrades.
    Tls(TlsAcceptor),
    /// As `Tls`, with the ClientHello read first and its server name shown to the hook, whose
    /// work (if any) is awaited before the handshake goes on with the acceptor's config.
    TlsWithHello(TlsAcceptor, Arc<dyn BeforeHandshake>),
}

/// What a waiting handshake awaits.
pub type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work a TLS listener does with a ClientHello's server name before answering it (e.g.
/// issuing a certificate for that name). The wait is this connection's alone: other
/// handshakes go on meanwhile. It counts against the handshake timeout.
pub trait BeforeHandshake: Send + Sync + 'static {
    /// `None` when there is nothing to wait for (the common case: answer at once).
    fn before(&self, server_name: Option<&str>) -> Option<Pending>;
}

/// Serve `listener` until `shutdown` resolves, then drain in-flight requests for at most
/// `limits.drain_timeout`. `make_service` is called once per connection, after its TLS
/// handshake (so [`ConnInfo::server_name`] is known).
pub async fn serve<F, S>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(ConnInfo) -> S + Send + Sync + 'static,
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
    F: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: HttpService,
{
    let connections = Connections::new(transport, limits);
    let make_service = Arc::new(make_service);
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => break,
            // At the limit: make room (idle connections first), then wait for a slot.
            Err(TryAcquireError::NoPermits) => loop {
                connections.reclaim();
                tokio::select! {
                    _ = &mut shutdown => return connections.drain().await,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => return connections.drain().await,
                    },
                    _ = tokio::time::sleep(RECLAIM_AGE) => {}
                }
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
            tls: !matches!(connections.transport, Transport::Plain),
            server_name: None,
        };
        connections.spawn(stream, info, make_service.clone(), permit);
    }
    drop(listener);
    connections.drain().await;
}

/// An accepted connection's byte stream, TLS or cleartext.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// At the connection limit, connections without a request for this long (idle keep-alive, or
/// still without a TLS handshake or a first request) are closed to make room, as nginx's
/// "reusing connections" does; asked again every this long while the limit holds.
pub const RECLAIM_AGE: Duration = Duration::from_millis(500);

/// The connections one listener has accepted: how they are served, and their drain.
struct Connections {
    /// hyper's builders, the limits, and the shutdown and drain-timeout signals.
    site: Arc<Site>,
    transport: Transport,
    tracker: TaskTracker,
    /// Bumped at the connection limit: idle connections close ([`RECLAIM_AGE`]).
    reclaim: watch::Sender<u64>,
}

impl Connections {
    fn new(transport: Transport, limits: Limits) -> Self {
        Connections {
            site: Arc::new(Site {
                builders: Builders::new(&limits),
                cleartext: matches!(transport, Transport::Plain),
                limits,
                closing: CancellationToken::new(),
                aborting: CancellationToken::new(),
            }),
            transport,
            tracker: TaskTracker::new(),
            reclaim: watch::Sender::new(0),
        }
    }

    /// Ask idle connections to close (see [`RECLAIM_AGE`]).
    fn reclaim(&self) {
        self.reclaim.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Serve one accepted connection (TLS first, when the listener has it) on its own task,
    /// holding `permit` until it ends (and any tunnel it became, through its [`Lease`]); its
    /// service is made once the handshake has told the server name.
    fn spawn<F, S>(
        &self,
        stream: TcpStream,
        mut info: ConnInfo,
        make_service: Arc<F>,
        permit: OwnedSemaphorePermit,
    ) where
        F: Fn(ConnInfo) -> S + Send + Sync + 'static,
        S: HttpService,
    {
        let peer = info.peer;
        let conn = Conn {
            site: self.site.clone(),
            lease: Lease::new(permit, self.tracker.clone(), self.site.aborting.clone()),
            peer,
            reclaim: self.reclaim.subscribe(),
        };
        let transport = self.transport.clone();
        self.tracker.spawn(async move {
            // One stream type for both transports: hyper's connection machinery is compiled
            // once per service, not once per service and transport.
            let (io, proto): (Box<dyn Stream>, Proto) = match transport {
                Transport::Plain => (Box::new(stream), Proto::H1),
                Transport::Tls(..) | Transport::TlsWithHello(..) => {
                    // Boxed: the handshake's state (rustls mid-handshake, the timer) is freed
                    // once it is done instead of sizing the task for the connection's life.
                    let mut handshake = Box::pin(tokio::time::timeout(
                        conn.site.limits.handshake_timeout,
                        handshake(transport, stream, peer),
                    ));
                    let (accepted, mut reclaim) = (Instant::now(), conn.reclaim.clone());
                    let tls = loop {
                        tokio::select! {
                            _ = conn.site.closing.cancelled() => return,
                            r = &mut handshake => break r,
                            r = reclaim.changed() => if r.is_err() || accepted.elapsed() >= RECLAIM_AGE {
                                tracing::debug!(%peer, "at the connection limit: closing a connection still in its TLS handshake");
                                return;
                            },
                        }
                    };
                    match tls {
                        Ok(Some(s)) => {
                            let proto = Proto::of_alpn(s.get_ref().1.alpn_protocol());
                            info.server_name = s.get_ref().1.server_name().map(Arc::from);
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
            conn.drive(io, make_service(info), proto).await;
        });
    }

    /// Ask every connection to close after its requests, wait for them and their tunnels (at
    /// most the drain timeout), then close what is left.
    async fn drain(self) {
        let site = &self.site;
        site.closing.cancel();
        self.tracker.close();
        tokio::select! {
            _ = self.tracker.wait() => tracing::debug!("all connections drained"),
            _ = tokio::time::sleep(site.limits.drain_timeout) => {
                tracing::warn!(timeout = ?site.limits.drain_timeout, open = self.tracker.len(), "drain timeout reached; closing remaining connections");
                site.aborting.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
            }
        }
    }
}
