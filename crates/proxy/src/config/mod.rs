//! The proxy's settings: each declared once in [`settings`] (name, type, default, help), read
//! from the environment (each also as `NAME_FILE`) and validated once at start-up into one typed
//! [`Config`]. A leaf: it owns every setting type (one `FromStr` each) and imports nothing else of
//! the crate. Bounds that are no setting live in [`defaults`].

pub mod defaults;
mod files;
mod inspect;
mod routes;
pub mod settings;
mod tls;
mod upstream;
mod values;

pub use files::{Coding, Compression, StaticFiles, StaticRoot, StaticRootProblem};
pub use inspect::Inspect;
pub use routes::{HostPattern, MAX_ROUTES, Route, Routes, RoutesError, Target, parse};
pub use tls::{TlsFiles, TlsName, TlsNames};
pub use upstream::{H2Pool, Scheme, Upstream, UpstreamConfig, UpstreamHttp2};
pub use values::{LogFormat, UpgradeProtocols};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::env::{Env, EnvError};
use common::server::Limits as ConnectionLimits;
use http::HeaderValue;
use ipnet::IpNet;

use settings::*;

/// Everything the proxy needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    pub https_port: u16,
    pub tls: TlsFiles,
    pub hsts: Option<HeaderValue>,
    /// `PROXY_UPSTREAM*`: the upstream settings every route's upstream shares, and the `*` route.
    pub upstream: UpstreamConfig,
    /// `PROXY_ROUTES` (or its file, watched): which upstream serves which host and path.
    pub routes: Routes,
    /// `PROXY_WORKERS`, resolved: at least 1.
    pub workers: usize,
    pub trusted_proxies: Vec<IpNet>,
    /// `PROXY_UPGRADE_PROTOCOLS`
    pub upgrade_protocols: UpgradeProtocols,
    /// `PROXY_UNDERSCORES_IN_HEADERS`: forward header fields whose names contain `_`.
    pub underscores_in_headers: bool,
    pub error_page: Option<PathBuf>,
    pub intercept_errors: bool,
    pub logs: LogConfig,
    /// `PROXY_ACCESS_LOG`
    pub access_log: bool,
    pub log: String,
    pub limits: Limits,
    /// `PROXY_STATIC`, `PROXY_STATIC_CACHE_CONTROL`
    pub static_files: StaticFiles,
    /// `PROXY_COMPRESSION*`
    pub compression: Compression,
    /// `PROXY_INSPECT_*`
    pub inspect: Inspect,
}

/// Where and how the proxy logs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `PROXY_LOG_DIR` (default `/var/log/proxy`).
    pub dir: PathBuf,
    /// `LOG_RETENTION`: a dated folder per start (true) or truncated files in `dir` (false).
    pub retention: bool,
    /// `PROXY_ACCESS_LOG_FORMAT`.
    pub format: LogFormat,
}

/// Every bound the proxy puts on clients: the connection loop's own ([`ConnectionLimits`],
/// shared with the app) and the per-request ones only the proxy enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Handshake, header and idle timeouts, header size, streams, connections, drain.
    pub connection: ConnectionLimits,
    /// `PROXY_BODY_TIMEOUT`: longest gap between two reads of a request body.
    pub body_timeout: Duration,
    /// `PROXY_MAX_URI_LENGTH`
    pub max_uri_length: usize,
    /// `PROXY_MAX_BODY_SIZE`; 0: unlimited.
    pub max_body_size: u64,
    /// `PROXY_TUNNEL_IDLE_TIMEOUT`: an upgrade tunnel silent both ways this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// `PROXY_UPSTREAM_MAX_HEADER_SIZE`: largest upstream answer head passed on (else 502).
    pub upstream_max_header_size: u64,
}

impl Config {
    /// Read and validate every setting in [`settings::ALL`]. A value read from a `NAME_FILE` is
    /// never quoted in the error.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Self::read(env).map_err(|e| env.redact(e))
    }

    fn read(env: &Env) -> Result<Self, EnvError> {
        let upstream = UpstreamConfig::from_env(env)?;
        Ok(Config {
            http_listen: env.read(&HTTP_LISTEN)?,
            https_listen: env.read(&HTTPS_LISTEN)?,
            https_port: env.read(&HTTPS_PORT)?.0,
            tls: TlsFiles::from_env(env)?,
            hsts: env.read(&HSTS)?.0,
            routes: Routes::from_env(env, &upstream.address)?,
            upstream,
            workers: env.read(&WORKERS)?.resolve(),
            trusted_proxies: env.read(&TRUSTED_PROXIES)?.0,
            upgrade_protocols: env.read(&UPGRADE_PROTOCOLS)?,
            underscores_in_headers: env.read(&UNDERSCORES_IN_HEADERS)?,
            error_page: env.read(&ERROR_PAGE)?,
            intercept_errors: env.read(&INTERCEPT_ERRORS)?,
            logs: LogConfig {
                dir: env.read(&LOG_DIR)?,
                retention: env.read(&LOG_RETENTION)?,
                format: env.read(&ACCESS_LOG_FORMAT)?,
            },
            access_log: env.read(&ACCESS_LOG)?,
            log: env.read(&LOG)?,
            limits: Limits::from_env(env)?,
            static_files: StaticFiles::from_env(env)?,
            compression: Compression::from_env(env)?,
            inspect: Inspect::from_env(env)?,
        })
    }
}

impl Limits {
    /// The limits and timeouts.
    fn from_env(env: &Env) -> Result<Self, EnvError> {
        let max_header_size = env.read(&MAX_HEADER_SIZE)?.0;
        if max_header_size < defaults::MIN_HEADER_SIZE {
            return Err(EnvError::invalid(
                MAX_HEADER_SIZE.name(),
                &max_header_size.to_string(),
                "must be at least 1k",
            ));
        }
        let connection = ConnectionLimits {
            handshake_timeout: env.read(&HANDSHAKE_TIMEOUT)?,
            header_read_timeout: env.read(&HEADER_TIMEOUT)?,
            max_header_bytes: usize::try_from(max_header_size).unwrap_or(usize::MAX),
            h2_max_concurrent_streams: env.read(&H2_MAX_STREAMS)?,
            // The HTTP/2 header list is bounded like the HTTP/1 header block.
            h2_max_header_list_size: u32::try_from(max_header_size).unwrap_or(u32::MAX),
            max_connections: env.read(&MAX_CONNECTIONS)?.0,
            drain_timeout: env.read(&DRAIN_TIMEOUT)?,
            idle_timeout: env.read(&KEEPALIVE_TIMEOUT)?,
            max_requests: Some(env.read(&KEEPALIVE_REQUESTS)?.0),
            max_lifetime: Some(env.read(&KEEPALIVE_LIFETIME)?),
            send_timeout: env.read(&SEND_TIMEOUT)?,
        };
        Ok(Limits {
            connection,
            body_timeout: env.read(&BODY_TIMEOUT)?,
            max_uri_length: env.read(&MAX_URI_LENGTH)?,
            max_body_size: env.read(&MAX_BODY_SIZE)?.0,
            tunnel_idle_timeout: env.read(&TUNNEL_IDLE_TIMEOUT)?,
            upstream_max_header_size: env.read(&UPSTREAM_MAX_HEADER_SIZE)?.0,
        })
    }
}

#[cfg(test)]
mod tests;
