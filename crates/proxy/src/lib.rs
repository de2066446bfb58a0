//! containerize's reverse proxy: nginx's job (TLS termination, 80→443 redirect, forwarding with
//! X-Forwarded-* headers, a custom error page, dated logs) as a library the binary and tests drive.

pub mod access_log;
pub mod body;
pub mod certs;
pub mod config;
pub mod error_log;
pub mod error_page;
pub mod forward;
pub mod handler;
pub mod hygiene;
pub mod log_dir;
pub mod redirect;
pub mod tls;
pub mod upstream;

use std::sync::Arc;

use common::server::{self, Transport};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::access_log::AccessLog;
use crate::certs::{CertError, CertStore};
pub use crate::config::Config;
use crate::error_page::{ErrorPageError, ErrorPages};
use crate::handler::Shared;
use crate::upstream::{Lookup, SystemLookup, UpstreamError};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] common::env::EnvError),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(transparent)]
    ErrorPage(#[from] ErrorPageError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Logs(#[from] log_dir::LogDirError),
}

/// A validated, ready-to-serve proxy: keypair loaded, error page compiled, client built.
pub struct Proxy {
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    certs: Arc<CertStore>,
    limits: server::Limits,
}

impl Proxy {
    /// Validate everything now; nothing half-configured ever serves.
    pub fn new(config: &Config, access: AccessLog) -> Result<Self, ProxyError> {
        Self::with_lookup(config, access, Arc::new(SystemLookup))
    }

    /// As [`Proxy::new`] with a custom upstream resolver (tests swap addresses with it).
    pub fn with_lookup(
        config: &Config,
        access: AccessLog,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, ProxyError> {
        let pages = ErrorPages::load(config.error_page.as_deref())?;
        let certs = CertStore::open(config.tls.clone(), tls::shared_provider())?;
        let tls = tls::server_config(certs.clone())?;
        let client = upstream::client(
            config.upstream_ca.as_deref(),
            lookup.clone(),
            config.upstream_connect_timeout,
            config.upstream_keepalive,
            false,
        )?;
        // Upgrades (WebSocket) always go over HTTP/1.1.
        let client_h2 = match config.upstream_http2 {
            true => Some(upstream::client(
                config.upstream_ca.as_deref(),
                lookup,
                config.upstream_connect_timeout,
                config.upstream_keepalive,
                true,
            )?),
            false => None,
        };
        let l = &config.limits;
        let limits = server::Limits {
            handshake_timeout: l.handshake_timeout,
            header_read_timeout: l.header_timeout,
            max_header_bytes: l.max_header_size,
            h2_max_concurrent_streams: l.h2_max_streams,
            h2_max_header_list_size: u32::try_from(l.max_header_size).unwrap_or(u32::MAX),
            max_connections: l.max_connections,
            drain_timeout: l.drain_timeout,
            idle_timeout: l.keepalive_timeout,
        };
        Ok(Proxy {
            shared: Arc::new(Shared {
                client,
                client_h2,
                upstream_authority: upstream::authority(&config.upstream)?,
                upstream_timeout: config.upstream_timeout,
                trusted: config.trusted_proxies.clone(),
                hsts: config.hsts.clone(),
                pages,
                intercept: config.intercept_errors,
                access,
                https_port: config.https_port,
                limits: config.limits.clone(),
            }),
            tls: Arc::new(tls),
            certs,
            limits,
        })
    }

    /// The keypair store (fingerprint, reload).
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    /// Serve both listeners until `shutdown` is cancelled, then drain (bounded) and return.
    pub async fn run(self, http: TcpListener, https: TcpListener, shutdown: CancellationToken) {
        self.certs.spawn_watcher(shutdown.clone());
        let shared = self.shared.clone();
        let plain = server::serve(
            http,
            Transport::Plain,
            self.limits.clone(),
            move |conn| {
                let shared = shared.clone();
                hyper::service::service_fn(move |req| handler::redirect(shared.clone(), conn, req))
            },
            shutdown.clone().cancelled_owned(),
        );
        let shared = self.shared.clone();
        let secure = server::serve(
            https,
            Transport::Tls(tokio_rustls::TlsAcceptor::from(self.tls)),
            self.limits,
            move |conn| {
                let shared = shared.clone();
                hyper::service::service_fn(move |req| handler::forward(shared.clone(), conn, req))
            },
            shutdown.cancelled_owned(),
        );
        tokio::join!(plain, secure);
    }
}
