//! The app's settings: environment variables (each also as `NAME_FILE`), parsed and validated once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::env::{Env, EnvError};

/// Defaults, in one place (README's settings table mirrors these).
pub mod defaults {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;
    /// `APP_LISTEN`
    pub const LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8000);
    /// `APP_ENV`
    pub const ENV: super::Mode = super::Mode::Production;
    /// `APP_LOG`
    pub const LOG: &str = "info";
    /// `APP_DRAIN_TIMEOUT`
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    /// `APP_RELOAD_DEBOUNCE`
    pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(50);
}

/// Development watches the template folder and serves edits; production loads templates once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Production,
}

impl std::str::FromStr for Mode {
    type Err = &'static str;

    /// `APP_ENV`: `development` (or `dev`), `production` (or `prod`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "development" | "dev" => Ok(Mode::Development),
            "production" | "prod" => Ok(Mode::Production),
            _ => Err("expected development or production"),
        }
    }
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `APP_TLS_CERT` + `APP_TLS_KEY`.
    Files { cert: PathBuf, key: PathBuf },
    /// Neither set: an in-memory self-signed certificate for `app` and `localhost`.
    SelfSigned,
}

/// Everything the app needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub mode: Mode,
    /// `None`: the built-in template.
    pub templates: Option<PathBuf>,
    pub tls: TlsSource,
    pub log: String,
    pub drain_timeout: Duration,
    pub reload_debounce: Duration,
}

impl Config {
    /// Read and validate every `APP_*` setting. A value read from a
    /// `NAME_FILE` is never quoted in the error.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Self::read(env).map_err(|e| env.redact(e))
    }

    fn read(env: &Env) -> Result<Self, EnvError> {
        let mode = env.parsed("APP_ENV", defaults::ENV)?;
        let cert = env.path("APP_TLS_CERT")?;
        let key = env.path("APP_TLS_KEY")?;
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::SelfSigned,
            (Some(cert), None) => {
                return Err(EnvError::invalid(
                    "APP_TLS_KEY",
                    "",
                    format!(
                        "APP_TLS_CERT is set ({}) but APP_TLS_KEY is not; set both or neither",
                        cert.display()
                    ),
                ));
            }
            (None, Some(key)) => {
                return Err(EnvError::invalid(
                    "APP_TLS_CERT",
                    "",
                    format!(
                        "APP_TLS_KEY is set ({}) but APP_TLS_CERT is not; set both or neither",
                        key.display()
                    ),
                ));
            }
        };
        Ok(Config {
            listen: env.parsed("APP_LISTEN", defaults::LISTEN)?,
            mode,
            templates: env.path("APP_TEMPLATES")?,
            tls,
            log: env.string("APP_LOG", defaults::LOG)?,
            drain_timeout: env.duration("APP_DRAIN_TIMEOUT", defaults::DRAIN_TIMEOUT)?,
            reload_debounce: env.duration("APP_RELOAD_DEBOUNCE", defaults::RELOAD_DEBOUNCE)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply() {
        let cfg = Config::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults");
        assert_eq!(cfg.listen.port(), 8000);
        assert_eq!(cfg.mode, Mode::Production);
        assert_eq!(cfg.tls, TlsSource::SelfSigned);
        assert!(cfg.templates.is_none());
    }

    #[test]
    fn half_tls_pair_names_the_missing_variable() {
        let err = Config::from_env(&Env::from_pairs([("APP_TLS_CERT", "/x.crt")]))
            .expect_err("half pair");
        let msg = err.to_string();
        assert!(msg.starts_with("APP_TLS_KEY="), "{msg}");
        assert!(msg.contains("/x.crt"), "{msg}");
    }

    #[test]
    fn bad_mode_and_listen_are_named() {
        let err = Config::from_env(&Env::from_pairs([("APP_ENV", "staging")])).expect_err("mode");
        assert!(err.to_string().starts_with("APP_ENV="), "{err}");
        let err = Config::from_env(&Env::from_pairs([("APP_LISTEN", "nope")])).expect_err("addr");
        assert!(err.to_string().starts_with("APP_LISTEN="), "{err}");
    }
}
