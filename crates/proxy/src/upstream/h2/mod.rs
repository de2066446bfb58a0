//! The HTTP/2 upstream (`PROXY_UPSTREAM_HTTP2`): per worker, `PROXY_UPSTREAM_H2_CONNECTIONS`
//! multiplexed connections per upstream address (`h2_pool`: recycled after a number of requests
//! or an age), requests spread round-robin over the addresses, the name re-resolved at most every
//! [`RESOLVE_EVERY`] (so `--scale app=N` replicas that come and go are followed).
//! In `auto` mode an upstream that does not offer HTTP/2 hands its requests back for HTTP/1.1.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::detach::{Detach, HoldErrors};
use super::dial::{DialError, Dialer};
use super::h2_pool::{Chosen, Pick, Pool};
use super::retry;
use super::types::UpstreamAddr;
use crate::body::ProxyBody;
use crate::config::settings::UPSTREAM_HTTP2;
use crate::config::{H2Pool, Upstream};

/// How long a resolved address list is used before the name is asked again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(1);
/// A PING every this long on each upstream connection; no answer within [`PING_TIMEOUT`] and
/// the connection is dropped (an app that vanished without closing its sockets).
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// What the upstream may send on one stream before the proxy passes it on (HTTP/2 stream
/// window): the most one answer holds in the proxy when its client takes nothing.
pub const STREAM_WINDOW: u32 = 256 * 1024;
/// The connection window: the largest HTTP/2 allows, so it is never the limit. Data the proxy
/// received but could not pass on (a client that stopped reading) is released as window only
/// when passed on; a connection window smaller than the sum of the stream windows would let a
/// few stalled streams take all of it, and every other stream on the connection would stop
/// (issue 26 item 1). Each stream stays bounded by [`STREAM_WINDOW`], and a stalled stream by
/// `PROXY_SEND_TIMEOUT`.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// The largest answer header list taken from the upstream (hyper's default, 16 KiB, refused
/// heads an HTTP/1.1 upstream could send); `PROXY_UPSTREAM_MAX_HEADER_SIZE`, checked per
/// answer, is the bound that decides.
const MAX_HEADER_LIST: u32 = 1024 * 1024;

/// Why a request could not be sent upstream (answered with 502).
#[derive(Debug, thiserror::Error)]
pub enum H2Error {
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error(
        "{addr} does not speak HTTP/2 (no h2 in ALPN), which {UPSTREAM_HTTP2}=true requires; set it to auto or false"
    )]
    NotH2 { addr: SocketAddr },
    #[error("HTTP/2 handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("upstream {addr}: {source}")]
    Request {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
}

/// How long `auto` mode keeps to HTTP/1.1 after the upstream declined HTTP/2, before it offers
/// HTTP/2 again (a redeployed upstream may speak it).
pub const FALLBACK_FOR: Duration = Duration::from_secs(30);

/// A request that could not be sent over HTTP/2. `unsent` is the request when it never left
/// (connection refused, not HTTP/2, connection closing), so it can still go another way.
pub struct H2Failure {
    pub error: H2Error,
    pub unsent: Option<Request<ProxyBody>>,
}

/// One worker's HTTP/2 upstream: cheap to share, all state behind one short-held lock.
pub struct H2Upstream {
    /// `auto`: an upstream without HTTP/2 is used over HTTP/1.1 instead of failing.
    fallback: bool,
    dialer: Dialer,
    upstream: Upstream,
    server_name: ServerName<'static>,
    /// `None`: `h2c://`, plain HTTP/2 with prior knowledge.
    tls: Option<TlsConnector>,
    state: Mutex<State>,
    /// Held by the one request that asks the resolver.
    lookup: tokio::sync::Mutex<()>,
    /// Exchanges the client abandoned, still waiting for their answer head ([`Detach`]).
    orphans: Arc<std::sync::atomic::AtomicUsize>,
}

/// The per-address dialing gate, and how the last attempt failed (so the requests that waited
/// for that attempt fail over at once instead of each trying again).
#[derive(Default)]
struct Dial {
    gate: Arc<tokio::sync::Mutex<LastFailure>>,
}

/// When and why the last dial to an address failed.
type LastFailure = Option<(Instant, String)>;

struct State {
    addrs: Vec<SocketAddr>,
    resolved: Option<Instant>,
    /// When the last lookup failed, and why (remembered for [`RESOLVE_EVERY`]).
    failed: Option<(Instant, String)>,
    conns: Pool,
    /// One dialer per address: a burst of requests that finds no connection waits for one
    /// connection instead of opening one each.
    dialing: Vec<(SocketAddr, Arc<Dial>)>,
    /// `auto` mode after the upstream declined HTTP/2: HTTP/1.1 until then.
    h1_until: Option<Instant>,
}

impl H2Upstream {
    /// `tls` is the upstream client configuration (ALPN is set to `h2` here); `None` speaks
    /// HTTP/2 over plain TCP (`h2c://`). With `fallback` (`auto`), an upstream that declines
    /// HTTP/2 is reported as such and left alone for [`FALLBACK_FOR`] (see [`H2Upstream::in_use`]).
    pub fn new(
        tls: Option<rustls::ClientConfig>,
        dialer: Dialer,
        upstream: &Upstream,
        pool: H2Pool,
        fallback: bool,
    ) -> Result<Self, rustls::pki_types::InvalidDnsNameError> {
        let tls = tls.map(|mut tls| {
            tls.alpn_protocols = vec![b"h2".to_vec()];
            TlsConnector::from(Arc::new(tls))
        });
        Ok(H2Upstream {
            fallback,
            dialer,
            upstream: upstream.clone(),
            server_name: ServerName::try_from(upstream.host.clone())?,
            tls,
            state: Mutex::new(State {
                addrs: Vec::new(),
                resolved: None,
                failed: None,
                conns: Pool::new(pool),
                dialing: Vec::new(),
                h1_until: None,
            }),
            lookup: tokio::sync::Mutex::new(()),
            orphans: Arc::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// False while `auto` mode uses HTTP/1.1 because the upstream declined HTTP/2.
    pub fn in_use(&self) -> bool {
        self.state().h1_until.is_none_or(|t| Instant::now() >= t)
    }

    /// Send `req` (an HTTP/2 request whose URI carries the authority to present) to the next
    /// address. A connection that cannot be made, or that closed before the request went out,
    /// is replaced by the next address's (every live address once, at most `MAX_TRIES`, plus one
    /// fresh connection). A bodiless request that failed before its answer head is sent again
    /// the same way when the upstream refused it unprocessed (GOAWAY above its last stream id,
    /// REFUSED_STREAM; RFC 9113 §8.7) or when its method is idempotent (as nginx's
    /// `proxy_next_upstream error`).
    pub async fn request(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, H2Failure> {
        let addrs = match self.addresses().await {
            Ok(a) => a,
            Err(error) => {
                return Err(H2Failure {
                    error,
                    unsent: Some(req),
                });
            }
        };
        let replay = retry::copy(&req);
        let mut req = req;
        let mut last = None;
        for addr in self.dialer.candidates(&addrs, 1) {
            let (id, mut sender, streams) = match self.sender(addr).await {
                Ok(s) => s,
                Err(e @ H2Error::NotH2 { .. }) if self.fallback => {
                    self.state().h1_until = Some(Instant::now() + FALLBACK_FOR);
                    tracing::info!(upstream = %addr, "the upstream does not offer HTTP/2; using HTTP/1.1 ({UPSTREAM_HTTP2}=auto)");
                    return Err(H2Failure {
                        error: e,
                        unsent: Some(req),
                    });
                }
                // `auto`, and the attempt this request waited for found no HTTP/2: this one goes
                // by HTTP/1.1 too, as quietly as the first.
                Err(e) if self.fallback && !self.in_use() => {
                    return Err(H2Failure {
                        error: e,
                        unsent: Some(req),
                    });
                }
                Err(e) => {
                    tracing::warn!(upstream = %addr, error = %common::error_chain(&e), "upstream connect failed");
                    last = Some(e);
                    continue;
                }
            };
            let exchange = held_exchange(&mut sender, streams, req).await;
            let sent = Detach::new(exchange, self.orphans.clone()).await;
            let mut e = match sent {
                Ok(mut resp) => {
                    resp.extensions_mut().insert(UpstreamAddr(addr));
                    return Ok(resp);
                }
                Err(e) => e,
            };
            let unsent = e.take_message();
            let source = e.into_error();
            if sender.is_closed() || retry::connection_failed(&source) {
                // The next request goes elsewhere or to a new connection.
                self.forget(id);
            }
            let again = match unsent {
                Some(unsent) => Some(unsent),
                None => replay
                    .as_ref()
                    .filter(|r| retry::may_resend(r, &source))
                    .map(retry::rebuild),
            };
            let error = H2Error::Request { addr, source };
            match again {
                Some(again) => {
                    tracing::debug!(error = %common::error_chain(&error), "upstream request not processed; sending it again");
                    req = again;
                    last = Some(error);
                }
                None => {
                    return Err(H2Failure {
                        error,
                        unsent: None,
                    });
                }
            }
        }
        Err(H2Failure {
            error: last.unwrap_or_else(|| DialError::NoAddress(self.upstream.host.clone()).into()),
            unsent: Some(req),
        })
    }

    /// The current addresses, asking the resolver again when the list is older than
    /// [`RESOLVE_EVERY`]. One lookup at a time: while one runs, the others use the previous
    /// list, or wait for its outcome when there is none; a failed lookup is remembered for
    /// [`RESOLVE_EVERY`] too (no getaddrinfo per request while the name does not resolve). When
    /// the name no longer resolves, only addresses with a connection still open are used (a
    /// stopped container's address would only time out); with none, the request fails (503).
    async fn addresses(&self) -> Result<Vec<SocketAddr>, H2Error> {
        if let Some(known) = self.known() {
            return known;
        }
        // Held across the lookup: a request dropped meanwhile releases it with its future.
        let _lookup = match self.lookup.try_lock() {
            Ok(g) => g,
            Err(_) => {
                let old = self.state().addrs.clone();
                if !old.is_empty() {
                    return Ok(old);
                }
                let g = self.lookup.lock().await;
                if let Some(known) = self.known() {
                    return known;
                }
                g
            }
        };
        if let Some(known) = self.known() {
            return known;
        }
        let found = self
            .dialer
            .resolve(&self.upstream.host, self.upstream.port)
            .await;
        let mut st = self.state();
        let error = match found {
            Ok(addrs) => {
                st.conns.keep(&addrs);
                st.dialing.retain(|(a, _)| addrs.contains(a));
                st.addrs = addrs;
                st.resolved = Some(Instant::now());
                st.failed = None;
                return Ok(st.addrs.clone());
            }
            Err(e) => e,
        };
        let live = st.conns.open_addrs();
        if live.is_empty() {
            st.addrs.clear();
            st.resolved = None;
            st.failed = Some((Instant::now(), error.to_string()));
            return Err(error.into());
        }
        tracing::warn!(upstream = %self.upstream, error = %common::error_chain(&error), "cannot re-resolve the upstream; using its open connections");
        st.addrs = live;
        st.resolved = Some(Instant::now());
        Ok(st.addrs.clone())
    }

    /// What the last lookup (under [`RESOLVE_EVERY`] ago) found, if it is still to be used.
    fn known(&self) -> Option<Result<Vec<SocketAddr>, H2Error>> {
        let st = self.state();
        if st.resolved.is_some_and(|t| t.elapsed() < RESOLVE_EVERY) {
            return Some(Ok(st.addrs.clone()));
        }
        let (_, why) = st
            .failed
            .as_ref()
            .filter(|(at, _)| at.elapsed() < RESOLVE_EVERY)?;
        Some(Err(DialError::Resolve {
            host: self.upstream.host.clone(),
            source: io::Error::other(format!("the last lookup: {why}")),
        }
        .into()))
    }

    /// No new request goes to connection `id` (it failed one).
    fn forget(&self, id: u64) {
        self.state().conns.forget(id);
    }

    /// The per-address dialing gate.
    fn gate(&self, addr: SocketAddr) -> Arc<Dial> {
        let mut st = self.state();
        match st.dialing.iter().find(|(a, _)| *a == addr) {
            Some((_, d)) => d.clone(),
            None => {
                let d = Arc::new(Dial::default());
                st.dialing.push((addr, d.clone()));
                d
            }
        }
    }

    /// A connection to `addr`: the pool's next, or a new one when the pool is short (one dial
    /// at a time per address). With a connection open, the request takes it while the new one
    /// is dialled in the background; only a request that finds none waits for a dial.
    async fn sender(self: &Arc<Self>, addr: SocketAddr) -> Result<Chosen, H2Error> {
        let spare = match self.state().conns.pick(addr) {
            Pick::Use(c) => return Ok(c),
            Pick::Grow(spare) => spare,
        };
        let dial = self.gate(addr);
        if let Some(c) = spare {
            if let Ok(gate) = dial.gate.clone().try_lock_owned() {
                self.grow_behind(addr, gate);
            }
            return Ok(c);
        }
        let waited_from = Instant::now();
        let mut last_failure = dial.gate.lock().await;
        if let Pick::Use(c) | Pick::Grow(Some(c)) = self.state().conns.pick(addr) {
            return Ok(c);
        }
        if let Some((_, why)) = last_failure.as_ref().filter(|(at, _)| *at >= waited_from) {
            return Err(DialError::Connect {
                addr,
                source: io::Error::other(format!("the attempt this request waited for: {why}")),
            }
            .into());
        }
        match self.connect(addr).await {
            Ok(sender) => {
                *last_failure = None;
                Ok(self.state().conns.add(addr, sender, 1))
            }
            Err(e) => {
                *last_failure = Some((Instant::now(), common::error_chain(&e)));
                Err(e)
            }
        }
    }

    /// One more connection to `addr`, dialled in the background (holding the address's gate,
    /// bounded by the connect timeout); it joins the pool when it is up.
    fn grow_behind(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut gate: tokio::sync::OwnedMutexGuard<LastFailure>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            match me.connect(addr).await {
                Ok(sender) => {
                    *gate = None;
                    me.state().conns.add(addr, sender, 0);
                }
                // `auto`: not an error, the next requests go by HTTP/1.1 (see `request`).
                Err(H2Error::NotH2 { .. }) if me.fallback => {
                    me.state().h1_until = Some(Instant::now() + FALLBACK_FOR);
                    tracing::info!(upstream = %addr, "the upstream does not offer HTTP/2; using HTTP/1.1 ({UPSTREAM_HTTP2}=auto)");
                }
                Err(e) => {
                    tracing::warn!(upstream = %addr, error = %common::error_chain(&e), "upstream connect failed (a spare connection)");
                    *gate = Some((Instant::now(), common::error_chain(&e)));
                }
            }
        });
    }

    /// A new connection to `addr`. An address that accepts TCP but fails or stalls the TLS or
    /// HTTP/2 handshake (a hung app) is marked down like one that refuses TCP; one that merely
    /// declines HTTP/2 is not.
    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<ProxyBody>, H2Error> {
        let tcp = self.dialer.tcp(addr).await?;
        let shaken = self.handshake(addr, tcp).await;
        if let Err(e) = &shaken
            && !matches!(e, H2Error::NotH2 { .. })
        {
            self.dialer.mark(addr, false);
        }
        shaken
    }

    /// TLS (ALPN `h2`, unless `h2c`) and the HTTP/2 handshake on `tcp`, within the connect
    /// timeout.
    async fn handshake(
        &self,
        addr: SocketAddr,
        tcp: tokio::net::TcpStream,
    ) -> Result<SendRequest<ProxyBody>, H2Error> {
        let timeout = self.dialer.connect_timeout();
        let Some(connector) = &self.tls else {
            return h2_handshake(addr, timeout, Box::new(tcp)).await;
        };
        let tls = tokio::time::timeout(timeout, connector.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|_| DialError::Timeout { addr, timeout })?
            .map_err(|source| match refused_h2(&source) {
                true => H2Error::NotH2 { addr },
                false => DialError::Connect { addr, source }.into(),
            })?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(H2Error::NotH2 { addr });
        }
        h2_handshake(addr, timeout, Box::new(tls)).await
    }
}

/// An upstream connection's byte stream, TLS (`https`) or plain (`h2c`): one type, so hyper's
/// HTTP/2 client is compiled once, not once per transport (102,272 bytes of static binary).
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The HTTP/2 handshake on `io` within `timeout`; the connection is driven by its own task.
async fn h2_handshake(
    addr: SocketAddr,
    timeout: Duration,
    io: Box<dyn Io>,
) -> Result<SendRequest<ProxyBody>, H2Error> {
    let handshake = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_EVERY)
        .keep_alive_timeout(PING_TIMEOUT)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake(TokioIo::new(io));
    let (sender, conn) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| DialError::Timeout { addr, timeout })?
        .map_err(|source| H2Error::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(upstream = %addr, error = %e, "upstream HTTP/2 connection ended");
        }
    });
    Ok(sender)
}

/// The exchange of `req` on `sender`, once one of the connection's stream permits is free (not
/// handed to h2 beyond what the upstream opens at once, see `h2_pool::MAX_STREAMS`; a client that
/// goes away meanwhile sent nothing), its body's client-side failure held until the answer head
/// (see `detach`). The permit goes with the answer head.
async fn held_exchange(
    sender: &mut SendRequest<ProxyBody>,
    streams: Arc<tokio::sync::Semaphore>,
    req: Request<ProxyBody>,
) -> impl std::future::Future<
    Output = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ProxyBody>>>,
> + Send
+ 'static {
    // The semaphore is never closed.
    let permit = streams.acquire_owned().await.ok();
    let (answered, wait) = tokio::sync::oneshot::channel::<()>();
    let held = req.map(|body| HoldErrors::new(body, wait).boxed());
    let exchange = sender.try_send_request(held);
    async move {
        let _answered = (answered, permit);
        exchange.await
    }
}

/// Whether a failed TLS handshake was the upstream refusing ALPN `h2`.
fn refused_h2(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            *e == rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
        })
}

#[cfg(test)]
mod tests;
