//! Log capture for tests that assert on what the proxy logs at INFO (error.log only has WARN
//! and above), and start-up errors of proxies expected not to start.

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::env::Env;

/// Log lines at INFO and above, captured from the current thread (a current-thread runtime's
/// test sees the proxy's own events, the watcher's included).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Capture INFO and above on this thread until the guard is dropped.
    pub fn info() -> (Captured, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(captured.clone())
                .with_ansi(false)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        );
        (captured, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Why a proxy on the keypair folder `tls_dir` (settings as `TestProxy` uses them, plus
/// `extra`) refuses to start. Panics when it starts.
pub fn start_up_error(tls_dir: &Path, extra: &[(&str, &str)]) -> String {
    let logs = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| tls_dir.join(name).display().to_string();
    let mut pairs = vec![
        ("PROXY_UPSTREAM".to_owned(), "127.0.0.1:9".to_owned()),
        ("PROXY_TLS_CERT".to_owned(), path("localhost.crt")),
        ("PROXY_TLS_KEY".to_owned(), path("localhost.key")),
        (
            "PROXY_LOG_DIR".to_owned(),
            logs.path().display().to_string(),
        ),
        ("LOG_RETENTION".to_owned(), "false".to_owned()),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = proxy::Config::from_env(&Env::from_pairs(pairs)).expect("config");
    let logs = proxy::Logs::open(&config.logs).expect("logs");
    match proxy::Proxy::new(&config, logs.access()) {
        Ok(_) => panic!(
            "the proxy started on a bad keypair in {}",
            tls_dir.display()
        ),
        Err(e) => e.to_string(),
    }
}
