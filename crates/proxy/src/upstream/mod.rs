//! The upstream side of one worker: HTTP/2 (a few multiplexed connections per address), or
//! pooled HTTP/1.1 keep-alive connections, chosen per request (`PROXY_UPSTREAM_HTTP2`) with the
//! fallback of `auto`. Inside: `dial` (resolve, rotate, connect: shared by both), `h1`, `h2`, and `types`
//! (what they all pass around).

mod detach;
mod dial;
mod h1;
mod h2;
mod h2_pool;
mod retry;
mod types;

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;

use dial::DialError;
use dial::Dialer;
pub use dial::{Lookup, SystemLookup};
pub use types::UpstreamAddr;

use crate::body::{BoxError, ProxyBody};

use crate::config::settings::{UPSTREAM, UPSTREAM_CA};
use crate::config::{Scheme, Upstream, UpstreamConfig, UpstreamHttp2};

/// One worker's way to one upstream. Requests arrive as HTTP/1.1 requests for
/// `<scheme>://<upstream>/<path>` with the original `Host`; [`Client::send`] picks the protocol.
pub struct Client {
    h1: h1::Pool,
    /// HTTP/2 for `https` unless `PROXY_UPSTREAM_HTTP2=false`, always for `h2c`; upgrades still
    /// use `h1`.
    h2: Option<Arc<h2::H2Upstream>>,
    /// `host:port` of the upstream, for request URIs.
    authority: Authority,
    /// How long the answer's head may take.
    timeout: std::time::Duration,
    /// `https` (TLS) or `http` (plain TCP: `http://` and `h2c://`), for request URIs.
    scheme: http::uri::Scheme,
    /// Shared with both protocols: resolution and the addresses found down.
    dialer: Dialer,
    upstream: Upstream,
}

impl Client {
    /// The client for one upstream (a route's, or `PROXY_UPSTREAM`'s), resolving through
    /// `lookup`: its own pool, dialer (DNS re-resolution, addresses skipped after a failure)
    /// and HTTP/2 connections. `h2c` always speaks HTTP/2 (plain, prior knowledge), `http`
    /// HTTP/1.1 only, `https` as `PROXY_UPSTREAM_HTTP2` says.
    pub fn new(config: &UpstreamConfig, lookup: &Arc<dyn Lookup>) -> Result<Self, UpstreamError> {
        let tls = tls_config(config.ca.as_deref())?;
        // One dialer for both protocols: an address found down is skipped by both.
        let dialer = Dialer::new(lookup.clone(), config.connect_timeout, config.fail_timeout);
        let address = &config.address;
        let h2 = |tls, fallback| {
            h2::H2Upstream::new(tls, dialer.clone(), address, config.h2, fallback)
                .map(Arc::new)
                .map_err(|_| UpstreamError::ServerName(address.host.clone()))
        };
        let h2 = match (config.scheme, config.http2) {
            (Scheme::Http, _) | (Scheme::Https, UpstreamHttp2::Never) => None,
            (Scheme::H2c, _) => Some(h2(None, false)?),
            (Scheme::Https, mode) => Some(h2(Some(tls.clone()), mode == UpstreamHttp2::Auto)?),
        };
        Ok(Client {
            h1: h1::pool(tls, dialer.clone(), config.keepalive),
            h2,
            authority: authority(address)?,
            timeout: config.timeout,
            scheme: match config.scheme {
                Scheme::Https => http::uri::Scheme::HTTPS,
                Scheme::Http | Scheme::H2c => http::uri::Scheme::HTTP,
            },
            dialer,
            upstream: address.clone(),
        })
    }

    /// The upstream's addresses as its name resolves now.
    pub async fn resolve(&self) -> Result<Vec<std::net::SocketAddr>, dial::DialError> {
        self.dialer
            .resolve(&self.upstream.host, self.upstream.port)
            .await
    }

    /// `addr` is being skipped after a failed connect (`PROXY_UPSTREAM_FAIL_TIMEOUT`).
    pub fn is_down(&self, addr: std::net::SocketAddr) -> bool {
        self.dialer.is_down(addr)
    }

    /// `PROXY_UPSTREAM_TIMEOUT`: how long the answer's head may take, then 504.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// `<scheme>://<upstream><path_and_query>`, the URI every request is sent to.
    pub fn uri(&self, path_and_query: http::uri::PathAndQuery) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// Send `req` (HTTP/1.1 form, the original host in `host`) over HTTP/2 when that is in use
    /// and this is no upgrade, else over the HTTP/1.1 pool; `auto` falls back to HTTP/1.1 for
    /// an upstream that turns out not to speak HTTP/2.
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
        host: Authority,
        upgrade: bool,
    ) -> Result<Response<Incoming>, BoxError> {
        let h2 = match &self.h2 {
            Some(h2) if !upgrade && h2.in_use() => h2,
            _ => return Ok(self.h1.request(req).await?),
        };
        let host_value = req.headers().get(header::HOST).cloned();
        as_http2(&mut req, host)?;
        match h2.request(req).await {
            Ok(resp) => Ok(resp),
            // `auto` and the upstream does not speak HTTP/2: this one goes by HTTP/1.1.
            Err(failure) if !h2.in_use() && failure.unsent.is_some() => {
                let mut req = failure.unsent.ok_or("request lost")?;
                as_http1(&mut req, self.authority.clone(), host_value)?;
                Ok(self.h1.request(req).await?)
            }
            Err(failure) => Err(failure.error.into()),
        }
    }
}

/// HTTP/2 carries the host in `:authority`, taken from the URI; a `Host` header beside it would
/// be redundant (RFC 9113 §8.3.1).
fn as_http2<B>(req: &mut Request<B>, host: Authority) -> Result<(), BoxError> {
    let mut uri = std::mem::take(req.uri_mut()).into_parts();
    uri.authority = Some(host);
    *req.uri_mut() = Uri::from_parts(uri)?;
    req.headers_mut().remove(header::HOST);
    *req.version_mut() = Version::HTTP_2;
    Ok(())
}

/// Undo [`as_http2`]: the upstream's authority in the URI, the original host in `Host`.
fn as_http1<B>(
    req: &mut Request<B>,
    authority: Authority,
    host: Option<HeaderValue>,
) -> Result<(), BoxError> {
    let mut uri = std::mem::take(req.uri_mut()).into_parts();
    uri.authority = Some(authority);
    *req.uri_mut() = Uri::from_parts(uri)?;
    if let Some(host) = host {
        req.headers_mut().insert(header::HOST, host);
    }
    *req.version_mut() = Version::HTTP_11;
    Ok(())
}

/// An upstream set-up problem (start-up only).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{UPSTREAM_CA}={}: {source}", path.display())]
    Ca {
        path: std::path::PathBuf,
        #[source]
        source: common::tls::TlsError,
    },
    #[error("{UPSTREAM_CA}={}: no usable CA certificate: {source}", path.display())]
    CaRejected {
        path: std::path::PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{UPSTREAM}={0}: not a valid host:port")]
    Authority(String),
    #[error("{UPSTREAM}={0}: not a valid TLS server name")]
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

/// The authority requests are sent to (`host:port`, IPv6 in brackets).
fn authority(upstream: &Upstream) -> Result<http::uri::Authority, UpstreamError> {
    upstream
        .to_string()
        .parse()
        .map_err(|_| UpstreamError::Authority(upstream.to_string()))
}

/// Whether `error` (from [`Client::send`]) says the upstream name gave no address.
pub fn is_unresolved(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(d) = e.downcast_ref::<DialError>() {
            return d.is_unresolved();
        }
        if let Some(h2::H2Error::Dial(d)) = e.downcast_ref::<h2::H2Error>() {
            return d.is_unresolved();
        }
        source = e.source();
    }
    false
}
