//! The app's routes: `/` (the page), `/healthz`; 404 and 405 for the rest. One log line each.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::templates::{Templates, describe};

/// The three forwarding headers the page shows.
const SHOWN: [(&str, &str); 3] = [
    ("x_forwarded_for", "x-forwarded-for"),
    ("x_real_ip", "x-real-ip"),
    ("x_forwarded_proto", "x-forwarded-proto"),
];

/// Answer one request and log it.
pub async fn handle<B>(
    templates: Templates,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let mut resp = route(&templates, req.method(), req.uri().path(), req.headers());
    if req.method() == Method::HEAD {
        // Same headers as GET, no body (HTTP/2 does not drop it for us).
        let len = http_body::Body::size_hint(resp.body()).exact().unwrap_or(0);
        *resp.body_mut() = Full::new(Bytes::new());
        resp.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    let (method, path, status) = (req.method(), req.uri().path(), resp.status().as_u16());
    let duration_us = started.elapsed().as_micros() as u64;
    if path == "/healthz" {
        // Docker polls this every few seconds: keep it out of the INFO log.
        tracing::debug!(%method, path, status, duration_us, "request");
    } else {
        tracing::info!(%method, path, status, duration_us, "request");
    }
    Ok(resp)
}

fn route(
    templates: &Templates,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Full<Bytes>> {
    let allowed = matches!(*method, Method::GET | Method::HEAD);
    match path {
        "/" | "/healthz" if !allowed => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed\n".into(),
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        "/" => match templates.render(page_context(headers)) {
            Ok(body) => text(StatusCode::OK, body),
            Err(e) => {
                tracing::warn!(error = %describe(&e), "template error");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "500 Internal Server Error: the page template is broken\n\n{}\n\n{e:#}\n",
                        describe(&e)
                    ),
                )
            }
        },
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        _ => text(StatusCode::NOT_FOUND, "404 Not Found\n".into()),
    }
}

/// The template variables: each header as received (several values joined with ", "), or `None`.
pub fn page_context(headers: &HeaderMap) -> minijinja::Value {
    let ctx: std::collections::BTreeMap<&str, String> = SHOWN
        .iter()
        .map(|(var, header)| (*var, header_text(headers, header)))
        .collect();
    minijinja::Value::from_serialize(&ctx)
}

/// A header's values as one line: control characters (CR, LF, …) are shown escaped, so a value
/// can never add lines to the page.
pub fn header_text(headers: &HeaderMap, name: &str) -> String {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return "None".to_owned();
    }
    let joined: Vec<String> = values
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    joined
        .join(", ")
        .chars()
        .flat_map(|c| -> Box<dyn Iterator<Item = char>> {
            // Cc controls and the Unicode line/paragraph separators.
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                Box::new(c.escape_default())
            } else {
                Box::new(std::iter::once(c))
            }
        })
        .collect()
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_header_is_none_and_controls_are_escaped() {
        let mut h = HeaderMap::new();
        assert_eq!(header_text(&h, "x-real-ip"), "None");
        h.insert(
            "x-real-ip",
            HeaderValue::from_bytes("1.2.3.4\u{85}X-Evil: 1\u{2028}\ttab".as_bytes())
                .expect("valid"),
        );
        let t = header_text(&h, "x-real-ip");
        assert!(!t.chars().any(char::is_control), "{t:?}");
        assert!(t.contains("X-Evil"), "{t:?}");
    }

    #[test]
    fn repeated_headers_are_joined_on_one_line() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        assert_eq!(header_text(&h, "x-forwarded-for"), "1.1.1.1, 2.2.2.2");
    }
}
