//! A request's trip through the proxy, up to the upstream client: the two listeners' services
//! (`redirect` for HTTP, `forward` for HTTPS), the checks every request passes (`hygiene`),
//! header rewriting (`headers`), body guards (`body`), upgrades (`upgrade`), the one failure
//! type (`error`) and the error pages it becomes (`error_page`), live on edits
//! (`page_reload`), the static-file branch (`serve_files`). `context` holds what both services
//! share.

mod body;
mod context;
mod error;
mod error_page;
mod forward;
mod future_size;
pub mod headers;
mod hygiene;
mod page_reload;
mod redirect;
mod serve_files;
mod upgrade;

pub use context::Shared;
pub use error_page::{DEFAULT_TEMPLATE, ErrorPageError, ErrorPages, explanation};
pub use forward::{Connection, forward};
pub use redirect::redirect;
