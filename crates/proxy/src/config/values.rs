//! The small value types of single settings, one `FromStr` each: a port, a count of at least one,
//! the HSTS value, the worker count, trusted proxies, the tunnelled upgrade protocols, the access
//! log format.

use std::str::FromStr;

use http::HeaderValue;
use ipnet::IpNet;

use super::defaults;

common::value_from_str!(
    Port,
    AtLeastOne,
    Hsts,
    Workers,
    TrustedProxies,
    UpgradeProtocols,
    LogFormat
);

/// `PROXY_ACCESS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// nginx `combined`, byte for byte.
    Combined,
    /// One JSON object per line.
    Json,
}

/// `PROXY_UPGRADE_PROTOCOLS`: the `Upgrade` protocols tunnelled (lower case); any other upgrade
/// request is forwarded as a plain request, without its upgrade. Never `h2c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeProtocols(Vec<String>);

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
pub struct Port(pub u16);

impl FromStr for Port {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err("a port must be 1-65535"),
            Ok(n) => Ok(Port(n)),
        }
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

/// A count that must be at least 1 (`PROXY_MAX_CONNECTIONS`, `PROXY_KEEPALIVE_REQUESTS`).
pub struct AtLeastOne(pub usize);

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
pub struct Hsts(pub Option<HeaderValue>);

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
pub struct Workers(usize);

impl Workers {
    pub fn resolve(self) -> usize {
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
pub struct TrustedProxies(pub Vec<IpNet>);

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
