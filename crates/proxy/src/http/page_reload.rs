//! The live error page: `PROXY_ERROR_PAGE` re-read on a change in its folder (the shared
//! `crate::watch`) or on SIGHUP (`signals`). A page that does not read, compile or render is
//! refused with the reason logged (file and line) and the previous page keeps serving, the same
//! rule as the keypair.

use std::path::PathBuf;
use std::sync::Arc;

use super::error_page::{ErrorPageError, ErrorPages, Page};
use crate::watch::Reload;

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
}

impl Reload for ErrorPages {
    const WHAT: &'static str = "error page";

    fn watched(&self) -> Vec<PathBuf> {
        self.path.iter().map(|p| p.to_path_buf()).collect()
    }

    fn reload_logged(&self, trigger: &str) {
        ErrorPages::reload_logged(self, trigger);
    }
}
