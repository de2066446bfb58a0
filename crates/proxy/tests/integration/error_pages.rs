//! The proxy's own error answers: through the public API (every status the proxy produces renders
//! the page with its code and text; JSON and plain-text variants; HEAD; custom and broken pages)
//! and end to end through the real proxy (502 with the upstream down, 504, 400 on the HTTP side,
//! interception of upstream errors and `PROXY_INTERCEPT_ERRORS=false`).

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use proxy::{ErrorPageError, ErrorPages, explanation};

/// Every status the proxy answers by itself.
const PROXY_STATUSES: [u16; 14] = [
    400, 403, 404, 405, 408, 411, 413, 414, 421, 431, 500, 502, 503, 504,
];

fn accept(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ACCEPT, HeaderValue::from_str(v).expect("header"));
    h
}

fn body(resp: Response<Full<Bytes>>) -> String {
    let collected = futures_util::FutureExt::now_or_never(resp.into_body().collect())
        .expect("a Full body is ready")
        .expect("infallible");
    String::from_utf8(collected.to_bytes().to_vec()).expect("utf-8")
}

fn header(resp: &Response<Full<Bytes>>, name: http::header::HeaderName) -> &str {
    resp.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .expect("ascii")
}

#[test]
fn every_proxy_status_renders_the_page_with_its_code_and_text() {
    let pages = ErrorPages::load(None).expect("built-in page");
    for code in PROXY_STATUSES {
        let status = StatusCode::from_u16(code).expect("status");
        let reason = status.canonical_reason().expect("reason");
        let resp = pages.render(status, "rid-42", &HeaderMap::new(), false);
        assert_eq!(resp.status(), status);
        assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
        let len: usize = header(&resp, CONTENT_LENGTH).parse().expect("length");
        let html = body(resp);
        assert_eq!(html.len(), len);
        assert!(html.starts_with("<!doctype html>"), "{code}");
        assert!(
            html.contains(&format!("<title>{code} {reason}</title>")),
            "{code}"
        );
        assert!(html.contains(&format!("<h1>{reason}</h1>")), "{code}");
        let sentence = explanation(status).replace('\'', "&#x27;");
        assert!(html.contains(&sentence), "{code}: {sentence}");
        assert!(html.contains("rid-42"), "{code}");
        // Self-contained: nothing is loaded from elsewhere.
        for external in [
            "<script", "<link", "<img", "@import", "url(", "http://", "https://",
        ] {
            assert!(!html.contains(external), "{code}: {external}");
        }
    }
    // Different statuses explain different things.
    assert_ne!(
        explanation(StatusCode::BAD_GATEWAY),
        explanation(StatusCode::GATEWAY_TIMEOUT)
    );
}

#[test]
fn json_clients_get_json() {
    let pages = ErrorPages::load(None).expect("page");
    for code in PROXY_STATUSES {
        let status = StatusCode::from_u16(code).expect("status");
        let resp = pages.render(status, "rid-7", &accept("application/json"), false);
        assert_eq!(resp.status(), status);
        assert_eq!(header(&resp, CONTENT_TYPE), "application/json");
        assert_eq!(header(&resp, CACHE_CONTROL), "no-store");
        let text = body(resp);
        let expected = format!(
            "{{\"status\":{code},\"error\":\"{}\",\"request_id\":\"rid-7\"}}",
            status.canonical_reason().expect("reason")
        );
        assert_eq!(text, expected);
    }
    // q-values decide, not order.
    let resp = pages.render(
        StatusCode::BAD_GATEWAY,
        "r",
        &accept("text/html;q=0.5, application/json;q=0.9"),
        false,
    );
    assert_eq!(header(&resp, CONTENT_TYPE), "application/json");
    let resp = pages.render(
        StatusCode::BAD_GATEWAY,
        "r",
        &accept("application/json;q=0.5, text/html"),
        false,
    );
    assert_eq!(header(&resp, CONTENT_TYPE), "text/html; charset=utf-8");
}

#[test]
fn clients_accepting_neither_html_nor_json_get_plain_text() {
    let pages = ErrorPages::load(None).expect("page");
    for value in [
        "text/plain",
        "image/png",
        "text/html;q=0, application/json;q=0",
    ] {
        let resp = pages.render(StatusCode::GATEWAY_TIMEOUT, "rid-9", &accept(value), false);
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            header(&resp, CONTENT_TYPE),
            "text/plain; charset=utf-8",
            "{value}"
        );
        assert_eq!(
            body(resp),
            format!(
                "504 Gateway Timeout\n{}\nrequest id: rid-9\n",
                explanation(StatusCode::GATEWAY_TIMEOUT)
            )
        );
    }
    for value in ["*/*", "text/*", "text/html"] {
        let resp = pages.render(StatusCode::NOT_FOUND, "r", &accept(value), false);
        assert_eq!(
            header(&resp, CONTENT_TYPE),
            "text/html; charset=utf-8",
            "{value}"
        );
    }
}

#[test]
fn head_gets_the_same_headers_and_no_body() {
    let pages = ErrorPages::load(None).expect("page");
    for headers in [
        HeaderMap::new(),
        accept("application/json"),
        accept("text/plain"),
    ] {
        let get = pages.render(StatusCode::BAD_GATEWAY, "rid", &headers, false);
        let head = pages.render(StatusCode::BAD_GATEWAY, "rid", &headers, true);
        assert_eq!(head.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(head.headers(), get.headers());
        let get_len: usize = header(&get, CONTENT_LENGTH).parse().expect("len");
        assert_eq!(body(get).len(), get_len);
        assert_eq!(body(head), "");
    }
}

#[test]
fn upstream_statuses_without_a_reason_still_render() {
    let pages = ErrorPages::load(None).expect("page");
    let status = StatusCode::from_u16(599).expect("status");
    let resp = pages.render(status, "r", &HeaderMap::new(), false);
    assert_eq!(resp.status().as_u16(), 599);
    assert!(body(resp).contains("<title>599 Server Error</title>"));
}

#[test]
fn a_custom_page_from_a_file_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mine.html");
    std::fs::write(
        &path,
        "<p>{{ status }}|{{ reason }}|{{ explanation }}|{{ request_id }}</p>",
    )
    .expect("write");
    let pages = ErrorPages::load(Some(&path)).expect("custom page");
    let resp = pages.render(StatusCode::BAD_GATEWAY, "<x>", &HeaderMap::new(), false);
    assert_eq!(
        body(resp),
        format!(
            "<p>502|Bad Gateway|{}|&lt;x&gt;</p>",
            explanation(StatusCode::BAD_GATEWAY)
        )
    );
}

#[test]
fn a_missing_or_broken_page_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.html");
    let err = ErrorPages::load(Some(&missing)).expect_err("missing file");
    assert!(matches!(err, ErrorPageError::Read { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("PROXY_ERROR_PAGE={}:", missing.display())),
        "{msg}"
    );
    assert!(msg.contains("No such file"), "{msg}");

    let broken = dir.path().join("broken.html");
    std::fs::write(&broken, "<h1>{{ status </h1>").expect("write");
    let err = ErrorPages::load(Some(&broken)).expect_err("syntax error");
    assert!(matches!(err, ErrorPageError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("broken.html"), "{err}");

    let typo = dir.path().join("typo.html");
    std::fs::write(&typo, "<h1>{{ reasn }}</h1>").expect("write");
    let err = ErrorPages::load(Some(&typo)).expect_err("undefined variable");
    assert!(matches!(err, ErrorPageError::Render { .. }), "{err}");
    assert!(err.to_string().contains("reasn"), "{err}");
}

#[test]
fn the_built_in_page_is_the_shipped_file() {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf/proxy/error.html"),
    )
    .expect("conf/proxy/error.html");
    assert_eq!(proxy::DEFAULT_TEMPLATE, shipped);
}

// ---- End to end, through the real proxy ----

use crate::support::upstream::TestUpstream;
use crate::support::{TestProxy, client, client_h1, closed_port};

fn rid(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn ctype(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_gives_the_502_page_in_every_variant() {
    let down = closed_port().await;
    let proxy = TestProxy::start(&down.to_string(), &[]).await;
    for c in [client(), client_h1()] {
        let resp = c.get(proxy.url("/quote")).send().await.expect("request");
        assert_eq!(resp.status(), 502);
        assert_eq!(ctype(&resp), "text/html; charset=utf-8");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let id = rid(&resp);
        let html = resp.text().await.expect("body");
        assert!(html.contains("<title>502 Bad Gateway</title>"), "{html}");
        assert!(html.contains(&id), "request id {id} on the page");

        let resp = c
            .get(proxy.url("/quote"))
            .header("accept", "text/html;q=0.8, application/json")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 502);
        assert_eq!(ctype(&resp), "application/json");
        let id = rid(&resp);
        assert_eq!(
            resp.text().await.expect("body"),
            format!("{{\"status\":502,\"error\":\"Bad Gateway\",\"request_id\":\"{id}\"}}")
        );

        let resp = c
            .get(proxy.url("/quote"))
            .header("accept", "text/plain")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 502);
        assert_eq!(ctype(&resp), "text/plain; charset=utf-8");
        assert!(
            resp.text()
                .await
                .expect("body")
                .starts_with("502 Bad Gateway\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn head_gets_headers_and_no_body_over_h1_and_h2() {
    let down = closed_port().await;
    let proxy = TestProxy::start(&down.to_string(), &[]).await;
    for (c, version) in [
        (client_h1(), reqwest::Version::HTTP_11),
        (client(), reqwest::Version::HTTP_2),
    ] {
        let resp = c.head(proxy.url("/")).send().await.expect("HEAD");
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 502);
        assert_eq!(ctype(&resp), "text/html; charset=utf-8");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let len: usize = resp.headers()["content-length"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number");
        assert!(len > 500, "the GET page's length, not 0: {len}");
        assert_eq!(resp.bytes().await.expect("body").len(), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_gives_the_504_page() {
    let up = TestUpstream::start("slow").await;
    let proxy =
        TestProxy::start(&up.addr.to_string(), &[("PROXY_UPSTREAM_TIMEOUT", "300ms")]).await;
    let resp = client()
        .get(proxy.url("/slow?ms=20000"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 504);
    let html = resp.text().await.expect("body");
    assert!(
        html.contains("<title>504 Gateway Timeout</title>"),
        "{html}"
    );
    assert!(html.contains(&explanation(StatusCode::GATEWAY_TIMEOUT).replace('\'', "&#x27;")));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_are_intercepted_by_default_and_passed_through_when_off() {
    let up = TestUpstream::start("errors").await;
    let on = TestProxy::start(&up.addr.to_string(), &[]).await;
    let off = TestProxy::start(&up.addr.to_string(), &[("PROXY_INTERCEPT_ERRORS", "false")]).await;
    for code in [404u16, 500, 503] {
        let resp = client()
            .get(on.url(&format!("/status/{code}")))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), code, "the status is kept");
        assert_eq!(ctype(&resp), "text/html; charset=utf-8");
        let html = resp.text().await.expect("body");
        assert!(!html.contains("upstream's own error body"), "{code}");
        let reason = StatusCode::from_u16(code)
            .expect("s")
            .canonical_reason()
            .expect("r");
        assert!(
            html.contains(&format!("<title>{code} {reason}</title>")),
            "{html}"
        );

        let resp = client()
            .get(off.url(&format!("/status/{code}")))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(ctype(&resp), "text/plain");
        assert_eq!(
            resp.text().await.expect("body"),
            "upstream's own error body"
        );
    }
    // Success answers are never touched.
    let resp = client().get(on.url("/id")).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "errors");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_host_on_the_http_side_gets_the_400_page() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let down = closed_port().await;
    let proxy = TestProxy::start(&down.to_string(), &[]).await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.http)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.0\r\nAccept: application/json\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("\r\ncache-control: no-store\r\n"), "{text}");
    assert!(
        text.contains("{\"status\":400,\"error\":\"Bad Request\",\"request_id\":\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_page_is_served_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("page.html");
    std::fs::write(&page, "custom {{ status }} / {{ request_id }}").expect("write");
    let down = closed_port().await;
    let page_str = page.to_str().expect("utf8");
    let proxy = TestProxy::start(&down.to_string(), &[("PROXY_ERROR_PAGE", page_str)]).await;
    let resp = client().get(proxy.url("/")).send().await.expect("request");
    assert_eq!(resp.status(), 502);
    let id = rid(&resp);
    assert_eq!(
        resp.text().await.expect("body"),
        format!("custom 502 / {id}")
    );
}
