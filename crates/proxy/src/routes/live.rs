//! The routes in force: one [`Table`] per worker (each route with that worker's upstream
//! client), swapped whole on a reload. A request loads its worker's table once and keeps the
//! client it found, so it finishes on the route it started on. A reload reuses the client of
//! every upstream that stays (same scheme and address): its pool, its open connections, its
//! WebSocket tunnels and streaming answers are untouched; only clients of upstreams no route
//! names any more are dropped (once their last request ends).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::table::Table;
use crate::config::settings::ROUTES;
use crate::config::{Config, Route, RoutesError, Target};
use crate::upstream::{Client, Lookup, UpstreamError};

/// One worker's routes, each with its upstream client.
pub type WorkerTable = Table<Arc<Client>>;

/// The live routes of every worker. Cheap to clone; clones share the tables.
#[derive(Clone)]
pub struct LiveRoutes(Arc<Inner>);

struct Inner {
    workers: Vec<Arc<ArcSwap<WorkerTable>>>,
    config: Arc<Config>,
    lookup: Arc<dyn Lookup>,
    /// The routes in force (a reload to the same routes changes nothing).
    current: Mutex<Vec<Route>>,
}

/// Why new routes were refused (the old ones serve on).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{ROUTES}_FILE={}: cannot read the file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{ROUTES}_FILE={}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: RoutesError,
    },
    #[error("route to {target}: {source}")]
    Client {
        target: String,
        #[source]
        source: Box<UpstreamError>,
    },
}

impl LiveRoutes {
    /// The routes of `config` for `workers` workers, every upstream client built now.
    pub fn new(
        config: Arc<Config>,
        lookup: Arc<dyn Lookup>,
        workers: usize,
    ) -> Result<Self, ReloadError> {
        let entries = config.routes.entries.clone();
        let tables = (0..workers.max(1))
            .map(|_| {
                build(&entries, None, &config, &lookup).map(|t| Arc::new(ArcSwap::from_pointee(t)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LiveRoutes(Arc::new(Inner {
            workers: tables,
            config,
            lookup,
            current: Mutex::new(entries),
        })))
    }

    /// Worker `i`'s table (what its requests load).
    pub fn worker(&self, i: usize) -> Arc<ArcSwap<WorkerTable>> {
        self.0.workers[i % self.0.workers.len()].clone()
    }

    /// `PROXY_ROUTES_FILE`, when the routes come from a file.
    pub fn file(&self) -> Option<&Path> {
        self.0.config.routes.file.as_deref()
    }

    /// Put `entries` in force on every worker: `Ok(false)` when they are the routes in force.
    /// A client that cannot be built refuses the whole change.
    pub fn apply(&self, entries: Vec<Route>) -> Result<bool, ReloadError> {
        let mut current = self
            .0
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *current == entries {
            return Ok(false);
        }
        let tables = self
            .0
            .workers
            .iter()
            .map(|w| build(&entries, Some(&w.load()), &self.0.config, &self.0.lookup))
            .collect::<Result<Vec<_>, _>>()?;
        for (worker, table) in self.0.workers.iter().zip(tables) {
            worker.store(Arc::new(table));
        }
        *current = entries;
        Ok(true)
    }

    /// Re-read `PROXY_ROUTES_FILE`: `Ok(true)` when new routes are in force; on an error the old
    /// ones serve on. Without a file, nothing to do.
    pub fn reload(&self) -> Result<bool, ReloadError> {
        let Some(path) = self.file() else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ReloadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let entries =
            self.0
                .config
                .routes
                .with_text(&text)
                .map_err(|source| ReloadError::Parse {
                    path: path.to_owned(),
                    source,
                })?;
        self.apply(entries)
    }

    /// Reload and log the outcome; `trigger` says what caused it (`SIGHUP`, `folder change`).
    pub fn reload_logged(&self, trigger: &str) {
        let Some(path) = self.file() else { return };
        match self.reload() {
            Ok(true) => tracing::info!("routes reloaded ({trigger}): {}", path.display()),
            Ok(false) => tracing::debug!("routes unchanged ({trigger})"),
            Err(e) => tracing::error!(
                "new routes refused ({trigger}), the previous ones serve on: {}",
                common::error_chain(&e)
            ),
        }
    }
}

/// The table of `entries`, each upstream's client taken from `old` when it has one for the
/// same target (scheme and address), else built; routes to the same target share one client.
fn build(
    entries: &[Route],
    old: Option<&WorkerTable>,
    config: &Config,
    lookup: &Arc<dyn Lookup>,
) -> Result<WorkerTable, ReloadError> {
    let mut made: Vec<(&Target, Arc<Client>)> = Vec::new();
    let mut routes = Vec::with_capacity(entries.len());
    for route in entries {
        let target = &route.target;
        let kept = made
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, c)| c.clone())
            .or_else(|| {
                old?.iter()
                    .find(|(r, _)| r.target == *target)
                    .map(|(_, c)| c.clone())
            });
        let client = match kept {
            Some(c) => c,
            None => {
                let upstream = target.upstream(&config.upstream);
                let client =
                    Client::new(&upstream, lookup).map_err(|source| ReloadError::Client {
                        target: target.to_string(),
                        source: Box::new(source),
                    })?;
                Arc::new(client)
            }
        };
        made.push((target, client.clone()));
        routes.push((route.clone(), client));
    }
    Ok(Table::new(routes))
}
