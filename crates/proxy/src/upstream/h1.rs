//! The HTTP/1.1 upstream: hyper-util's pooled keep-alive client over a connector that resolves
//! the upstream name again for every new connection and spreads connections over its addresses.
//! Upgrades (WebSocket) always take this way.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::dial::{DialError, Dialer};
use super::types::UpstreamAddr;
use crate::body::ProxyBody;

/// The pooled client.
pub type Pool = Client<hyper_rustls::HttpsConnector<RoundRobin>, ProxyBody>;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Build the pooled HTTP/1.1 client; `keepalive` idle connections are kept per address.
pub fn pool(tls: rustls::ClientConfig, dialer: Dialer, keepalive: usize) -> Pool {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let mut client = Client::builder(TokioExecutor::new());
    client
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(keepalive);
    client.build(https.enable_http1().wrap_connector(RoundRobin(dialer)))
}

/// The connector: resolve, rotate, connect (with a timeout), the next address on failure.
#[derive(Clone)]
pub struct RoundRobin(Dialer);

impl RoundRobin {
    async fn connect(self, uri: Uri) -> Result<Stream, DialError> {
        let host = uri.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let addrs = self.0.resolve(host, port).await?;
        let mut last = None;
        for addr in self.0.candidates(&addrs, 0) {
            match self.0.tcp(addr).await {
                Ok(tcp) => {
                    return Ok(Stream {
                        io: TokioIo::new(tcp),
                        addr,
                    });
                }
                Err(e) => {
                    tracing::warn!(upstream = %addr, error = %e, "upstream connect failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| DialError::NoAddress(host.to_owned())))
    }
}

impl tower_service::Service<Uri> for RoundRobin {
    type Response = Stream;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, DialError>> + Send>>;

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
