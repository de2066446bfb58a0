//! Static files (`PROXY_STATIC`): the proxy answers `/static/…` itself from a folder, as nginx's
//! `alias` does. [`resolve`] finds the file (never outside the root); tower-http's `ServeFile`
//! sends it (MIME type, `Last-Modified`, `If-Modified-Since`/`If-Unmodified-Since`, a single
//! `Range`, the body streamed in 64 KiB reads); this module adds what `ServeFile` lacks: a strong
//! `ETag` (size and modification time in nanoseconds), `If-None-Match`, `If-Range`,
//! `Cache-Control`, the precompressed sibling's `Content-Encoding` and `Vary`.
//! A small file on a plain GET is read in the resolving call and sent from memory ([`small`]).

mod open;
mod resolve;
mod small;

pub use open::OpenFiles;

use std::fs::Metadata;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty};
use tower_http::services::ServeFile;

use crate::body::{BoxError, ProxyBody};
use crate::compress::{self, Ours};
use crate::config::{Coding, Compression, StaticFiles, StaticRoot};
use resolve::{Found, Resolved};

/// Request headers `ServeFile` reads (the others it is not given).
const PASSED: [HeaderName; 3] = [
    header::IF_UNMODIFIED_SINCE,
    header::IF_MODIFIED_SINCE,
    header::RANGE,
];

/// A static request answered with the proxy's error page: its status and the headers the page
/// keeps (`Allow` on 405, `Content-Range` on 416).
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

impl From<StatusCode> for Refusal {
    fn from(status: StatusCode) -> Self {
        Refusal {
            status,
            headers: HeaderMap::new(),
        }
    }
}

/// Where a request's open file is counted: the shared bound and the client connection.
pub struct Open<'a> {
    pub files: &'a Arc<OpenFiles>,
    pub peer: SocketAddr,
}

/// Answer `req` from `root`; `path` is the request path normalised, under `root.prefix`.
pub async fn serve<B>(
    files: &StaticFiles,
    compression: &Compression,
    root: &StaticRoot,
    path: &str,
    req: &Request<B>,
    open: Open<'_>,
) -> Result<Response<ProxyBody>, Refusal> {
    let rest = path.get(root.prefix.len()..).unwrap_or_default();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut headers = HeaderMap::new();
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            headers,
        });
    }
    // The file stays open while its body streams: the permit goes with the body.
    let Some(permit) = open.files.acquire(open.peer).await else {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers,
        });
    };
    let whole = small::eligible(req) && !req.headers().contains_key(header::IF_NONE_MATCH);
    let siblings = accepted(req.headers(), &compression.codings);
    let (resolved, contents) = lookup(root, rest, siblings, whole).await?;
    let found = match resolved {
        Resolved::File(found) => found,
        Resolved::NotFound => return Err(StatusCode::NOT_FOUND.into()),
        Resolved::Forbidden => return Err(StatusCode::FORBIDDEN.into()),
        Resolved::AddSlash => return Ok(add_slash(path, req.uri().query())),
    };
    let etag = etag(&found.meta, found.coding);
    let mime = mime_guess::from_path(&found.named).first_or_octet_stream();
    if !match_holds(req.headers(), &etag) {
        return Err(StatusCode::PRECONDITION_FAILED.into());
    }
    let mut resp = if none_match(req.headers(), &etag) {
        not_modified(&found.meta)
    } else if let Some(body) = contents {
        small::respond(body, &found.meta, &mime)
    } else {
        send(&found, &mime, &etag, req).await?
    };
    let compressed_200 = found.coding.is_none()
        && HeaderValue::from_str(mime.as_ref()).is_ok_and(|ct| {
            compress::would_compress(compression, req.headers(), &ct, found.meta.len())
        });
    headers(&mut resp, files, compression, &found, etag, compressed_200);
    resp.extensions_mut().insert(Ours);
    Ok(resp.map(|body| {
        Holding {
            body,
            _permit: permit,
        }
        .boxed()
    }))
}

/// One trip to the blocking pool: resolve `rest` inside `root`, and with `whole` (a plain GET)
/// read a small file too.
async fn lookup(
    root: &StaticRoot,
    rest: &str,
    siblings: Vec<Coding>,
    whole: bool,
) -> Result<(Resolved, Option<Bytes>), Refusal> {
    let (dir, rest) = (root.dir.clone(), rest.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut resolved = resolve::resolve(&dir, &rest, &siblings);
        let mut contents = None;
        if let Resolved::File(found) = &mut resolved
            && whole
            && found.meta.len() <= small::SMALL
        {
            contents = small::read(&found.path).map(|(bytes, meta)| {
                found.meta = meta;
                bytes
            });
        }
        (resolved, contents)
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into())
}

/// The answer's validators and caching headers: ETag (weak on a 304 whose 200 would be
/// compressed on the fly), Cache-Control, Content-Encoding of a precompressed file, Vary.
fn headers(
    resp: &mut Response<ProxyBody>,
    files: &StaticFiles,
    compression: &Compression,
    found: &Found,
    etag: HeaderValue,
    compressed_200: bool,
) {
    let status = resp.status();
    let h = resp.headers_mut();
    match compress::weaken(&etag) {
        Some(weak) if status == StatusCode::NOT_MODIFIED && compressed_200 => {
            h.insert(header::ETAG, weak)
        }
        _ => h.insert(header::ETAG, etag),
    };
    h.insert(header::CACHE_CONTROL, files.cache_control.clone());
    if let Some(coding) = found.coding {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
    }
    if !compression.codings.is_empty() {
        compress::add_vary(h);
    }
}

/// Let `ServeFile` answer for `found` (200, 206 or 304 by `If-Modified-Since`); its other
/// answers become refusals (the error page).
async fn send<B>(
    found: &Found,
    mime: &mime::Mime,
    etag: &HeaderValue,
    req: &Request<B>,
) -> Result<Response<ProxyBody>, Refusal> {
    let mut inner = Request::new(Empty::<Bytes>::new());
    *inner.method_mut() = req.method().clone();
    let asked = req.headers();
    for name in PASSED {
        if let Some(value) = asked.get(&name) {
            inner.headers_mut().insert(name, value.clone());
        }
    }
    // RFC 9110 §13.2.2: If-None-Match present, If-Modified-Since is ignored.
    if asked.contains_key(header::IF_NONE_MATCH) {
        inner.headers_mut().remove(header::IF_MODIFIED_SINCE);
    }
    match asked.get(header::RANGE).map(usable_range) {
        Some(Some(range)) if if_range_holds(asked, etag, &found.meta) => {
            inner.headers_mut().insert(header::RANGE, range);
        }
        _ => {
            inner.headers_mut().remove(header::RANGE);
        }
    }
    let resp = ServeFile::new_with_mime(&found.path, mime)
        .try_call(inner)
        .await
        .map_err(|e| {
            tracing::warn!(path = %found.path.display(), error = %e, "cannot read a static file");
            StatusCode::INTERNAL_SERVER_ERROR
        })?;
    match resp.status() {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED => {
            Ok(resp.map(|b| Shareable(Mutex::new(b)).map_err(BoxError::from).boxed()))
        }
        status => {
            let mut headers = HeaderMap::new();
            if let Some(range) = resp.headers().get(header::CONTENT_RANGE) {
                headers.insert(header::CONTENT_RANGE, range.clone());
            }
            Err(Refusal { status, headers })
        }
    }
}

/// The precompressed codings the client accepts, best first (its q-values, then `codings`).
fn accepted(headers: &HeaderMap, codings: &[Coding]) -> Vec<Coding> {
    let mut left = codings.to_vec();
    let mut out = Vec::with_capacity(left.len());
    while let Some(best) = compress::negotiate(headers, &left) {
        out.push(best);
        left.retain(|c| *c != best);
    }
    out
}

/// A strong tag from the size and the modification time (nanoseconds), and the sibling's coding.
fn etag(meta: &Metadata, coding: Option<Coding>) -> HeaderValue {
    let nanos = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let suffix = coding.map_or(String::new(), |c| format!("-{}", c.token()));
    let tag = format!("\"{:x}-{nanos:x}{suffix}\"", meta.len());
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// `If-None-Match` names `etag` (weak comparison) or is `*`.
fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = opaque(etag.to_str().unwrap_or_default());
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || opaque(tag) == ours)
}

/// No `If-Match`, or it is `*` or names `etag` by strong comparison (RFC 9110 §13.1.1): else
/// 412, so a resumed download never stitches two versions of a file together.
fn match_holds(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let mut tags = headers
        .get_all(header::IF_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .peekable();
    if tags.peek().is_none() {
        return headers.get(header::IF_MATCH).is_none();
    }
    tags.any(|tag| tag == "*" || (!tag.starts_with("W/") && tag.as_bytes() == etag.as_bytes()))
}

/// The `Range` to give `ServeFile`: one `bytes` range, the unit in any case and blanks and
/// empty list items dropped; `None` (send the whole file, RFC 9110 §14.2) for another unit or
/// several ranges (no multipart answers).
fn usable_range(value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?.trim();
    let (unit, set) = text.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut items = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let one = items.next()?;
    if items.next().is_some() {
        return None;
    }
    let one: String = one.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    HeaderValue::from_str(&format!("bytes={one}")).ok()
}

/// The path static roots are matched on: runs of `/` merged, and percent-encoded unreserved
/// characters (letters, digits, `-._~`) decoded: the same resource by RFC 3986 §6.2.2. Nothing
/// else is decoded (that is [`resolve`]'s, once).
pub fn route_key(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains("//") && !path.contains('%') {
        return path.into();
    }
    let bytes = path.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'/' && out.last() == Some(&b'/') {
            i += 1;
            continue;
        }
        if b == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(c) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
                && (c.is_ascii_alphanumeric() || b"-._~".contains(&c))
            {
                out.push(c);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    // Only ASCII was added or removed, so the bytes stay UTF-8.
    String::from_utf8(out).map_or_else(|_| path.into(), Into::into)
}

/// The tag without its weakness mark.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// No `If-Range`, or it names the current representation: a strong tag equal to ours, or the
/// exact `Last-Modified` date. Otherwise the whole file is sent (RFC 9110 §13.1.5).
fn if_range_holds(headers: &HeaderMap, etag: &HeaderValue, meta: &Metadata) -> bool {
    let Some(value) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return value.as_bytes() == etag.as_bytes();
    }
    let (Ok(date), Ok(modified)) = (httpdate::parse_http_date(value), meta.modified()) else {
        return false;
    };
    httpdate::fmt_http_date(date) == httpdate::fmt_http_date(modified)
}

/// 304 for a matching `If-None-Match`: no body, the validators the client keeps.
fn not_modified(meta: &Metadata) -> Response<ProxyBody> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NOT_MODIFIED;
    if let Ok(modified) = meta.modified()
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        resp.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    resp
}

/// 301 to the folder's URL with its trailing `/` (where its `index.html` is served).
fn add_slash(path: &str, query: Option<&str>) -> Response<ProxyBody> {
    // One leading `/`: `//evil.com/` would send the browser to another host.
    let path = format!("/{}", path.trim_start_matches('/'));
    let location = match query {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A body that keeps its file's [`open::OpenPermit`] until it is done or dropped.
struct Holding {
    body: ProxyBody,
    _permit: open::OpenPermit,
}

impl Body for Holding {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `ServeFile`'s body is `Send` but not `Sync`; the proxy's body type wants both. Only ever
/// polled through `&mut`, so the mutex is never locked.
struct Shareable<B>(Mutex<B>);

impl<B: Body + Unpin> Body for Shareable<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.get_mut().0.get_mut() {
            Ok(body) => Pin::new(body).poll_frame(cx),
            Err(poisoned) => Pin::new(poisoned.into_inner()).poll_frame(cx),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .map_or_else(|_| SizeHint::default(), |b| b.size_hint())
    }
}
