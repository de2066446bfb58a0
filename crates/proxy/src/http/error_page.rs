//! The proxy's own error answers: one minijinja page (built in or `PROXY_ERROR_PAGE`), JSON or
//! plain text chosen from `Accept` with q-values, `Cache-Control: no-store`, no body for `HEAD`.

use crate::config::settings::ERROR_PAGE;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use minijinja::{Environment, UndefinedBehavior};

/// The page compiled into the binary (the same file as `conf/proxy/error.html`).
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../../conf/proxy/error.html");

const BUILTIN_NAME: &str = "error.html";
/// How errors name the built-in page.
const BUILTIN_LABEL: &str = "(built-in page)";

/// Statuses rendered once at start-up so a template that only fails at render time is caught.
const CHECKED_STATUSES: [u16; 3] = [404, 502, 599];

/// A template problem: at start-up the proxy does not start with it; on a reload the previous
/// page keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ErrorPageError {
    #[error("{ERROR_PAGE}={}: cannot read the template: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{ERROR_PAGE}={path}: line {line}: the template does not compile: {source:#}")]
    Syntax {
        path: String,
        line: usize,
        #[source]
        source: minijinja::Error,
    },
    #[error(
        "{ERROR_PAGE}={path}: line {line}: the template fails to render status {status}: \
         {source:#}"
    )]
    Render {
        path: String,
        line: usize,
        status: u16,
        #[source]
        source: minijinja::Error,
    },
}

/// The variables the template sees (documented in the README).
#[derive(Debug, serde::Serialize)]
struct PageContext<'a> {
    status: u16,
    reason: &'a str,
    explanation: &'a str,
    request_id: &'a str,
    kind: &'a str,
}

/// The JSON variant, in this field order: `{"status":502,"error":"Bad Gateway","request_id":"…"}`.
#[derive(Debug, serde::Serialize)]
struct JsonBody<'a> {
    status: u16,
    error: &'a str,
    request_id: &'a str,
}

/// Which representation a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Html,
    Json,
    Text,
}

/// Renders the proxy's own error answers (HTML, JSON or plain text by `Accept`). Cheap to clone;
/// clones share the page, so a reload (`page_reload`) reaches every worker at once.
#[derive(Debug, Clone)]
pub struct ErrorPages {
    pub(super) current: Arc<ArcSwap<Page>>,
    /// `PROXY_ERROR_PAGE`, re-read on reload; `None`: the built-in page, never reloaded.
    pub(super) path: Option<Arc<Path>>,
}

/// One compiled template and the text it came from (a reload of the same text is no change).
#[derive(Debug)]
pub(super) struct Page {
    env: Environment<'static>,
    /// The template's name in the environment (the file name, so errors point at it).
    name: String,
    pub(super) source: String,
}

impl ErrorPages {
    /// The built-in page, or the template file at `path`, compiled and test-rendered now.
    pub fn load(path: Option<&Path>) -> Result<Self, ErrorPageError> {
        let page = match path {
            None => Page::compile(DEFAULT_TEMPLATE.to_owned(), BUILTIN_LABEL)?,
            Some(p) => Page::read(p)?,
        };
        Ok(ErrorPages {
            current: Arc::new(ArcSwap::from_pointee(page)),
            path: path.map(Arc::from),
        })
    }

    /// Compile `source` (reported as `label` in errors; its file name names the template) and
    /// render it for a few statuses.
    pub fn from_source(source: String, label: &str) -> Result<Self, ErrorPageError> {
        Ok(ErrorPages {
            current: Arc::new(ArcSwap::from_pointee(Page::compile(source, label)?)),
            path: None,
        })
    }

    fn html(&self, status: StatusCode, request_id: &str) -> Result<String, minijinja::Error> {
        self.current.load().html(status, request_id)
    }
    /// The answer for `status`. `req_headers` are the client's (for `Accept`); `head` drops the
    /// body but keeps every header, including `Content-Type` and `Content-Length`.
    pub fn render(
        &self,
        status: StatusCode,
        request_id: &str,
        req_headers: &HeaderMap,
        head: bool,
    ) -> Response<Full<Bytes>> {
        let (body, content_type) = match negotiate(req_headers) {
            Variant::Html => match self.html(status, request_id) {
                Ok(page) => (page, "text/html; charset=utf-8"),
                Err(e) => {
                    // Validated at start-up, so this is unexpected; never leave the client bare.
                    tracing::error!(error = %e, status = status.as_u16(), "error page failed to render");
                    (plain(status, request_id), "text/plain; charset=utf-8")
                }
            },
            Variant::Json => (json(status, request_id), "application/json"),
            Variant::Text => (plain(status, request_id), "text/plain; charset=utf-8"),
        };
        let len = body.len();
        let body = if head {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(VARY, HeaderValue::from_static("Accept"));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        resp
    }
}

impl Page {
    /// The template file at `path`, compiled and test-rendered.
    pub(super) fn read(path: &Path) -> Result<Self, ErrorPageError> {
        let text = std::fs::read_to_string(path).map_err(|source| ErrorPageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::compile(text, &path.display().to_string())
    }

    /// Compile `source` (reported as `label` in errors; its file name names the template) and
    /// render it for a few statuses.
    pub(super) fn compile(source: String, label: &str) -> Result<Self, ErrorPageError> {
        let name = Path::new(label)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|_| label != BUILTIN_LABEL)
            .unwrap_or(BUILTIN_NAME)
            .to_owned();
        let mut env = Environment::new();
        // Strict: a misspelt variable is a start-up error, not a silently empty page.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Always HTML-escape, whatever the file is called.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        env.add_template_owned(name.clone(), source.clone())
            .map_err(|source| ErrorPageError::Syntax {
                path: label.to_owned(),
                line: source.line().unwrap_or(0),
                source,
            })?;
        let page = Page { env, name, source };
        for code in CHECKED_STATUSES {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            page.html(status, "0123456789abcdef")
                .map_err(|source| ErrorPageError::Render {
                    path: label.to_owned(),
                    line: source.line().unwrap_or(0),
                    status: code,
                    source,
                })?;
        }
        Ok(page)
    }

    fn html(&self, status: StatusCode, request_id: &str) -> Result<String, minijinja::Error> {
        let tmpl = self.env.get_template(&self.name)?;
        tmpl.render(PageContext {
            status: status.as_u16(),
            reason: reason(status),
            explanation: explanation(status),
            request_id,
            kind: kind(status),
        })
    }
}

fn json(status: StatusCode, request_id: &str) -> String {
    let body = JsonBody {
        status: status.as_u16(),
        error: reason(status),
        request_id,
    };
    // Serialising plain strings and a number cannot fail; fall back to a fixed shape anyway.
    serde_json::to_string(&body).unwrap_or_else(|_| format!("{{\"status\":{}}}", status.as_u16()))
}

fn plain(status: StatusCode, request_id: &str) -> String {
    format!(
        "{} {}\n{}\nrequest id: {request_id}\n",
        status.as_u16(),
        reason(status),
        explanation(status)
    )
}

/// The reason phrase, e.g. "Bad Gateway"; a class name for codes without one.
pub fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or(match status.as_u16() {
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Error",
    })
}

fn kind(status: StatusCode) -> &'static str {
    if status.is_client_error() {
        "client"
    } else if status.is_server_error() {
        "server"
    } else {
        "other"
    }
}

/// One human sentence per status.
pub fn explanation(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The server could not understand the request because it was malformed.",
        401 => "This page needs you to sign in first.",
        403 => "You do not have permission to open this page.",
        404 => "There is nothing at this address; please check the link for typos.",
        405 => "This address does not accept that kind of request.",
        406 => "The server cannot answer in any format your browser said it accepts.",
        408 => "The request took too long to arrive, so the server stopped waiting for it.",
        409 => "The request conflicts with the current state of the resource.",
        410 => "What used to be at this address has been removed for good.",
        411 => "The request must say how long its body is.",
        413 => "The request body is larger than this server accepts.",
        414 => "The address is longer than this server accepts.",
        415 => "The server does not accept the format of the request body.",
        421 => "This server is not set up to answer for the host name in the request.",
        429 => "Too many requests were sent in a short time; please slow down and try again.",
        431 => "The request headers are too large; clearing this site's cookies may help.",
        500 => "Something went wrong on our side while handling the request.",
        501 => "The server does not support what the request asked for.",
        502 => "The service behind this proxy could not be reached or sent an invalid answer.",
        503 => "The service is temporarily unavailable; please try again in a moment.",
        504 => "The service behind this proxy did not answer in time.",
        505 => "The server does not support the HTTP version of the request.",
        _ if status.is_client_error() => {
            "The request could not be completed because of a problem with the request."
        }
        _ if status.is_server_error() => {
            "The server ran into a problem and could not complete the request."
        }
        _ => "The request could not be completed.",
    }
}

/// Pick HTML, JSON or plain text from the `Accept` header(s). No header (or `*/*`) means HTML;
/// on equal preference HTML wins over JSON and JSON over plain text; a client that accepts
/// neither HTML nor JSON gets plain text.
pub fn negotiate(headers: &HeaderMap) -> Variant {
    let mut ranges = Vec::new();
    for value in headers.get_all(http::header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        ranges.extend(text.split(',').filter_map(parse_range));
    }
    if ranges.is_empty() {
        return Variant::Html;
    }
    let html = quality(&ranges, "text", "html");
    let json = quality(&ranges, "application", "json");
    if html > 0 && html >= json {
        Variant::Html
    } else if json > 0 {
        Variant::Json
    } else {
        Variant::Text
    }
}

/// One media range: type, subtype (lower case) and q in thousandths.
#[derive(Debug)]
struct Range {
    ty: String,
    sub: String,
    q: u16,
}

fn parse_range(item: &str) -> Option<Range> {
    let (media, q) = crate::accept::element(item)?;
    let media = media.to_ascii_lowercase();
    let (ty, sub) = media.split_once('/')?;
    let (ty, sub) = (ty.trim(), sub.trim());
    if ty.is_empty() || sub.is_empty() || (ty == "*" && sub != "*") {
        return None;
    }
    Some(Range {
        ty: ty.to_owned(),
        sub: sub.to_owned(),
        q,
    })
}

/// The q of the most specific range matching `ty/sub` (exact beats `ty/*` beats `*/*`); 0 if none.
fn quality(ranges: &[Range], ty: &str, sub: &str) -> u16 {
    let mut best: Option<(u8, u16)> = None;
    for r in ranges {
        let specificity = if r.ty == ty && r.sub == sub {
            2
        } else if r.ty == ty && r.sub == "*" {
            1
        } else if r.ty == "*" {
            0
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, r.q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_str(v).expect("ascii"),
        );
        h
    }

    #[test]
    fn negotiation_follows_q_values_and_specificity() {
        use Variant::*;
        assert_eq!(negotiate(&HeaderMap::new()), Html);
        assert_eq!(negotiate(&accept("*/*")), Html);
        assert_eq!(negotiate(&accept("application/json")), Json);
        assert_eq!(
            negotiate(&accept("text/html;q=0.4, application/json;q=0.5")),
            Json
        );
        assert_eq!(
            negotiate(&accept("application/json;q=0.5, text/html")),
            Html
        );
        assert_eq!(negotiate(&accept("text/plain")), Text);
        assert_eq!(negotiate(&accept("image/png")), Text);
        assert_eq!(negotiate(&accept("text/*")), Html);
        assert_eq!(negotiate(&accept("application/*, text/html;q=0.9")), Json);
        assert_eq!(negotiate(&accept("text/html;q=0, */*")), Json);
        assert_eq!(negotiate(&accept("*/*;q=0.1, application/json")), Json);
        assert_eq!(
            negotiate(&accept("application/json;q=0, text/html;q=0")),
            Text
        );
        // An exact range overrides a wildcard even when the wildcard has a higher q.
        assert_eq!(negotiate(&accept("*/*, text/html;q=0")), Json);
        // A browser's usual header.
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert_eq!(negotiate(&accept(browser)), Html);
        // Invalid q invalidates only that range.
        assert_eq!(negotiate(&accept("text/html;q=2, application/json")), Json);
    }

    #[test]
    fn template_errors_name_the_problem() {
        let e = ErrorPages::from_source("ok\n{% if %}".into(), "/x.html").expect_err("syntax");
        assert!(matches!(e, ErrorPageError::Syntax { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("PROXY_ERROR_PAGE=/x.html: line 2:"),
            "{e}"
        );
        let e =
            ErrorPages::from_source("\n\n{{ stauts }}".into(), "/y.html").expect_err("undefined");
        assert!(matches!(e, ErrorPageError::Render { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("PROXY_ERROR_PAGE=/y.html: line 3:"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn html_variables_are_escaped() {
        let pages = ErrorPages::from_source("{{ request_id }}".into(), "t").expect("ok");
        let resp = pages.render(StatusCode::BAD_GATEWAY, "<b>", &HeaderMap::new(), false);
        let body = http_body_util::BodyExt::collect(resp.into_body());
        let bytes = futures_util::FutureExt::now_or_never(body)
            .expect("ready")
            .expect("infallible")
            .to_bytes();
        assert_eq!(&bytes[..], b"&lt;b&gt;");
    }
}
