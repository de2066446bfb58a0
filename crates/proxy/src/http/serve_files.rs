//! The HTTPS service's branch for static files: a request whose normalised path starts with a
//! `PROXY_STATIC` prefix is answered from the folder (`crate::files`) after the same request
//! checks as a forwarded one; refusals become the error page, keeping `Allow`/`Content-Range`.

use http::{HeaderMap, HeaderValue, Request, Response};

use super::context::Shared;
use super::hygiene;
use crate::body::ProxyBody;
use crate::config::StaticRoot;
use crate::files;

/// A request for a static root: the root and the path it was routed on (normalised, slashes
/// merged, unreserved escapes decoded).
pub struct StaticRequest<'a> {
    root: &'a StaticRoot,
    key: String,
}

/// Whether `req` names a static root (no allocation, no await for a forwarded request). A path
/// that does not normalise is the upstream branch's 400.
pub fn route<'a, B>(shared: &'a Shared, req: &Request<B>) -> Option<StaticRequest<'a>> {
    let roots = &shared.config.static_files;
    if roots.roots.is_empty() {
        return None;
    }
    let normalized = hygiene::normalize_path(req.uri().path()).ok()?;
    // nginx matches locations on the decoded path with slashes merged: `//static/x` and
    // `/%73tatic/x` are static requests too (never a way around these rules to the app).
    let key = files::route_key(&normalized);
    let (root, _) = roots.route(&key)?;
    Some(StaticRequest {
        root,
        key: key.into_owned(),
    })
}

/// The answer to a request [`route`] matched, after the same request checks as a forwarded one.
/// `accept` holds the client's `Accept` (for the error page).
pub async fn serve<B>(
    shared: &Shared,
    matched: StaticRequest<'_>,
    peer: std::net::SocketAddr,
    req: &Request<B>,
    request_id: &HeaderValue,
    accept: &HeaderMap,
    head: bool,
) -> Response<ProxyBody> {
    let config = &shared.config;
    let refusal = match hygiene::check(req, &config.limits) {
        Err(status) => files::Refusal::from(status),
        Ok(_) => {
            let open = files::Open {
                files: &shared.open_files,
                peer,
            };
            let (files, compression) = (&config.static_files, &config.compression);
            match files::serve(files, compression, matched.root, &matched.key, req, open).await {
                Ok(resp) => return resp,
                Err(refusal) => refusal,
            }
        }
    };
    let mut page = shared.page(refusal.status, request_id, accept, head);
    page.headers_mut().extend(refusal.headers);
    page
}
