//! The app's settings, each declared once (name, type, default, help) in `settings!` below, and
//! the typed [`Config`] they are read into (each also as `NAME_FILE`), validated once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::env::{Env, EnvError};

common::settings! {
    LISTEN: SocketAddr = "APP_LISTEN", "0.0.0.0:8000", "address and port (HTTPS only)";
    ENV: Mode = "APP_ENV", "production",
        "development: watch the template folder and serve edits; production: load once";
    TEMPLATES: Option<PathBuf> = "APP_TEMPLATES", "", "folder holding index.txt; empty: built-in";
    TLS_CERT: Option<PathBuf> = "APP_TLS_CERT", "",
        "PEM certificate chain, leaf first; empty: generated in memory";
    TLS_KEY: Option<PathBuf> = "APP_TLS_KEY", "", "PEM private key; set both or neither";
    LOG: String = "APP_LOG", "info", "log filter, e.g. info or app=debug,info";
    DRAIN_TIMEOUT: Duration = "APP_DRAIN_TIMEOUT", "10s",
        "on SIGTERM/SIGINT, how long in-flight requests may finish";
    RELOAD_DEBOUNCE: Duration = "APP_RELOAD_DEBOUNCE", "50ms",
        "development: quiet time after a template change before it is re-read";
}

/// Development watches the template folder and serves edits; production loads templates once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Production,
}

common::value_from_str!(Mode);

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
        let mode = env.read(&ENV)?;
        let cert = env.read(&TLS_CERT)?;
        let key = env.read(&TLS_KEY)?;
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (None, None) => TlsSource::SelfSigned,
            (Some(cert), None) => {
                return Err(EnvError::invalid(
                    TLS_KEY.name(),
                    "",
                    format!(
                        "{TLS_CERT} is set ({}) but {TLS_KEY} is not; set both or neither",
                        cert.display()
                    ),
                ));
            }
            (None, Some(key)) => {
                return Err(EnvError::invalid(
                    TLS_CERT.name(),
                    "",
                    format!(
                        "{TLS_KEY} is set ({}) but {TLS_CERT} is not; set both or neither",
                        key.display()
                    ),
                ));
            }
        };
        Ok(Config {
            listen: env.read(&LISTEN)?,
            mode,
            templates: env.read(&TEMPLATES)?,
            tls,
            log: env.read(&LOG)?,
            drain_timeout: env.read(&DRAIN_TIMEOUT)?,
            reload_debounce: env.read(&RELOAD_DEBOUNCE)?,
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
