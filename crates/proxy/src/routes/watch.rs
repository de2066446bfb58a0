//! The live routes file: `PROXY_ROUTES_FILE` re-read on a change in its folder (the shared
//! reloader, `crate::watch`) or on SIGHUP (`signals`). A file that does not parse is refused with
//! the line and the reason in error.log, and the previous routes serve on.

use std::path::PathBuf;

use super::live::LiveRoutes;
use crate::watch::Reload;

impl Reload for LiveRoutes {
    const WHAT: &'static str = "routes";

    fn watched(&self) -> Vec<PathBuf> {
        self.file().map(ToOwned::to_owned).into_iter().collect()
    }

    fn reload_logged(&self, trigger: &str) {
        LiveRoutes::reload_logged(self, trigger);
    }
}
