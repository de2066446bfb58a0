//! The crate's top-level error: why the proxy could not start (or a subcommand could not run).
//! Every variant's message names the setting it is about.

use crate::http::ErrorPageError;
use crate::logs::LogDirError;
use crate::routes::ReloadError;
use crate::tls::CertError;
use crate::upstream::UpstreamError;

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
    #[error(transparent)]
    Routes(#[from] ReloadError),
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Logs(#[from] LogDirError),
    #[error(transparent)]
    Bind(#[from] common::server::BindError),
    #[error("{0}")]
    Logging(String),
    #[error("cannot install the signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("flushing the logs: {0}")]
    Flush(#[source] std::io::Error),
}
