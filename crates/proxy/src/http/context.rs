//! What both listeners' services share: the per-worker state, what a request starts with (its
//! id and access-log entry), and the finishing of every answer (request id, HSTS, the body that
//! writes the access-log line when it ends).

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use common::server::ConnInfo;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;

use super::body::Logged;
use super::error_page::ErrorPages;
use super::headers::{self, X_REQUEST_ID};
use crate::body::ProxyBody;
use crate::compress::Ours;
use crate::config::Config;
use crate::logs::{AccessEntry, AccessLog};
use crate::routes::WorkerTable;

/// What every request handler of one worker needs; built once at start-up.
pub struct Shared {
    pub config: Arc<Config>,
    /// This worker's routes, each with its own upstream connections (swapped on a reload).
    pub routes: Arc<ArcSwap<WorkerTable>>,
    pub pages: ErrorPages,
    pub access: AccessLog,
    /// The bound on open static files (one for every worker).
    pub open_files: Arc<crate::files::OpenFiles>,
    /// The inspector (`PROXY_INSPECT_LISTEN`); `None`: nothing is recorded.
    pub inspect: Option<Arc<crate::inspect::Inspector>>,
}

/// A request as it arrived: when, its id, and the access-log entry it will be logged with.
pub struct Started {
    at: Instant,
    pub request_id: HeaderValue,
    pub entry: AccessEntry,
}

impl Started {
    /// Capture what the access log needs before the request is consumed. Header values and the
    /// target are shared with the request, not copied. A client-sent request id is kept only
    /// from a `trusted` peer.
    pub fn new<B>(req: &Request<B>, conn: &ConnInfo, trusted: bool) -> Self {
        let request_id = headers::request_id(req.headers(), trusted);
        let header = |name: header::HeaderName| req.headers().get(name).cloned().map(Into::into);
        let entry = AccessEntry {
            remote_addr: headers::canonical(conn.peer.ip()),
            remote_user: None,
            time: time::OffsetDateTime::now_utc(),
            method: req.method().clone().into(),
            target: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().to_string().into(), |pq| pq.clone().into()),
            protocol: protocol(req.version()),
            status: 0,
            body_bytes_sent: 0,
            referer: header(header::REFERER),
            user_agent: header(header::USER_AGENT),
            request_id: request_id.clone().into(),
            upstream_addr: None,
            request_time: Duration::ZERO,
            upstream_time: None,
        };
        Started {
            at: Instant::now(),
            request_id,
            entry,
        }
    }

    /// The request id as text (`-` if it were not).
    pub fn id(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

impl Shared {
    /// What `req`, arriving on `conn`, starts with (its request id from a trusted proxy, if any).
    pub fn started<B>(&self, req: &Request<B>, conn: &ConnInfo) -> Started {
        let trusted = headers::is_trusted(conn.peer.ip(), &self.config.trusted_proxies);
        Started::new(req, conn, trusted)
    }

    /// The proxy's own answer for `status` (HTML, JSON or text by the client's `Accept`), marked
    /// [`Ours`] (compressed like a static file).
    pub fn page(
        &self,
        status: StatusCode,
        request_id: &HeaderValue,
        req_headers: &HeaderMap,
        head: bool,
    ) -> Response<ProxyBody> {
        let explained = super::error_page::explanation(status);
        self.page_explained(status, explained, request_id, req_headers, head)
    }

    /// [`Shared::page`] with its own `explanation` sentence.
    pub fn page_explained(
        &self,
        status: StatusCode,
        explained: &str,
        request_id: &HeaderValue,
        req_headers: &HeaderMap,
        head: bool,
    ) -> Response<ProxyBody> {
        let rid = request_id.to_str().unwrap_or("-");
        let mut page = self
            .pages
            .render_explained(status, explained, rid, req_headers, head)
            .map(|b| b.map_err(|never| match never {}).boxed());
        page.extensions_mut().insert(Ours);
        page
    }

    /// Finish a response: request id, HSTS on HTTPS, and the body that logs the request once
    /// it ends (finished, failed or abandoned).
    pub fn finish(
        &self,
        resp: Response<ProxyBody>,
        started: Started,
        https: bool,
    ) -> Response<ProxyBody> {
        let Started {
            at,
            request_id,
            mut entry,
        } = started;
        let (mut parts, body) = resp.into_parts();
        parts.headers.insert(&X_REQUEST_ID, request_id);
        if https && let Some(hsts) = &self.config.hsts {
            parts
                .headers
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        entry.status = parts.status.as_u16();
        let body = Logged::new(body, entry, at, self.access.clone());
        Response::from_parts(parts, BodyExt::boxed(body))
    }
}
