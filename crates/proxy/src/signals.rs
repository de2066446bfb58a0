//! The proxy's only signal handlers: SIGTERM and SIGINT cancel the shutdown token (drain and
//! exit), SIGHUP reloads the keypair, the error page and the routes file, SIGUSR1 reopens the log files.
//! Subsystems never install handlers themselves; they get a token or a handle from here.

use std::io;
use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::http::ErrorPages;
use crate::logs::Logs;
use crate::routes::LiveRoutes;
use crate::tls::CertStore;

/// Which signals to handle, and what they act on. Build it, then [`Signals::spawn`].
pub struct Signals {
    shutdown: CancellationToken,
    terminate: bool,
    certs: Option<Arc<CertStore>>,
    pages: Option<ErrorPages>,
    routes: Option<LiveRoutes>,
    logs: Option<Logs>,
}

impl Signals {
    /// Handle nothing yet; every handler stops when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Signals {
            shutdown,
            terminate: false,
            certs: None,
            pages: None,
            routes: None,
            logs: None,
        }
    }

    /// SIGTERM and SIGINT cancel the shutdown token.
    pub fn terminate(mut self) -> Self {
        self.terminate = true;
        self
    }

    /// SIGHUP reloads this keypair store (a refused pair keeps the old one serving).
    pub fn reload_certs(mut self, certs: Arc<CertStore>) -> Self {
        self.certs = Some(certs);
        self
    }

    /// SIGHUP also re-reads this error page (a page that does not compile keeps the old one).
    pub fn reload_error_page(mut self, pages: ErrorPages) -> Self {
        self.pages = Some(pages);
        self
    }

    /// SIGHUP also re-reads `PROXY_ROUTES_FILE` (routes that do not parse keep the old ones).
    pub fn reload_routes(mut self, routes: LiveRoutes) -> Self {
        self.routes = Some(routes);
        self
    }

    /// SIGUSR1 reopens these log files by name (logrotate's `postrotate`).
    pub fn reopen_logs(mut self, logs: Logs) -> Self {
        self.logs = Some(logs);
        self
    }

    /// Install the handlers (before this returns, so a signal sent right after is caught) and
    /// serve them on the current Tokio runtime until the shutdown token is cancelled.
    pub fn spawn(self) -> io::Result<()> {
        if self.terminate {
            let term = signal(SignalKind::terminate())?;
            let int = signal(SignalKind::interrupt())?;
            tokio::spawn(on_terminate(term, int, self.shutdown.clone()));
        }
        if self.certs.is_some() || self.pages.is_some() || self.routes.is_some() {
            let hup = signal(SignalKind::hangup())?;
            let (certs, pages, routes) = (self.certs, self.pages, self.routes);
            let reload = move || {
                if let Some(c) = &certs {
                    c.reload_logged("SIGHUP");
                }
                if let Some(p) = &pages {
                    p.reload_logged("SIGHUP");
                }
                if let Some(r) = &routes {
                    r.reload_logged("SIGHUP");
                }
            };
            tokio::spawn(each(hup, self.shutdown.clone(), reload));
        }
        if let Some(logs) = self.logs {
            let usr1 = signal(SignalKind::user_defined1())?;
            tokio::spawn(each(usr1, self.shutdown, move || reopen(&logs)));
        }
        Ok(())
    }
}

async fn on_terminate(mut term: Signal, mut int: Signal, shutdown: CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => return,
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
    shutdown.cancel();
}

/// Run `act` (blocking work: file I/O) off the event loop for every `sig`, until `shutdown`.
/// It logs where the handler's caller logs (a scoped subscriber too).
async fn each<F>(mut sig: Signal, shutdown: CancellationToken, act: F)
where
    F: Fn() + Clone + Send + 'static,
{
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            got = sig.recv() => if got.is_none() { break },
        }
        let (act, dispatch) = (act.clone(), dispatch.clone());
        let run = move || tracing::dispatcher::with_default(&dispatch, act);
        if let Err(e) = tokio::task::spawn_blocking(run).await {
            tracing::error!(error = %e, "signal handler task failed");
        }
    }
}

fn reopen(logs: &Logs) {
    match logs.reopen() {
        Ok(()) => tracing::info!(dir = %logs.dir().display(), "SIGUSR1: log files reopened"),
        Err(e) => tracing::error!(
            dir = %logs.dir().display(),
            error = %e,
            "SIGUSR1: cannot reopen the log files; still writing the old ones"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::TlsFiles;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sighup_reloads_without_a_folder_watch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (testkit::Pair::new("a.test"), testkit::Pair::new("b.test"));
        a.write_into(dir.path());
        let store =
            CertStore::open(TlsFiles::in_dir(dir.path()), common::tls::provider()).expect("open");
        let stop = CancellationToken::new();
        // The handler is installed before this returns, so signalling ourselves is safe.
        Signals::new(stop.clone())
            .reload_certs(store.clone())
            .spawn()
            .expect("handlers");
        b.write_into(dir.path());
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, rustix::process::Signal::HUP).expect("SIGHUP");
        let start = Instant::now();
        while store.fingerprint() != b.fingerprint {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "gave up waiting for the new fingerprint"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sighup_reloads_the_error_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        let page = dir.path().join("error.html");
        std::fs::write(&page, "v1").expect("write");
        let pages = ErrorPages::load(Some(&page)).expect("page");
        let stop = CancellationToken::new();
        Signals::new(stop.clone())
            .reload_error_page(pages.clone())
            .spawn()
            .expect("handlers");
        std::fs::write(&page, "v2").expect("write");
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, rustix::process::Signal::HUP).expect("SIGHUP");
        let served = || {
            let resp = pages.render(
                http::StatusCode::BAD_GATEWAY,
                "id",
                &http::HeaderMap::new(),
                false,
            );
            let body = http_body_util::BodyExt::collect(resp.into_body());
            futures_util::FutureExt::now_or_never(body)
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default()
        };
        let start = Instant::now();
        while &served()[..] != b"v2" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "gave up waiting for the new page"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
    }
}
