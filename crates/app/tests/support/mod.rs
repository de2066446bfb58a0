//! Starts the real app in-process on 127.0.0.1:0 with real TLS; the guard stops it on drop.

#![allow(dead_code)]

use std::net::SocketAddr;

use common::env::Env;
use tokio::sync::oneshot;

/// A running app. Dropping it triggers graceful shutdown.
pub struct TestApp {
    pub addr: SocketAddr,
    pub fingerprint: String,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Start with these settings (`APP_LISTEN` defaults to 127.0.0.1:0).
    pub async fn start(pairs: &[(&str, &str)]) -> TestApp {
        let mut all: Vec<(String, String)> = vec![("APP_LISTEN".into(), "127.0.0.1:0".into())];
        all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = app::Config::from_env(&Env::from_pairs(all)).expect("config");
        let app = app::App::new(&config).expect("app starts");
        let fingerprint = app.fingerprint.clone();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(app.run(listener, async move {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            fingerprint,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{}", self.addr, path)
    }

    /// Begin graceful shutdown now; returns the server task to await.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.done.take().expect("not shut down twice")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub use testkit::{client, eventually};
