//! What one upstream is and how it is reached: [`UpstreamConfig`] (address, scheme, CA, timeouts,
//! keep-alive, the HTTP/2 policy and pool), read from the `PROXY_UPSTREAM*` settings. A route will
//! own one; `upstream::Client` is built from one.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use common::env::{Env, EnvError};

use super::settings::{
    UPSTREAM, UPSTREAM_CA, UPSTREAM_CONNECT_TIMEOUT, UPSTREAM_FAIL_TIMEOUT,
    UPSTREAM_H2_CONNECTIONS, UPSTREAM_H2_LIFETIME, UPSTREAM_H2_MAX_REQUESTS, UPSTREAM_HTTP2,
    UPSTREAM_KEEPALIVE, UPSTREAM_TIMEOUT,
};

/// One upstream and every setting of the way to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// `PROXY_UPSTREAM`: where requests go.
    pub address: Upstream,
    /// How the upstream is spoken to.
    pub scheme: Scheme,
    /// `PROXY_UPSTREAM_CA`: `None`, the upstream's certificate is not verified.
    pub ca: Option<PathBuf>,
    /// `PROXY_UPSTREAM_TIMEOUT`: the longest silence of the upstream (a gap, never a total).
    pub timeout: Duration,
    /// `PROXY_UPSTREAM_CONNECT_TIMEOUT`: one address's connect.
    pub connect_timeout: Duration,
    /// `PROXY_UPSTREAM_FAIL_TIMEOUT`: an address whose connect failed is skipped this long.
    pub fail_timeout: Duration,
    /// `PROXY_UPSTREAM_KEEPALIVE`: idle pooled HTTP/1.1 connections per worker.
    pub keepalive: usize,
    /// `PROXY_UPSTREAM_HTTP2`
    pub http2: UpstreamHttp2,
    /// `PROXY_UPSTREAM_H2_*`: the HTTP/2 connections kept per address.
    pub h2: H2Pool,
}

/// How an upstream is spoken to (a route's URL scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// TLS; HTTP/2 by ALPN or HTTP/1.1 (`PROXY_UPSTREAM_HTTP2`), `PROXY_UPSTREAM_CA`.
    #[default]
    Https,
    /// Plain HTTP/1.1 (what dev servers speak).
    Http,
    /// Plain HTTP/2 with prior knowledge (gRPC servers).
    H2c,
}

impl Scheme {
    /// `https`, `http` or `h2c` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "https" => Some(Scheme::Https),
            "http" => Some(Scheme::Http),
            "h2c" => Some(Scheme::H2c),
            _ => None,
        }
    }

    /// The port when a URL names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Https => 443,
            Scheme::Http | Scheme::H2c => 80,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Https => "https",
            Scheme::Http => "http",
            Scheme::H2c => "h2c",
        }
    }
}

/// Where requests go: `host:port`, resolved again for new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

/// `PROXY_UPSTREAM_HTTP2`: which protocol carries requests to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamHttp2 {
    /// HTTP/2 when the upstream offers it by ALPN, else HTTP/1.1 (asked again every 30 s). The
    /// default: measured 1.2–1.5× the requests/s of HTTP/1.1 upstream hops.
    Auto,
    /// HTTP/2 only: an upstream without it is a 502.
    Always,
    /// HTTP/1.1 only (pooled keep-alive connections).
    Never,
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

impl UpstreamConfig {
    /// The `PROXY_UPSTREAM*` settings.
    pub(super) fn from_env(env: &Env) -> Result<Self, EnvError> {
        let lifetime = env.read(&UPSTREAM_H2_LIFETIME)?;
        if lifetime.is_zero() {
            let why = "must be above 0 (a connection would be replaced at every request)";
            return Err(EnvError::invalid(UPSTREAM_H2_LIFETIME.name(), "0s", why));
        }
        Ok(UpstreamConfig {
            address: env.read(&UPSTREAM)?,
            scheme: Scheme::Https,
            ca: env.read(&UPSTREAM_CA)?,
            timeout: env.read(&UPSTREAM_TIMEOUT)?,
            connect_timeout: env.read(&UPSTREAM_CONNECT_TIMEOUT)?,
            fail_timeout: env.read(&UPSTREAM_FAIL_TIMEOUT)?,
            keepalive: env.read(&UPSTREAM_KEEPALIVE)?,
            http2: env.read(&UPSTREAM_HTTP2)?,
            h2: H2Pool {
                connections: env.read(&UPSTREAM_H2_CONNECTIONS)?.0,
                max_requests: env.read(&UPSTREAM_H2_MAX_REQUESTS)?.0,
                lifetime,
            },
        })
    }
}

common::value_from_str!(Upstream, UpstreamHttp2);

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
