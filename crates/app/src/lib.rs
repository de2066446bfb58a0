//! containerize's app: a small HTTPS service (the Flask/Gunicorn replacement) that answers a quote
//! and the forwarding headers it received. `main.rs` parses the config and calls [`run`].

pub mod config;
pub mod routes;
pub mod templates;

use std::future::Future;
use std::sync::Arc;

use common::server::{self, Limits, Transport};
use common::tls::{Keypair, TlsError};
use tokio::net::TcpListener;

pub use config::Config;
use config::TlsSource;
use templates::{TemplateError, Templates};

/// The app's send timeout: an hour, not the 60 s the proxy gives its clients. The app's client is
/// the proxy, which passes an answer on only as fast as its own client takes it and bounds that
/// client itself (`send_timeout` there); a slow but live client's answer must not be cut here
/// because the proxy's stream window (256 KiB) drains slower than one window a minute.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] common::env::EnvError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{cert}/{key}: {0}", cert = config::TLS_CERT, key = config::TLS_KEY)]
    Tls(#[source] TlsError),
    #[error("TLS set-up failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Everything validated at start-up, ready to serve.
pub struct App {
    templates: Templates,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    /// SHA-256 fingerprint of the certificate served.
    pub fingerprint: String,
}

impl App {
    /// Load templates and TLS material; any problem is an error naming the setting.
    pub fn new(config: &Config) -> Result<Self, AppError> {
        let templates = Templates::load(
            config.templates.as_deref(),
            config.mode,
            config.reload_debounce,
        )?;
        let provider = common::tls::provider();
        let (keypair, cert_path, key_path) = match &config.tls {
            TlsSource::Files { cert, key } => (
                Keypair::load(cert, key).map_err(AppError::Tls)?,
                cert.clone(),
                key.clone(),
            ),
            TlsSource::SelfSigned => {
                let ss = common::tls::self_signed(&["app", "localhost", "127.0.0.1"], 365)
                    .map_err(AppError::Tls)?;
                (ss.keypair, "(generated)".into(), "(generated)".into())
            }
        };
        let certified = keypair
            .certified(&provider, &cert_path, &key_path)
            .map_err(AppError::Tls)?;
        let fingerprint = common::tls::fingerprint(&keypair.chain[0]);
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless tickets: a proxy re-opening many pooled connections resumes its sessions
        // instead of paying a full handshake each time (the default cache holds 256).
        tls.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        Ok(App {
            templates,
            tls: Arc::new(tls),
            limits: Limits {
                drain_timeout: config.drain_timeout,
                send_timeout: SEND_TIMEOUT,
                ..Limits::default()
            },
            fingerprint,
        })
    }

    /// Serve HTTPS on `listener` until `shutdown` resolves, then drain in-flight requests.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let templates = self.templates;
        server::serve(
            listener,
            Transport::Tls(tokio_rustls::TlsAcceptor::from(self.tls)),
            self.limits,
            move |_conn| {
                let templates = templates.clone();
                hyper::service::service_fn(move |req| routes::handle(templates.clone(), req))
            },
            shutdown,
        )
        .await;
    }
}
