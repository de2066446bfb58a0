//! Renewal of the proxy's own leaf while it runs: every `PROXY_TLS_RENEW_INTERVAL` (off the
//! event loop), when the proxy holds `ca.key` and the leaf is due, a new one is issued, written
//! atomically and swapped in by the store's own reload. A pair the proxy did not issue is never
//! touched, and without `ca.key` nothing happens.

use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::ca::DevCa;
use super::leaf::{ca_presence, due, is_ours, issue_into};
use super::store::CertStore;

impl CertStore {
    /// Check the leaf every `PROXY_TLS_RENEW_INTERVAL` and renew it when due, until `shutdown`.
    /// Nothing runs with `PROXY_TLS_GENERATE=false`. Call from within a Tokio runtime.
    pub fn spawn_renewal(self: &Arc<Self>, shutdown: CancellationToken) {
        if !self.files().generate {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("TLS leaf renewal not started (no Tokio runtime)");
            return;
        };
        let store = Arc::clone(self);
        rt.spawn(async move {
            let every = store.files().renew_interval;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        let store = Arc::clone(&store);
                        // Key generation and fsync: off the event loop.
                        let _ = tokio::task::spawn_blocking(move || store.renew_if_due()).await;
                    }
                }
            }
        });
    }

    /// One renewal check: when the proxy holds `ca.key` and its own leaf is due, issue a new
    /// one, write it and serve it (the leaves issued on demand too). Returns the time from the
    /// decision to the new leaf being served, when it renewed (`None`: nothing to do, or it
    /// failed and the reason is logged).
    pub fn renew_if_due(&self) -> Option<Duration> {
        let files = self.files();
        self.on_demand.renew_due(files);
        if !files.generate || !matches!(ca_presence(files), Ok((true, true))) {
            return None;
        }
        if !is_ours(files) {
            return None;
        }
        let now = OffsetDateTime::now_utc();
        let renewed = DevCa::load(files).and_then(|ca| match due(&ca, files, now) {
            Some(due) => {
                let started = Instant::now();
                issue_into(&ca, files, now)?;
                Ok(Some((due, started)))
            }
            None => Ok(None),
        });
        match renewed {
            Ok(Some((due, started))) => {
                self.reload_logged("renewal");
                let took = started.elapsed();
                // A refused reload was logged by `reload_logged`; the old leaf still serves.
                self.last_reload_error().is_none().then(|| {
                    tracing::info!(
                        "TLS leaf renewed ({due}); served {took:?} after the check decided to renew"
                    );
                    took
                })
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(
                    "cannot renew the TLS leaf, still serving SHA-256 fingerprint {}: {e}",
                    self.fingerprint()
                );
                None
            }
        }
    }
}
