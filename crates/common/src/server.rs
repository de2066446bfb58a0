//! The connection loop both services run: accept (bounded), optional TLS (with a handshake
//! timeout and a friendly answer to plain HTTP), HTTP/1.1 + HTTP/2 via hyper-util, graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Bounds on every connection. Defaults follow nginx where nginx has one.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the TLS handshake (nginx: `ssl_handshake_timeout` 60 s; we use 10 s).
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's header block (nginx `client_header_timeout`).
    pub header_read_timeout: Duration,
    /// Largest accepted HTTP/1 header block in bytes (hyper's read buffer).
    pub max_header_bytes: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 header list size.
    pub h2_max_header_list_size: u32,
    /// Connections served at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            h2_max_concurrent_streams: 128,
            h2_max_header_list_size: 32 * 1024,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

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
    Plain,
    Tls(TlsAcceptor),
}

const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 56\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS only; use https:// in the URL.\r\n\r\n";

/// Serve `listener` until `shutdown` resolves, then drain in-flight requests for at most
/// `limits.drain_timeout`. `make_service` is called once per connection.
pub async fn serve<F, S, B>(
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let make_service = Arc::new(make_service);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
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
            tls: matches!(transport, Transport::Tls(_)),
        };
        let service = make_service(info);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let transport = transport.clone();
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match transport {
                Transport::Plain => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                Transport::Tls(acceptor) => {
                    let tls = tokio::time::timeout(handshake_timeout, async {
                        if !looks_like_tls(&stream).await {
                            let mut stream = stream;
                            let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
                            let _ = stream.shutdown().await;
                            return None;
                        }
                        match acceptor.accept(stream).await {
                            Ok(s) => Some(s),
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                None
                            }
                        }
                    })
                    .await;
                    let stream = match tls {
                        Ok(Some(s)) => s,
                        Ok(None) => return,
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("all connections drained"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(timeout = ?limits.drain_timeout, "drain timeout reached; closing remaining connections");
        }
    }
}

/// Peek at the first byte: a TLS record starts with 0x16 (handshake). Anything else on a TLS
/// port is most likely plain HTTP.
async fn looks_like_tls(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => first[0] == 0x16,
        _ => true, // let the TLS layer report the error
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
