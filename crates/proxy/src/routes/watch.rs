//! The live routes file: `PROXY_ROUTES_FILE` re-read on a change in its folder (the shared
//! [`FolderWatch`]); SIGHUP goes through `signals`. A file that does not parse is refused with
//! the line and the reason in error.log, and the previous routes serve on.

use tokio_util::sync::CancellationToken;

use super::live::LiveRoutes;
use crate::watch::{FolderWatch, next_change};

impl LiveRoutes {
    /// Reload on changes in the routes file's folder until `shutdown` is cancelled (nothing to
    /// do without a file). Call from within a Tokio runtime.
    pub fn spawn_watcher(&self, shutdown: CancellationToken) {
        let Some(path) = self.file().map(ToOwned::to_owned) else {
            return;
        };
        let mut watch = match FolderWatch::new("routes") {
            Ok(mut w) => {
                w.sync(&[&path]);
                Some(w)
            }
            Err(e) => {
                tracing::warn!("cannot watch the routes file's folder ({e}); reload with SIGHUP");
                None
            }
        };
        let routes = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = next_change(&mut watch) => {
                        let routes = routes.clone();
                        let trigger = move || routes.reload_logged("folder change");
                        // File I/O off the event loop, logging where this task logs.
                        let dispatch = tracing::dispatcher::get_default(Clone::clone);
                        let run = move || tracing::dispatcher::with_default(&dispatch, trigger);
                        if let Err(e) = tokio::task::spawn_blocking(run).await {
                            tracing::error!(error = %e, "routes reload task failed");
                        }
                        if let Some(w) = watch.as_mut() {
                            w.sync(&[&path]);
                        }
                    }
                }
            }
            tracing::debug!("routes watcher stopped");
        });
    }
}
