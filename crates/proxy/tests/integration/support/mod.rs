//! Test support: start the real proxy in-process on 127.0.0.1:0 (real TLS, real log folder,
//! real keypair folder), the real app or a test upstream behind it, and real HTTP clients.
//! Every server is stopped by dropping its guard. Beside it: the real binary as a child process
//! (`binary`), raw HTTP/1.1 and HTTP/2 clients (`raw`, `h2raw`), test upstreams (`upstream`,
//! `recorder`), a steady load (`load`) and log capture (`capture`).

#![allow(dead_code)]

pub mod binary;
pub mod capture;
pub mod h2raw;
pub mod load;
pub mod raw;
pub mod recorder;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use capture::{Captured, start_up_error};
use common::env::Env;
use proxy::{Logs, Lookup};
pub use testkit::{client, client_h1, eventually, served_fingerprint};
use tokio_util::sync::CancellationToken;

/// A running proxy. Dropping it cancels the shutdown token (graceful drain).
pub struct TestProxy {
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// The inspector's listener, when `PROXY_INSPECT_LISTEN` is set.
    pub inspect: Option<SocketAddr>,
    pub logs: Logs,
    pub certs: Arc<proxy::CertStore>,
    /// The live routes (reload them as the watcher and SIGHUP do).
    pub routes: proxy::LiveRoutes,
    /// The keypair folder (`localhost.crt`/`localhost.key`, generated on start unless given).
    pub tls_dir: PathBuf,
    /// The log folder given as `PROXY_LOG_DIR`.
    pub log_dir: PathBuf,
    pub shutdown: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

/// How to start a proxy.
pub struct ProxyOptions {
    /// Extra settings (override the test defaults below).
    pub env: Vec<(String, String)>,
    /// Swap upstream addresses at will (default: the system resolver).
    pub lookup: Option<Arc<dyn Lookup>>,
    /// Use this folder for the keypair instead of a fresh temp folder.
    pub tls_dir: Option<PathBuf>,
    /// Use this folder for logs instead of a fresh temp folder.
    pub log_dir: Option<PathBuf>,
}

impl ProxyOptions {
    pub fn new(env: &[(&str, &str)]) -> Self {
        ProxyOptions {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            lookup: None,
            tls_dir: None,
            log_dir: None,
        }
    }
}

impl TestProxy {
    /// A proxy in front of `upstream` (`host:port`) with these extra settings.
    pub async fn start(upstream: &str, env: &[(&str, &str)]) -> TestProxy {
        let mut opts = ProxyOptions::new(env);
        opts.env
            .insert(0, ("PROXY_UPSTREAM".into(), upstream.into()));
        Self::start_with(opts).await
    }

    /// Full control. Defaults: listeners on 127.0.0.1:0, keypair generated in a temp folder,
    /// logs in a temp folder without retention, upstream timeout 10 s.
    pub async fn start_with(opts: ProxyOptions) -> TestProxy {
        let temp = tempfile::tempdir().expect("tempdir");
        let tls_dir = opts
            .tls_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("tls"));
        let log_dir = opts
            .log_dir
            .clone()
            .unwrap_or_else(|| temp.path().join("logs"));
        std::fs::create_dir_all(&tls_dir).expect("tls dir");
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let mut pairs: Vec<(String, String)> = vec![
            ("PROXY_HTTP_LISTEN".into(), "127.0.0.1:0".into()),
            ("PROXY_HTTPS_LISTEN".into(), "127.0.0.1:0".into()),
            (
                "PROXY_TLS_CERT".into(),
                path_str(&tls_dir.join("localhost.crt")),
            ),
            (
                "PROXY_TLS_KEY".into(),
                path_str(&tls_dir.join("localhost.key")),
            ),
            ("PROXY_LOG_DIR".into(), path_str(&log_dir)),
            ("LOG_RETENTION".into(), "false".into()),
            ("PROXY_UPSTREAM_TIMEOUT".into(), "10s".into()),
        ];
        for (k, v) in opts.env {
            pairs.retain(|(key, _)| *key != k);
            pairs.push((k, v));
        }
        let config = proxy::Config::from_env(&Env::from_pairs(pairs)).expect("proxy config");
        let logs = Logs::open(&config.logs).expect("logs open");
        let mut proxy = match opts.lookup {
            Some(lookup) => proxy::Proxy::with_lookup(&config, logs.access(), lookup),
            None => proxy::Proxy::new(&config, logs.access()),
        }
        .expect("proxy starts");
        let certs = proxy.certs().clone();
        let routes = proxy.routes().clone();
        let mut inspect = None;
        if let Some(addr) = config.inspect.listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .expect("bind inspector");
            inspect = Some(listener.local_addr().expect("addr"));
            proxy.inspect_on(listener);
        }
        let http = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .expect("bind http");
        let https = tokio::net::TcpListener::bind(config.https_listen)
            .await
            .expect("bind https");
        let (http_addr, https_addr) = (
            http.local_addr().expect("addr"),
            https.local_addr().expect("addr"),
        );
        let shutdown = CancellationToken::new();
        // As the binary does: SIGHUP reloads the keypair and the error page, SIGUSR1 reopens
        // the logs.
        proxy::Signals::new(shutdown.clone())
            .reload_certs(certs.clone())
            .reload_error_page(proxy.pages().clone())
            .reload_routes(proxy.routes().clone())
            .reopen_logs(logs.clone())
            .spawn()
            .expect("signal handlers");
        let done = tokio::spawn(proxy.run(http, https, shutdown.clone()));
        TestProxy {
            http: http_addr,
            https: https_addr,
            inspect,
            logs,
            certs,
            routes,
            tls_dir,
            log_dir,
            shutdown,
            done: Some(done),
            _temp: Some(temp),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.https.port(), path)
    }

    /// A URL of the inspector's listener (panics when it is off).
    pub fn inspect_url(&self, path: &str) -> String {
        let addr = self.inspect.expect("PROXY_INSPECT_LISTEN is set");
        format!("http://{addr}{path}")
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://localhost:{}{}", self.http.port(), path)
    }

    /// Graceful shutdown: cancel, wait for the drain, flush the logs.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(15), done)
                .await
                .expect("proxy drained in time")
                .expect("proxy task");
        }
        self.logs.flush().expect("flush logs");
    }

    /// The access log's current text (after a flush).
    pub fn access_log(&self) -> String {
        self.logs.flush().expect("flush");
        std::fs::read_to_string(self.logs.access_path()).unwrap_or_default()
    }

    /// The error log's current text (after a flush).
    pub fn error_log(&self) -> String {
        self.logs.flush().expect("flush");
        std::fs::read_to_string(self.logs.error_path()).unwrap_or_default()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A proxy in front of the upstream at `up` with these extra settings.
pub async fn proxy_to(up: SocketAddr, env: &[(&str, &str)]) -> TestProxy {
    TestProxy::start(&up.to_string(), env).await
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_owned()
}

/// The real app, in-process on 127.0.0.1:0. Dropping it shuts it down.
pub struct TestApp {
    pub addr: SocketAddr,
    stop: CancellationToken,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(listen: &str) -> TestApp {
        let config =
            app::Config::from_env(&Env::from_pairs([("APP_LISTEN", listen)])).expect("app config");
        let app = app::App::new(&config).expect("app starts");
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let done = tokio::spawn(app.run(listener, stop.clone().cancelled_owned()));
        TestApp {
            addr,
            stop,
            done: Some(done),
        }
    }

    /// Stop and wait until the port is closed.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), done).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A resolver the test can point elsewhere at any time.
#[derive(Default)]
pub struct SwapLookup(Mutex<Vec<SocketAddr>>);

impl SwapLookup {
    pub fn new(addrs: Vec<SocketAddr>) -> Arc<Self> {
        Arc::new(SwapLookup(Mutex::new(addrs)))
    }

    pub fn set(&self, addrs: Vec<SocketAddr>) {
        *self.0.lock().expect("lock") = addrs;
    }
}

impl Lookup for SwapLookup {
    fn lookup(
        &self,
        _host: &str,
        _port: u16,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'static>,
    > {
        let addrs = self.0.lock().expect("lock").clone();
        Box::pin(async move { Ok(addrs) })
    }
}

/// A closed port on 127.0.0.1 (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}
