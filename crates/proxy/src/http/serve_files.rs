//! The HTTPS service's branch for static files: a request whose normalised path starts with a
//! `PROXY_STATIC` prefix is answered from the folder (`crate::files`) after the same request
//! checks as a forwarded one; refusals become the error page, keeping `Allow`/`Content-Range`.

use http::{HeaderMap, HeaderValue, Request, Response};

use super::context::Shared;
use super::hygiene;
use crate::body::ProxyBody;
use crate::files;

/// The answer when `req` names a static root; `None` sends it on to the upstream. `accept`
/// holds the client's `Accept` (for the error page).
pub async fn serve<B>(
    shared: &Shared,
    peer: std::net::SocketAddr,
    req: &Request<B>,
    request_id: &HeaderValue,
    accept: &HeaderMap,
    head: bool,
) -> Option<Response<ProxyBody>> {
    let config = &shared.config;
    if config.static_files.roots.is_empty() {
        return None;
    }
    // Routed by the normalised path (a path that does not normalise is the upstream branch's
    // 400); the prefix is matched before the full checks so a forwarded request pays nothing.
    let normalized = hygiene::normalize_path(req.uri().path()).ok()?;
    // nginx matches locations on the decoded path with slashes merged: `//static/x` and
    // `/%73tatic/x` are static requests too (never a way around these rules to the app).
    let key = files::route_key(&normalized);
    let (root, _) = config.static_files.route(&key)?;
    let refusal = match hygiene::check(req, &config.limits) {
        Err(status) => files::Refusal::from(status),
        Ok(_) => {
            let path = key.as_ref();
            let open = files::Open {
                files: &shared.open_files,
                peer,
            };
            match files::serve(
                &config.static_files,
                &config.compression,
                root,
                path,
                req,
                open,
            )
            .await
            {
                Ok(resp) => return Some(resp),
                Err(refusal) => refusal,
            }
        }
    };
    let mut page = shared.page(refusal.status, request_id, accept, head);
    page.headers_mut().extend(refusal.headers);
    Some(page)
}
