//! A steady load on one URL for tests that change something underneath it (keypair rotation,
//! renewal): several clients each sending requests back to back, every outcome counted, every
//! failure kept with its reason.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::eventually;

/// Clients hammering a URL until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a load saw.
#[derive(Debug)]
pub struct Outcome {
    pub ok: u64,
    pub failed: u64,
    pub errors: Vec<String>,
}

impl Load {
    /// One task per client, each sending `GET url` until stopped (a 200 with its whole body is
    /// a success, anything else a failure).
    pub fn start(url: &str, clients: Vec<reqwest::Client>) -> Load {
        Load::start_with(url, clients, None)
    }

    /// As [`Load::start`], but each request a `POST` carrying `body`.
    pub fn start_post(url: &str, clients: Vec<reqwest::Client>, body: &[u8]) -> Load {
        Load::start_with(url, clients, Some(body.to_vec()))
    }

    fn start_with(url: &str, clients: Vec<reqwest::Client>, body: Option<Vec<u8>>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let tasks = clients
            .into_iter()
            .map(|client| {
                let (url, body) = (url.to_owned(), body.clone());
                let (stop, ok, failed, errors) =
                    (stop.clone(), ok.clone(), failed.clone(), errors.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let req = match &body {
                            Some(b) => client.post(&url).body(b.clone()),
                            None => client.get(&url),
                        };
                        let outcome = match req.send().await {
                            Ok(r) if r.status() == 200 => {
                                r.bytes().await.map(drop).map_err(|e| format!("{e:?}"))
                            }
                            other => Err(format!("{other:?}")),
                        };
                        match outcome {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                errors.lock().expect("lock").push(e);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            errors,
            tasks,
        }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Whether `more` requests beyond `since` succeed within `deadline` (the load keeps going).
    pub async fn progressed(&self, since: u64, more: u64, deadline: Duration) -> bool {
        eventually(deadline, || async { self.ok() > since + more }).await
    }

    /// Stop every client and wait for it; the totals.
    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("client task");
        }
        Outcome {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            errors: std::mem::take(&mut *self.errors.lock().expect("lock")),
        }
    }
}

/// Six clients: kept-alive HTTP/2, kept-alive HTTP/1.1 and a new connection per request, two of
/// each, built by `base` (which decides what they trust).
pub fn mixed_clients(base: impl Fn() -> reqwest::ClientBuilder) -> Vec<reqwest::Client> {
    (0..6)
        .map(|n| {
            let builder = base().timeout(Duration::from_secs(20));
            match n % 3 {
                0 => builder,
                1 => builder.http1_only(),
                _ => builder.pool_max_idle_per_host(0),
            }
            .build()
            .expect("client")
        })
        .collect()
}
