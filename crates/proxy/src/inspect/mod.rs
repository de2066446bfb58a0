//! The request inspector (`PROXY_INSPECT_LISTEN`): every exchange recorded as it is forwarded
//! (`capture`) into a bounded ring (`store`), shown by a page and a JSON API on a listener of
//! its own (`api`, `page`, `view`, `export`), sent again on request (`replay`), and counted for
//! Prometheus (`metrics`); WebSocket frames in upgrade tunnels are read by `frames`. Off (the default), none of it exists: the request path holds `None`.

mod api;
mod capture;
mod export;
mod frames;
mod metrics;
mod page;
mod replay;
mod store;
mod view;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderValue, Request};

pub use api::{Sources, UpstreamProbe, serve};
pub use capture::Recording;
pub use frames::{FrameReader, Frames};

use crate::config::{Inspect, Route};

/// The inspector's state, shared by every worker and its listener.
pub struct Inspector {
    store: store::Store,
    metrics: metrics::Metrics,
    body_limit: u64,
    mask: bool,
    /// The route label of a forwarded request until its route is known: the first route.
    route: Arc<str>,
    /// The route label of answers from `PROXY_STATIC` folders.
    local: Arc<str>,
    /// Replays in flight: the loopback address each comes from, and the entry it replays.
    replays: Mutex<HashMap<SocketAddr, u64>>,
    /// How many are in `replays` (read without the lock on every request).
    pending: AtomicUsize,
}

impl Inspector {
    /// `None` when `PROXY_INSPECT_LISTEN` is empty. `routes` are the routes at start, in their
    /// canonical form (how exchanges are labelled; counted without a lock).
    pub fn new(config: &Inspect, routes: &[Route]) -> Option<Arc<Self>> {
        config.listen?;
        let mut known: Vec<Arc<str>> = routes.iter().map(|r| Arc::from(r.to_string())).collect();
        let route = known.first().cloned().unwrap_or_else(|| Arc::from("none"));
        let local: Arc<str> = Arc::from("static");
        known.push(local.clone());
        Some(Arc::new(Inspector {
            store: store::Store::new(config.entries, config.memory),
            metrics: metrics::Metrics::new(&known),
            body_limit: config.body_limit,
            mask: config.mask,
            route,
            local,
            replays: Mutex::default(),
            pending: AtomicUsize::new(0),
        }))
    }

    /// Start recording `req`, arrived from `client` with `request_id`.
    pub fn begin<B>(
        self: &Arc<Self>,
        req: &Request<B>,
        client: SocketAddr,
        request_id: &HeaderValue,
    ) -> Recording {
        Recording::new(self.clone(), req, client, request_id)
    }

    fn replays(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, u64>> {
        self.replays.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry a request from `client` replays, if it is a replay.
    fn replay_of(&self, client: SocketAddr) -> Option<u64> {
        if self.pending.load(Ordering::Relaxed) == 0 || !client.ip().is_loopback() {
            return None;
        }
        self.replays().get(&client).copied()
    }

    /// Note that requests from `local` replay `id`, until the guard is dropped.
    fn expect_replay(self: &Arc<Self>, local: SocketAddr, id: u64) -> PendingReplay {
        self.replays().insert(local, id);
        self.pending.fetch_add(1, Ordering::Relaxed);
        PendingReplay {
            inspector: self.clone(),
            local,
        }
    }
}

/// A replay in flight; forgotten when dropped.
struct PendingReplay {
    inspector: Arc<Inspector>,
    local: SocketAddr,
}

impl Drop for PendingReplay {
    fn drop(&mut self) {
        self.inspector.replays().remove(&self.local);
        self.inspector.pending.fetch_sub(1, Ordering::Relaxed);
    }
}
