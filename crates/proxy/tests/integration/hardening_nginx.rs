//! What nginx refuses and the proxy used to forward (issue 14 §3), against the real proxy with a
//! recording upstream: header names with `_`, dot segments (also percent-encoded) and encoded
//! slashes, transfer codings other than `chunked`, HTTP/2 cookie crumbs, client-chosen request
//! ids, and HTTP/2 prior knowledge on the plain-HTTP port.

use crate::support::h2raw::{self, h2_ask, h2_client};
use crate::support::raw::{SOON, answer, ask, closed_within};
use crate::support::recorder::Recorder;
use crate::support::upstream::TestUpstream;
use crate::support::{client_h1, proxy_to};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const UNDERSCORED: [(&str, &str); 4] = [
    ("X-Forwarded_For", "6.6.6.6"),
    ("X_Real_IP", "6.6.6.6"),
    ("X-Real_IP", "6.6.6.6"),
    ("My_Header", "kept only when allowed"),
];

/// One request over HTTP/1.1 and one over HTTP/2, each with [`UNDERSCORED`].
async fn send_underscored(proxy: &crate::support::TestProxy) {
    let mut raw = String::from("GET /h1 HTTP/1.1\r\nHost: localhost\r\n");
    for (k, v) in UNDERSCORED {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    assert_eq!(answer(proxy.https, raw.as_bytes()).await.status, 200);
    let mut send = h2_client(proxy.https).await;
    let mut req = http::Request::get(proxy.url("/h2"));
    for (k, v) in UNDERSCORED {
        req = req.header(k.to_ascii_lowercase(), v);
    }
    let (status, _, _) = h2_ask(&mut send, req.body(()).expect("req"))
        .await
        .expect("h2");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn header_names_with_underscores_are_dropped_unless_allowed() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    send_underscored(&proxy).await;
    let seen = rec.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let leaked: Vec<_> = s
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.contains('_'))
            .collect();
        assert!(
            leaked.is_empty(),
            "{}: {leaked:?} reached the upstream",
            s.target
        );
        assert_eq!(s.headers["x-real-ip"], "127.0.0.1", "{}", s.target);
    }
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[("PROXY_UNDERSCORES_IN_HEADERS", "true")]).await;
    send_underscored(&proxy).await;
    for s in &rec.seen() {
        assert_eq!(
            s.headers["my_header"], "kept only when allowed",
            "{}",
            s.target
        );
    }
}

#[tokio::test]
async fn dot_segments_are_removed_before_forwarding() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let cases = [
        ("/a/./b/../c", "/a/c"),
        ("/a/%2e/b/%2E%2e/c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/.%2e/b?x=/../y", "/b?x=/../y"),
        ("/group%2Fproject/files", "/group%2Fproject/files"),
        ("/plain", "/plain"),
    ];
    for (sent, _) in cases {
        let raw = format!("GET {sent} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        assert_eq!(
            answer(proxy.https, raw.as_bytes()).await.status,
            200,
            "{sent}"
        );
    }
    let mut send = h2_client(proxy.https).await;
    let req = http::Request::get(proxy.url("/h2/x/../y"))
        .body(())
        .expect("req");
    let (status, _, _) = h2_ask(&mut send, req).await.expect("h2");
    assert_eq!(status, 200);
    let mut expected: Vec<&str> = cases.iter().map(|(_, want)| *want).collect();
    expected.push("/h2/y");
    assert_eq!(rec.targets(), expected);
}

#[tokio::test]
async fn paths_climbing_above_the_root_get_400_and_are_not_forwarded() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    for target in [
        "/../../etc/passwd",
        "/a/../../b",
        "/%2e%2e/etc/passwd",
        "/a/%2E%2E/%2e%2e/b",
        "/..%2f..%2fetc/passwd",
        "/x/..%5c..%5cwindows",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        answer(proxy.https, raw.as_bytes()).await.assert_page(400);
    }
    let mut send = h2_client(proxy.https).await;
    let req = http::Request::get(proxy.url("/a/../../b"))
        .body(())
        .expect("req");
    let (status, headers, _) = h2_ask(&mut send, req).await.expect("h2");
    assert_eq!(status, 400);
    assert!(headers.contains_key("x-request-id"), "not the page");
    assert!(rec.seen().is_empty(), "forwarded: {:?}", rec.targets());
    // The plain-HTTP listener redirects to the normalised path, and refuses the same.
    let redirect = plain(proxy.http, "/a/./b/../c?q").await;
    assert_eq!(redirect.status, 301, "{}", redirect.head);
    assert_eq!(redirect.header("location"), Some("https://localhost/a/c?q"));
    plain(proxy.http, "/../etc/passwd").await.assert_page(400);
}

/// `GET target` on the plain-HTTP listener, byte for byte (URL libraries remove dot segments).
async fn plain(addr: std::net::SocketAddr, target: &str) -> crate::support::raw::Answer {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(SOON, crate::support::raw::read_answer(&mut tcp, &mut buf))
        .await
        .expect("in time")
        .expect("an answer")
}

#[tokio::test]
async fn transfer_codings_other_than_chunked_get_501_and_are_not_forwarded() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    for (te, status) in [
        ("gzip, chunked", 501),
        ("deflate, chunked", 501),
        ("identity, chunked", 501),
    ] {
        let raw = format!(
            "POST /te HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let (a, closed) = ask(proxy.https, raw.as_bytes()).await;
        a.expect("an answer").assert_page(status);
        assert!(closed, "{te}: connection kept open");
    }
    // Two Transfer-Encoding fields (nginx: "duplicate header line"): 400.
    let raw = "POST /te2 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
               Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let (a, closed) = ask(proxy.https, raw.as_bytes()).await;
    a.expect("an answer").assert_page(400);
    assert!(closed, "connection kept open");
    assert!(rec.seen().is_empty(), "forwarded: {:?}", rec.targets());
    // `chunked` alone, in any case, is fine.
    let raw = "POST /ok HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: Chunked\r\n\r\n\
               5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(answer(proxy.https, raw.as_bytes()).await.status, 200);
    assert_eq!(rec.seen()[0].body.as_deref(), Some(&b"hello"[..]));
}

/// Cookie crumbs of an HTTP/2 request as the upstream got them.
async fn h2_cookies(up: std::net::SocketAddr) -> (crate::support::TestProxy, Vec<u8>) {
    let proxy = proxy_to(up, &[]).await;
    let mut send = h2_client(proxy.https).await;
    let req = http::Request::get(proxy.url("/headers"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(())
        .expect("req");
    let (status, _, body) = h2_ask(&mut send, req).await.expect("h2");
    assert_eq!(status, 200);
    (proxy, body)
}

#[tokio::test]
async fn h2_cookie_crumbs_are_joined_for_the_upstream() {
    // HTTP/1.1 upstream: RFC 9113 §8.2.3 says they MUST become one field.
    let rec = Recorder::start().await;
    let (_proxy, _) = h2_cookies(rec.addr).await;
    let seen = rec.seen();
    let cookies: Vec<_> = seen[0].headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
    // HTTP/2 upstream: one field too, in order (splitting is allowed there, not required).
    let up = TestUpstream::start_h2("h2").await;
    let (_proxy, body) = h2_cookies(up.addr).await;
    let text = String::from_utf8_lossy(&body);
    let cookies: Vec<_> = text.lines().filter(|l| l.starts_with("cookie:")).collect();
    assert_eq!(cookies, ["cookie: a=1; b=2; c=3"], "{text}");
}

#[tokio::test]
async fn client_request_ids_are_kept_only_from_trusted_proxies() {
    let rec = Recorder::start().await;
    let raw = b"GET /rid HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: chosen-by-client\r\n\r\n";
    let proxy = proxy_to(rec.addr, &[]).await;
    let a = answer(proxy.https, raw).await;
    let id = a.header("x-request-id").expect("id").to_owned();
    assert_ne!(
        id, "chosen-by-client",
        "an untrusted client chose the request id"
    );
    assert_eq!(id.len(), 32);
    assert_eq!(rec.seen()[0].headers["x-request-id"], id.as_str());
    let trusted = proxy_to(rec.addr, &[("PROXY_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let a = answer(trusted.https, raw).await;
    assert_eq!(a.header("x-request-id"), Some("chosen-by-client"));
    assert_eq!(rec.seen()[1].headers["x-request-id"], "chosen-by-client");
}

#[tokio::test]
async fn the_plain_http_port_speaks_http1_only() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let mut tcp = TcpStream::connect(proxy.http).await.expect("connect");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2raw::frame(h2raw::SETTINGS, 0, 0, &[]));
    hello.extend(h2raw::get(1, "/"));
    tcp.write_all(&hello).await.expect("write");
    let seen = closed_within(&mut tcp, SOON)
        .await
        .expect("connection closed in time");
    assert!(
        seen.is_empty() || seen.starts_with(b"HTTP/1.1 "),
        "the HTTP port answered HTTP/2: {seen:?}"
    );
    // HTTP/1.1 still redirects there.
    let redirect = client_h1()
        .get(proxy.http_url("/x"))
        .send()
        .await
        .expect("redirect");
    assert_eq!(redirect.status(), 301);
}

/// Issue 26: what nginx refuses in the request line — `GET *` (400), a lowercase method (400),
/// `TRACE` (405) — gets the page over HTTP/1.1 and HTTP/2 and never reaches the app. Before: all
/// three were forwarded. A well-behaved request beside them is forwarded.
#[tokio::test]
async fn asterisk_targets_lowercase_methods_and_trace_are_refused() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    for (line, status) in [
        ("GET * HTTP/1.1", 400),
        ("OPTIONS * HTTP/1.1", 400),
        ("get /lower HTTP/1.1", 400),
        ("TRACE /trace HTTP/1.1", 405),
    ] {
        let raw = format!("{line}\r\nHost: localhost\r\n\r\n");
        answer(proxy.https, raw.as_bytes())
            .await
            .assert_page(status);
    }
    let mut send = h2_client(proxy.https).await;
    for (method, path, status) in [("TRACE", "/trace2", 405), ("get", "/lower2", 400)] {
        let req = http::Request::builder()
            .method(http::Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(proxy.url(path))
            .body(())
            .expect("req");
        let (got, _, _) = h2_ask(&mut send, req).await.expect("h2");
        assert_eq!(got.as_u16(), status, "{method} {path} over HTTP/2");
    }
    assert_eq!(
        answer(
            proxy.https,
            b"GET /fine HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .await
        .status,
        200
    );
    assert_eq!(
        rec.targets(),
        ["/fine"],
        "only the well-behaved request was forwarded"
    );
}
