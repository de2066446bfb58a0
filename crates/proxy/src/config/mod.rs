//! The proxy's settings: environment variables (each also as `NAME_FILE`), parsed and validated
//! once at start-up into one typed [`Config`]. A leaf: it owns every setting type (one `FromStr`
//! each) and imports nothing else of the crate. Defaults live in [`defaults`].

pub mod defaults;
mod files;
mod inspect;
mod tls;

pub use files::{Coding, Compression, StaticFiles, StaticRoot, StaticRootProblem};
pub use inspect::Inspect;
pub use tls::{TlsFiles, TlsName, TlsNames};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use common::env::{Env, EnvError};
use common::server::Limits as ConnectionLimits;
use http::HeaderValue;
use ipnet::IpNet;

/// Everything the proxy needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    pub https_port: u16,
    pub tls: TlsFiles,
    pub hsts: Option<HeaderValue>,
    pub upstream: Upstream,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// `PROXY_UPSTREAM_FAIL_TIMEOUT`: an address whose connect failed is skipped this long.
    pub upstream_fail_timeout: Duration,
    pub upstream_keepalive: usize,
    pub upstream_http2: UpstreamHttp2,
    /// `PROXY_UPSTREAM_H2_*`: the HTTP/2 connections kept per upstream address.
    pub upstream_h2: H2Pool,
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

/// Where requests go: `host:port`, resolved again for new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

/// `PROXY_UPSTREAM_HTTP2`: which protocol carries requests to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamHttp2 {
    /// HTTP/2 when the upstream offers it by ALPN, else HTTP/1.1 (asked again every 30 s). The
    /// default: measured 1.2–1.5× the requests/s of HTTP/1.1 upstream hops.
    #[default]
    Auto,
    /// HTTP/2 only: an upstream without it is a 502.
    Always,
    /// HTTP/1.1 only (pooled keep-alive connections).
    Never,
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

/// `PROXY_ACCESS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// nginx `combined`, byte for byte.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
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
}

/// `PROXY_UPGRADE_PROTOCOLS`: the `Upgrade` protocols tunnelled (lower case); any other upgrade
/// request is forwarded as a plain request, without its upgrade. Never `h2c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeProtocols(Vec<String>);

impl Config {
    /// Read and validate every `PROXY_*` setting (and `LOG_RETENTION`). A value read from a
    /// `NAME_FILE` is never quoted in the error.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Self::read(env).map_err(|e| env.redact(e))
    }

    fn read(env: &Env) -> Result<Self, EnvError> {
        Ok(Config {
            http_listen: env.parsed("PROXY_HTTP_LISTEN", defaults::HTTP_LISTEN)?,
            https_listen: env.parsed("PROXY_HTTPS_LISTEN", defaults::HTTPS_LISTEN)?,
            https_port: env
                .parsed("PROXY_HTTPS_PORT", Port(defaults::HTTPS_PORT))?
                .0,
            tls: TlsFiles::from_env(env)?,
            hsts: env.parsed("PROXY_HSTS", Hsts::default())?.0,
            upstream: env.parsed("PROXY_UPSTREAM", Upstream::default())?,
            upstream_ca: env.path("PROXY_UPSTREAM_CA")?,
            upstream_timeout: env.duration("PROXY_UPSTREAM_TIMEOUT", defaults::UPSTREAM_TIMEOUT)?,
            upstream_connect_timeout: env.duration(
                "PROXY_UPSTREAM_CONNECT_TIMEOUT",
                defaults::UPSTREAM_CONNECT_TIMEOUT,
            )?,
            upstream_fail_timeout: env.duration(
                "PROXY_UPSTREAM_FAIL_TIMEOUT",
                defaults::UPSTREAM_FAIL_TIMEOUT,
            )?,
            upstream_keepalive: env
                .parsed("PROXY_UPSTREAM_KEEPALIVE", defaults::UPSTREAM_KEEPALIVE)?,
            upstream_http2: env.parsed("PROXY_UPSTREAM_HTTP2", UpstreamHttp2::default())?,
            upstream_h2: H2Pool::from_env(env)?,
            workers: env
                .parsed("PROXY_WORKERS", Workers(defaults::WORKERS))?
                .resolve(),
            trusted_proxies: env
                .parsed("PROXY_TRUSTED_PROXIES", TrustedProxies::default())?
                .0,
            upgrade_protocols: env
                .parsed("PROXY_UPGRADE_PROTOCOLS", UpgradeProtocols::default())?,
            underscores_in_headers: env.bool(
                "PROXY_UNDERSCORES_IN_HEADERS",
                defaults::UNDERSCORES_IN_HEADERS,
            )?,
            error_page: env.path("PROXY_ERROR_PAGE")?,
            intercept_errors: env.bool("PROXY_INTERCEPT_ERRORS", defaults::INTERCEPT_ERRORS)?,
            logs: LogConfig {
                dir: path_or(env, "PROXY_LOG_DIR", defaults::LOG_DIR)?,
                retention: env.bool("LOG_RETENTION", defaults::LOG_RETENTION)?,
                format: env.parsed("PROXY_ACCESS_LOG_FORMAT", LogFormat::default())?,
            },
            access_log: env.bool("PROXY_ACCESS_LOG", defaults::ACCESS_LOG)?,
            log: env.string("PROXY_LOG", defaults::LOG)?,
            limits: Limits::from_env(env)?,
            static_files: StaticFiles::from_env(env)?,
            compression: Compression::from_env(env)?,
            inspect: Inspect::from_env(env)?,
        })
    }
}

impl Limits {
    /// The `PROXY_*` limits and timeouts.
    fn from_env(env: &Env) -> Result<Self, EnvError> {
        let max_header_size = env.size("PROXY_MAX_HEADER_SIZE", defaults::MAX_HEADER_SIZE)?;
        if max_header_size < defaults::MIN_HEADER_SIZE {
            return Err(EnvError::invalid(
                "PROXY_MAX_HEADER_SIZE",
                &max_header_size.to_string(),
                "must be at least 1k",
            ));
        }
        let max_connections = env
            .parsed(
                "PROXY_MAX_CONNECTIONS",
                AtLeastOne(defaults::MAX_CONNECTIONS),
            )?
            .0;
        let connection = ConnectionLimits {
            handshake_timeout: env
                .duration("PROXY_HANDSHAKE_TIMEOUT", defaults::HANDSHAKE_TIMEOUT)?,
            header_read_timeout: env.duration("PROXY_HEADER_TIMEOUT", defaults::HEADER_TIMEOUT)?,
            max_header_bytes: usize::try_from(max_header_size).unwrap_or(usize::MAX),
            h2_max_concurrent_streams: env
                .parsed("PROXY_H2_MAX_STREAMS", defaults::H2_MAX_STREAMS)?,
            // The HTTP/2 header list is bounded like the HTTP/1 header block.
            h2_max_header_list_size: u32::try_from(max_header_size).unwrap_or(u32::MAX),
            max_connections,
            drain_timeout: env.duration("PROXY_DRAIN_TIMEOUT", defaults::DRAIN_TIMEOUT)?,
            idle_timeout: env.duration("PROXY_KEEPALIVE_TIMEOUT", defaults::KEEPALIVE_TIMEOUT)?,
            max_requests: Some(
                env.parsed(
                    "PROXY_KEEPALIVE_REQUESTS",
                    AtLeastOne(defaults::KEEPALIVE_REQUESTS),
                )?
                .0,
            ),
            max_lifetime: Some(
                env.duration("PROXY_KEEPALIVE_LIFETIME", defaults::KEEPALIVE_LIFETIME)?,
            ),
        };
        Ok(Limits {
            connection,
            body_timeout: env.duration("PROXY_BODY_TIMEOUT", defaults::BODY_TIMEOUT)?,
            max_uri_length: env.parsed("PROXY_MAX_URI_LENGTH", defaults::MAX_URI_LENGTH)?,
            max_body_size: env.size("PROXY_MAX_BODY_SIZE", defaults::MAX_BODY_SIZE)?,
            tunnel_idle_timeout: env
                .duration("PROXY_TUNNEL_IDLE_TIMEOUT", defaults::TUNNEL_IDLE_TIMEOUT)?,
        })
    }
}

/// A path setting with a default.
fn path_or(env: &Env, name: &str, default: &str) -> Result<PathBuf, EnvError> {
    Ok(env.path(name)?.unwrap_or_else(|| default.into()))
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            host: "app".into(),
            port: 8000,
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Upstream {
    type Err = String;

    /// `PROXY_UPSTREAM`: `host:port`, an optional `https://` in front, IPv6 in brackets.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = s.strip_prefix("https://").unwrap_or(s);
        let auth: http::uri::Authority =
            s.parse().map_err(|e| format!("expected host:port ({e})"))?;
        if s.contains('@') || s.contains('/') {
            return Err("expected host:port, without user or path".into());
        }
        let port = auth
            .port_u16()
            .ok_or("expected host:port (the port is missing)")?;
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        Ok(Upstream {
            host: host.to_owned(),
            port,
        })
    }
}

impl FromStr for UpstreamHttp2 {
    type Err = &'static str;

    /// `PROXY_UPSTREAM_HTTP2`: `auto`, or a boolean (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(UpstreamHttp2::Auto),
            "true" | "1" | "yes" | "on" => Ok(UpstreamHttp2::Always),
            "false" | "0" | "no" | "off" => Ok(UpstreamHttp2::Never),
            _ => Err("expected auto, true or false"),
        }
    }
}

impl FromStr for LogFormat {
    type Err = &'static str;

    /// `PROXY_ACCESS_LOG_FORMAT`: `combined` or `json` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "combined" => Ok(LogFormat::Combined),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected combined or json"),
        }
    }
}

/// `PROXY_HTTPS_PORT`: 1–65535.
struct Port(u16);

impl FromStr for Port {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err("a port must be 1-65535"),
            Ok(n) => Ok(Port(n)),
        }
    }
}

impl Default for UpgradeProtocols {
    fn default() -> Self {
        UpgradeProtocols(
            defaults::UPGRADE_PROTOCOLS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
        )
    }
}

impl UpgradeProtocols {
    /// Is `token` (one protocol of an `Upgrade` field, `name` or `name/version`) tunnelled? A
    /// listed name without a version allows every version. `h2c` never is.
    pub fn allows(&self, token: &str) -> bool {
        let name = token.split('/').next().unwrap_or(token);
        !name.eq_ignore_ascii_case("h2c")
            && self.0.iter().any(|p| {
                p.eq_ignore_ascii_case(token) || (!p.contains('/') && p.eq_ignore_ascii_case(name))
            })
    }
}

impl std::fmt::Display for UpgradeProtocols {
    /// The list as it is set: `websocket`, comma-separated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

impl FromStr for UpgradeProtocols {
    type Err = String;

    /// `websocket`, or a comma-separated list of protocol tokens (`name` or `name/version`, any
    /// case); empty: no upgrade is tunnelled.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let token = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let mut parts = p.splitn(2, '/');
                let name = parts.next().unwrap_or_default();
                if name.eq_ignore_ascii_case("h2c") {
                    return Err("h2c is never tunnelled: an h2c upgrade through a proxy \
                                bypasses its request checks (h2c smuggling)"
                        .to_owned());
                }
                if !token(name) || !parts.next().is_none_or(token) {
                    return Err(format!("{p}: expected a protocol token such as websocket"));
                }
                Ok(p.to_ascii_lowercase())
            })
            .collect::<Result<_, _>>()
            .map(UpgradeProtocols)
    }
}

/// The HTTP/2 upstream connections of one worker to one address: how many, and when one is
/// replaced by a new one (gracefully: what it carries completes), so that a balancer that
/// balances per connection (a Swarm VIP, a cloud load balancer) keeps spreading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Pool {
    /// `PROXY_UPSTREAM_H2_CONNECTIONS`
    pub connections: usize,
    /// `PROXY_UPSTREAM_H2_MAX_REQUESTS`
    pub max_requests: usize,
    /// `PROXY_UPSTREAM_H2_LIFETIME`
    pub lifetime: Duration,
}

impl H2Pool {
    fn from_env(env: &Env) -> Result<Self, EnvError> {
        let name = "PROXY_UPSTREAM_H2_LIFETIME";
        let lifetime = env.duration(name, defaults::UPSTREAM_H2_LIFETIME)?;
        if lifetime.is_zero() {
            let why = "must be above 0 (a connection would be replaced at every request)";
            return Err(EnvError::invalid(name, "0s", why));
        }
        Ok(H2Pool {
            connections: env
                .parsed(
                    "PROXY_UPSTREAM_H2_CONNECTIONS",
                    AtLeastOne(defaults::UPSTREAM_H2_CONNECTIONS),
                )?
                .0,
            max_requests: env
                .parsed(
                    "PROXY_UPSTREAM_H2_MAX_REQUESTS",
                    AtLeastOne(defaults::UPSTREAM_H2_MAX_REQUESTS),
                )?
                .0,
            lifetime,
        })
    }
}

/// A count that must be at least 1 (`PROXY_MAX_CONNECTIONS`, `PROXY_KEEPALIVE_REQUESTS`).
struct AtLeastOne(usize);

impl FromStr for AtLeastOne {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<usize>() {
            Ok(0) => Err("must be at least 1"),
            Ok(n) => Ok(AtLeastOne(n)),
            Err(_) => Err("expected a whole number"),
        }
    }
}

/// `PROXY_HSTS`: the header value; empty turns it off.
struct Hsts(Option<HeaderValue>);

impl Default for Hsts {
    fn default() -> Self {
        Hsts(Some(HeaderValue::from_static(defaults::HSTS)))
    }
}

impl FromStr for Hsts {
    type Err = http::header::InvalidHeaderValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Ok(Hsts(None)),
            v => HeaderValue::from_str(v).map(|v| Hsts(Some(v))),
        }
    }
}

/// `PROXY_WORKERS`: 0 is one per CPU the process may run on; at most
/// [`defaults::MAX_WORKERS`].
struct Workers(usize);

impl Workers {
    fn resolve(self) -> usize {
        match self.0 {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl FromStr for Workers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<usize>() {
            Ok(n) if n > defaults::MAX_WORKERS => Err(format!("at most {}", defaults::MAX_WORKERS)),
            Ok(n) => Ok(Workers(n)),
            Err(e) => Err(format!("expected a number of threads ({e})")),
        }
    }
}

/// `PROXY_TRUSTED_PROXIES`: `10.0.0.0/8, 172.16.0.0/12, 192.0.2.1` (a bare address is a /32 or
/// /128).
#[derive(Default)]
struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{s}: expected a CIDR such as 10.0.0.0/8 or an IP address")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

#[cfg(test)]
mod tests;
