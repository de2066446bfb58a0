//! The running proxy: its workers (event loops, each with its own upstream connections), the
//! site they all serve (TLS, limits, connection budgets) and the two listeners.

use std::sync::Arc;

use common::server::{self, Transport};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ProxyError;
use crate::http::{self, ErrorPages, Shared};
use crate::inspect::{self, Inspector};
use crate::logs::AccessLog;
use crate::routes::LiveRoutes;
use crate::tls::{self, CertStore};
use crate::upstream::{Lookup, SystemLookup};
use crate::watch;

/// A validated, ready-to-serve proxy: keypair loaded, error page compiled, one upstream client
/// per worker built.
pub struct Proxy {
    /// One per event loop (`PROXY_WORKERS`): each worker owns its upstream connection pool, so a
    /// request and the upstream connection that carries it stay on one thread.
    workers: Vec<Arc<Shared>>,
    tls: Arc<rustls::ServerConfig>,
    certs: Arc<CertStore>,
    /// The error page every worker renders (one shared, reloadable page).
    pages: ErrorPages,
    /// Every worker's routes and their upstream clients (reloadable).
    routes: LiveRoutes,
    limits: server::Limits,
    /// `PROXY_INSPECT_LISTEN`: the inspector and its listener, when on.
    inspect: Option<(Arc<Inspector>, Option<TcpListener>)>,
}

impl Proxy {
    /// Validate everything now; nothing half-configured ever serves.
    pub fn new(config: &Config, access: AccessLog) -> Result<Self, ProxyError> {
        Self::with_lookup(config, access, Arc::new(SystemLookup))
    }

    /// As [`Proxy::new`] with a custom upstream resolver (tests swap addresses with it).
    pub fn with_lookup(
        config: &Config,
        access: AccessLog,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, ProxyError> {
        let pages = ErrorPages::load(config.error_page.as_deref())?;
        // A missing static folder answers 404 until it appears (a volume mounted later).
        for problem in config.static_files.check() {
            tracing::warn!("{problem}; its files answer 404 until it exists");
        }
        let certs = CertStore::open(config.tls.clone(), tls::shared_provider())?;
        let tls = tls::server_config(certs.clone())?;
        let config = Arc::new(config.clone());
        let open_files = Arc::new(crate::files::OpenFiles::default());
        let routes = LiveRoutes::new(config.clone(), lookup, config.workers.max(1))?;
        let inspector = Inspector::new(&config.inspect, &config.routes.entries);
        let workers = (0..config.workers.max(1))
            .map(|i| {
                Ok(Arc::new(Shared {
                    config: config.clone(),
                    routes: routes.worker(i),
                    pages: pages.clone(),
                    access: access.clone(),
                    open_files: open_files.clone(),
                    inspect: inspector.clone(),
                }))
            })
            .collect::<Result<Vec<_>, ProxyError>>()?;
        Ok(Proxy {
            workers,
            tls: Arc::new(tls),
            certs,
            pages,
            routes,
            limits: config.limits.connection.clone(),
            inspect: inspector.map(|i| (i, None)),
        })
    }

    /// Serve the inspector on `listener` (bound to `PROXY_INSPECT_LISTEN`); ignored when the
    /// inspector is off.
    pub fn inspect_on(&mut self, listener: TcpListener) {
        if let Some((_, slot)) = &mut self.inspect {
            *slot = Some(listener);
        }
    }

    /// The keypair store (fingerprint, reload).
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    /// The error page (reload).
    pub fn pages(&self) -> &ErrorPages {
        &self.pages
    }

    /// The routes (reload).
    pub fn routes(&self) -> &LiveRoutes {
        &self.routes
    }

    /// Serve both listeners until `shutdown` is cancelled, then drain (bounded) and return.
    ///
    /// The first worker runs on the caller's runtime; each further worker (`PROXY_WORKERS`)
    /// gets a thread with a single-threaded runtime and its own listening sockets on the same
    /// addresses (`SO_REUSEPORT`, as nginx's `reuseport`), so the kernel spreads connections.
    /// The connection budget is shared. A worker that cannot start is reported and the others
    /// serve on.
    pub async fn run(self, http: TcpListener, https: TcpListener, shutdown: CancellationToken) {
        watch::spawn_reloader(Arc::clone(&self.certs), shutdown.clone());
        self.certs.spawn_renewal(shutdown.clone());
        watch::spawn_reloader(Arc::new(self.pages.clone()), shutdown.clone());
        watch::spawn_reloader(Arc::new(self.routes.clone()), shutdown.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        // With the development CA here, the ClientHello is read first so a name it may sign
        // for gets its own leaf (issued off the event loop) before the handshake goes on.
        let tls = if self.certs.issues_on_demand() {
            Transport::TlsWithHello(acceptor, self.certs.clone())
        } else {
            Transport::Tls(acceptor)
        };
        let site = Site {
            tls,
            http_permits: server::connection_permits(&self.limits),
            https_permits: server::connection_permits(&self.limits),
            limits: self.limits,
        };
        if let Some((inspector, Some(listener))) = self.inspect {
            let sources = inspect_sources(&self.workers, &site, &https, self.certs.clone());
            let limits = site.limits.clone();
            tokio::spawn(inspect::serve(
                listener,
                inspector,
                sources,
                limits,
                shutdown.clone(),
            ));
        }
        let mut workers = self.workers.into_iter();
        let Some(first) = workers.next() else { return };
        let mut done = Vec::new();
        for (n, shared) in workers.enumerate() {
            match spawn_worker(n + 1, &http, &https, shared, site.clone(), shutdown.clone()) {
                Ok(rx) => done.push(rx),
                Err(e) => {
                    tracing::error!(worker = n + 1, error = %e, "cannot start a worker; serving with fewer")
                }
            }
        }
        site.serve(first, http, https, shutdown).await;
        for rx in done {
            let _ = rx.await;
        }
    }
}

/// What every worker serves with: TLS, limits, and the connection budgets they share.
#[derive(Clone)]
struct Site {
    tls: Transport,
    limits: server::Limits,
    http_permits: Arc<tokio::sync::Semaphore>,
    https_permits: Arc<tokio::sync::Semaphore>,
}

impl Site {
    /// One worker's event loop: both listeners until `shutdown`, then its own drain.
    async fn serve(
        self,
        shared: Arc<Shared>,
        http: TcpListener,
        https: TcpListener,
        shutdown: CancellationToken,
    ) {
        let redirect = shared.clone();
        let plain = server::serve_with_permits(
            http,
            Transport::Plain,
            self.limits.clone(),
            self.http_permits,
            move |conn| {
                let shared = redirect.clone();
                hyper::service::service_fn(move |req| {
                    http::redirect(shared.clone(), conn.clone(), req)
                })
            },
            shutdown.clone().cancelled_owned(),
        );
        let secure = server::serve_with_permits(
            https,
            self.tls,
            self.limits,
            self.https_permits,
            move |conn| {
                let connection = Arc::new(http::Connection {
                    shared: shared.clone(),
                    conn,
                });
                hyper::service::service_fn(move |req| http::forward(connection.clone(), req))
            },
            shutdown.cancelled_owned(),
        );
        tokio::join!(plain, secure);
    }
}

/// What the inspector's `/metrics` and replays read from the running proxy.
fn inspect_sources(
    workers: &[Arc<Shared>],
    site: &Site,
    https: &TcpListener,
    certs: Arc<CertStore>,
) -> inspect::Sources {
    let probe_workers = workers.to_vec();
    let upstreams: inspect::UpstreamProbe = Arc::new(move || {
        let workers = probe_workers.clone();
        Box::pin(async move {
            // The first route's upstream (`PROXY_UPSTREAM` when no routes are set); every
            // worker's table lists the routes in the same order.
            let first = workers.first()?.routes.load().iter().next()?.1.clone();
            let addrs = first.resolve().await.ok()?;
            let up = |a| {
                workers.iter().all(|w| {
                    w.routes
                        .load()
                        .iter()
                        .next()
                        .is_none_or(|(_, c)| !c.is_down(a))
                })
            };
            Some(addrs.into_iter().map(|a| (a, up(a))).collect())
        })
    });
    inspect::Sources {
        https: https
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 443))),
        certs,
        listeners: vec![
            ("http", site.http_permits.clone()),
            ("https", site.https_permits.clone()),
        ],
        max_connections: site.limits.max_connections.max(1),
        accepting: workers.len(),
        upstreams,
    }
}

/// Start worker `n` on its own thread and single-threaded runtime, accepting on duplicates of
/// the two listening sockets. The receiver resolves when it has drained and stopped.
fn spawn_worker(
    n: usize,
    http: &TcpListener,
    https: &TcpListener,
    shared: Arc<Shared>,
    site: Site,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let http = own_listener(http)?;
    let https = own_listener(https)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Workers log wherever the thread that started them logs (a scoped test subscriber too).
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    std::thread::Builder::new()
        .name(format!("proxy-worker-{n}"))
        .spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                runtime.block_on(async move {
                    match (TcpListener::from_std(http), TcpListener::from_std(https)) {
                        (Ok(http), Ok(https)) => site.serve(shared, http, https, shutdown).await,
                        (Err(e), _) | (_, Err(e)) => {
                            tracing::error!(worker = n, error = %e, "worker cannot register its listeners");
                        }
                    }
                });
            });
            let _ = tx.send(());
        })?;
    Ok(rx)
}

/// The worker's own listening socket on the address (see [`server::bind`]), or, for a listener
/// bound elsewhere, another handle on the same one.
fn own_listener(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    match server::worker_listener(listener) {
        Some(own) => Ok(own),
        None => duplicate(listener),
    }
}

/// Another handle on the same listening socket (non-blocking, as tokio needs it).
fn duplicate(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::AsFd;
    let std = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?);
    std.set_nonblocking(true)?;
    Ok(std)
}
