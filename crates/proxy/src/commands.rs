//! What each subcommand does, for `main.rs` to dispatch to: serve (the default), `healthcheck`,
//! `cert`, `cert trust`, `cert generate`, `prepare-dirs` (in `prepare.rs`).

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, settings};
use crate::error::ProxyError;
use crate::logs::{AccessLog, Logs};
use crate::server::Proxy;
use crate::signals::Signals;
use crate::tls::{self, CertError};

/// How long `healthcheck` waits for the handshake.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Serve until SIGTERM/SIGINT: open the logs, install tracing, validate everything, bind, run,
/// drain, then flush the logs (also when start-up failed, so the reason is in error.log).
pub async fn serve(config: Config) -> Result<(), ProxyError> {
    let logs = Logs::open(&config.logs)?;
    logs.init_tracing(settings::LOG.name(), &config.log)
        .map_err(ProxyError::Logging)?;
    let result = serve_with_logs(&config, &logs).await;
    if let Err(e) = &result {
        tracing::error!("{}", common::error_chain(e));
    }
    logs.flush().map_err(ProxyError::Flush)?;
    result
}

async fn serve_with_logs(config: &Config, logs: &Logs) -> Result<(), ProxyError> {
    let access = if config.access_log {
        logs.access()
    } else {
        AccessLog::disabled()
    };
    let mut proxy = Proxy::new(config, access)?;
    if let Some(addr) = config.inspect.listen {
        let listener = common::server::bind(settings::INSPECT_LISTEN.name(), addr).await?;
        tracing::info!(inspector = %listener.local_addr().unwrap_or(addr), "inspector listening (plain HTTP; keep it on loopback)");
        proxy.inspect_on(listener);
    }
    let http = common::server::bind(settings::HTTP_LISTEN.name(), config.http_listen).await?;
    let https = common::server::bind(settings::HTTPS_LISTEN.name(), config.https_listen).await?;
    tracing::info!(
        http = %http.local_addr().unwrap_or(config.http_listen),
        https = %https.local_addr().unwrap_or(config.https_listen),
        upstream = %config.upstream.address,
        logs = %logs.dir().display(),
        fingerprint = %proxy.certs().fingerprint(),
        "proxy listening"
    );
    let shutdown = CancellationToken::new();
    Signals::new(shutdown.clone())
        .terminate()
        .reload_certs(proxy.certs().clone())
        .reload_error_page(proxy.pages().clone())
        .reload_routes(proxy.routes().clone())
        .reopen_logs(logs.clone())
        .spawn()
        .map_err(ProxyError::Signals)?;
    proxy.run(http, https, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

/// Complete a TLS handshake with the local HTTPS listener (no request is sent, so the check
/// neither reaches the app nor fills the access log); the served certificate's fingerprint.
pub async fn healthcheck(config: &Config) -> Result<String, common::client::ProbeError> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], config.https_listen.port()));
    let fingerprint = common::client::handshake(addr, HEALTHCHECK_TIMEOUT).await?;
    Ok(format!(
        "{addr} completed a TLS handshake (certificate SHA-256 {fingerprint})"
    ))
}

/// `proxy cert`: what the proxy would serve.
pub fn cert(config: &Config) -> Result<String, CertError> {
    tls::describe(&config.tls)
}

/// `proxy cert trust [--path PATH]`: how to trust the development CA on each OS, and undo it.
pub fn cert_trust(config: &Config, path: Option<&str>) -> Result<String, CertError> {
    tls::trust(&config.tls, path)
}

/// `proxy cert generate --out DIR [--force]`: a new self-signed pair in `dir`.
pub fn cert_generate(dir: &Path, force: bool) -> Result<String, CertError> {
    let (cert, key, info) = tls::generate_into_with(dir, force)?;
    Ok(format!(
        "wrote {} and {}\nSHA-256 fingerprint: {}\n",
        cert.display(),
        key.display(),
        info.fingerprint
    ))
}
