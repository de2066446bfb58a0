//! The keypair settings: where the pair and the development CA live, whether the proxy may
//! generate (and renew) them, the names a generated leaf is for (`PROXY_TLS_NAMES`, one
//! `FromStr`), and how often renewal is checked.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use common::env::{Env, EnvError};

use super::defaults;
use super::settings::{TLS_CERT, TLS_GENERATE, TLS_KEY, TLS_NAMES, TLS_RENEW_INTERVAL};

common::value_from_str!(TlsNames);

/// Where the keypair lives, whether a missing pair may be generated, and what a generated one
/// is for.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `PROXY_TLS_GENERATE`: create the development CA and its leaf in a fresh folder, and renew
    /// the leaf while `ca.key` is there. Off: the proxy never writes a key.
    pub generate: bool,
    /// `ca.crt` in the folder of `cert`: the development CA's certificate.
    pub ca_cert: PathBuf,
    /// `ca.key` in the folder of `cert`: with it the proxy issues and renews its leaf.
    pub ca_key: PathBuf,
    /// `PROXY_TLS_NAMES`: the SANs of a generated leaf and the CA's name constraints.
    pub names: TlsNames,
    /// `PROXY_TLS_RENEW_INTERVAL`: how often the CA-issued leaf is checked for renewal.
    pub renew_interval: Duration,
}

impl TlsFiles {
    /// `localhost.crt` and `localhost.key` in `dir` (with the CA beside them), generation
    /// allowed, the default names and renewal interval.
    pub fn in_dir(dir: &Path) -> Self {
        Self::at(
            dir.join(defaults::CERT_NAME),
            dir.join(defaults::KEY_NAME),
            true,
        )
    }

    /// The pair at `cert`/`key`, the CA files in `cert`'s folder, default names and interval.
    pub fn at(cert: PathBuf, key: PathBuf, generate: bool) -> Self {
        let dir = match cert.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        TlsFiles {
            ca_cert: dir.join(defaults::CA_CERT_NAME),
            ca_key: dir.join(defaults::CA_KEY_NAME),
            cert,
            key,
            generate,
            names: TLS_NAMES.default_value(),
            renew_interval: TLS_RENEW_INTERVAL.default_value(),
        }
    }

    /// `PROXY_TLS_CERT`, `PROXY_TLS_KEY`, `PROXY_TLS_GENERATE`, `PROXY_TLS_NAMES`,
    /// `PROXY_TLS_RENEW_INTERVAL`.
    pub(super) fn from_env(env: &Env) -> Result<Self, EnvError> {
        let mut files = TlsFiles::at(
            env.read(&TLS_CERT)?,
            env.read(&TLS_KEY)?,
            env.read(&TLS_GENERATE)?,
        );
        files.names = env.read(&TLS_NAMES)?;
        files.renew_interval = env.read(&TLS_RENEW_INTERVAL)?;
        let (min, max) = defaults::TLS_RENEW_INTERVAL_RANGE;
        if !(min..=max).contains(&files.renew_interval) {
            return Err(EnvError::invalid(
                TLS_RENEW_INTERVAL.name(),
                &format!("{:?}", files.renew_interval),
                "must be between 1s and 24h",
            ));
        }
        Ok(files)
    }
}

/// One name a generated leaf is valid for: a DNS name or an IP address. A wildcard `*.` label
/// needs two labels after it (`*.app.localhost`, not `*.localhost`): webpki, Firefox and NSS
/// refuse a certificate naming `*.localhost` once its issuer has name constraints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TlsName {
    /// Lower case, no trailing dot; `*.app.example.test` for a wildcard.
    Dns(String),
    Ip(IpAddr),
}

impl TlsName {
    /// The DNS subtree a name constraint needs for this name: the name without its wildcard
    /// label (RFC 5280: `localhost` covers `localhost` and every name under it).
    pub fn dns_subtree(&self) -> Option<&str> {
        match self {
            TlsName::Dns(d) => Some(d.strip_prefix("*.").unwrap_or(d)),
            TlsName::Ip(_) => None,
        }
    }
}

impl fmt::Display for TlsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsName::Dns(d) => f.write_str(d),
            TlsName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for TlsName {
    type Err = String;

    /// `localhost`, `*.localhost`, `myhost.lan`, `127.0.0.1`, `::1` (or `[::1]`), any case.
    fn from_str(text: &str) -> Result<Self, String> {
        let s = text.trim();
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(TlsName::Ip(ip));
        }
        let name = s.to_ascii_lowercase();
        let base = name.strip_prefix("*.").unwrap_or(&name);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.len() > 253 || !base.split('.').all(label_ok) {
            return Err(format!(
                "{s}: expected a DNS name (letters, digits, '-', dots; a leading '*.' for a \
                 wildcard) or an IP address"
            ));
        }
        if base.len() < name.len() && !base.contains('.') {
            return Err(format!(
                "{s}: a wildcard needs two labels after '*.' (browsers and rustls refuse a \
                 certificate with {s}); list the names instead, e.g. app.{base}: the CA's \
                 constraint {base} already covers every name under it"
            ));
        }
        Ok(TlsName::Dns(name))
    }
}

/// `PROXY_TLS_NAMES`: comma- or space-separated, duplicates dropped, at least one DNS name, at
/// most [`defaults::MAX_TLS_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsNames(pub Vec<TlsName>);

impl Default for TlsNames {
    fn default() -> Self {
        TLS_NAMES.default_value()
    }
}

impl TlsNames {
    /// Each name as written in a certificate (IP addresses in their canonical form).
    pub fn strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for TlsNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.strings().join(", "))
    }
}

impl FromStr for TlsNames {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut names: Vec<TlsName> = Vec::new();
        for part in text.split([',', ' ', '\t', '\n']).filter(|p| !p.is_empty()) {
            let name: TlsName = part.parse()?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.len() > defaults::MAX_TLS_NAMES {
            return Err(format!("at most {} names", defaults::MAX_TLS_NAMES));
        }
        if !names.iter().any(|n| matches!(n, TlsName::Dns(_))) {
            return Err("at least one DNS name is needed (e.g. localhost)".into());
        }
        Ok(TlsNames(names))
    }
}
