//! The live error page: `PROXY_ERROR_PAGE` re-read on a change in its folder (the shared
//! [`FolderWatch`]) or on SIGHUP (`signals`). A page that does not read, compile or render is
//! refused with the reason logged (file and line) and the previous page keeps serving, the same
//! rule as the keypair.

use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::error_page::{ErrorPageError, ErrorPages, Page};
use crate::watch::{FolderWatch, next_change};

impl ErrorPages {
    /// Re-read `PROXY_ERROR_PAGE`: `Ok(true)` when a new page now serves, `Ok(false)` when the
    /// text is unchanged (or the page is the built-in one); on an error the old page serves on.
    pub fn reload(&self) -> Result<bool, ErrorPageError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ErrorPageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if text == self.current.load().source {
            return Ok(false);
        }
        let page = Page::compile(text, &path.display().to_string())?;
        self.current.store(Arc::new(page));
        Ok(true)
    }

    /// Reload and log the outcome; `trigger` says what caused it (`SIGHUP`, `folder change`).
    pub fn reload_logged(&self, trigger: &str) {
        let Some(path) = &self.path else { return };
        match self.reload() {
            Ok(true) => tracing::info!("error page reloaded ({trigger}): {}", path.display()),
            Ok(false) => tracing::debug!("error page unchanged ({trigger})"),
            Err(e) => tracing::error!(
                "new error page refused ({trigger}), still serving the previous one: {e}"
            ),
        }
    }

    /// Reload on changes in the page's folder until `shutdown` is cancelled (nothing to do for
    /// the built-in page). Call from within a Tokio runtime.
    pub fn spawn_watcher(&self, shutdown: CancellationToken) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let watch = match FolderWatch::new("error page") {
            Ok(mut w) => {
                w.sync(&[&path]);
                Some(w)
            }
            Err(e) => {
                tracing::warn!("cannot watch the error page's folder ({e}); reload with SIGHUP");
                None
            }
        };
        tokio::spawn(self.clone().watch_loop(path, watch, shutdown));
    }

    async fn watch_loop(
        self,
        path: Arc<Path>,
        mut watch: Option<FolderWatch>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = next_change(&mut watch) => {
                    let pages = self.clone();
                    let trigger = move || pages.reload_logged("folder change");
                    // File I/O off the event loop, logging where this task logs.
                    let dispatch = tracing::dispatcher::get_default(Clone::clone);
                    let run = move || tracing::dispatcher::with_default(&dispatch, trigger);
                    if let Err(e) = tokio::task::spawn_blocking(run).await {
                        tracing::error!(error = %e, "error page reload task failed");
                    }
                    if let Some(w) = watch.as_mut() {
                        w.sync(&[&path]);
                    }
                }
            }
        }
        tracing::debug!("error page watcher stopped");
    }
}
