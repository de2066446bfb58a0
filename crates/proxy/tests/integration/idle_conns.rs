//! Idle keep-alive connections (issue 18): each protocol is served by its own hyper connection
//! (HTTP/2 when ALPN chose it, else HTTP/1.1); a connection that idled after a
//! small request still serves the next one, up to the configured header limit, on HTTP/1.1
//! and HTTP/2; a TLS client without ALPN is served HTTP/1.1.

use std::time::Duration;

use crate::support::h2raw::{self, Conn, h2_ask};
use crate::support::raw::{SOON, closed_within, read_answer, tls_connect};
use crate::support::upstream::TestUpstream;
use crate::support::{TestProxy, proxy_to};
use tokio::io::AsyncWriteExt;

/// Long enough for the connection to settle into its idle state (no timing is asserted).
const IDLE: Duration = Duration::from_millis(300);

async fn proxy() -> (TestUpstream, TestProxy) {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[]).await; // default header limit 32 KiB
    (up, proxy)
}

/// Header fields of about `total` bytes.
fn big_fields(total: usize) -> Vec<(String, String)> {
    (0..total.div_ceil(4000))
        .map(|i| (format!("x-big-{i}"), "v".repeat(3990)))
        .collect()
}

async fn h1_rounds(alpn: &[&[u8]], proxy: &TestProxy) {
    let mut s = tls_connect(proxy.https, alpn).await;
    let mut buf = Vec::new();
    let big: String = big_fields(30 * 1024)
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let small = "GET /id HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string();
    let large = format!("GET /id HTTP/1.1\r\nHost: localhost\r\n{big}\r\n");
    for (n, req) in [&small, &large, &small, &large].into_iter().enumerate() {
        s.write_all(req.as_bytes()).await.expect("write");
        let a = tokio::time::timeout(SOON, read_answer(&mut s, &mut buf))
            .await
            .expect("answer in time")
            .expect("answer");
        assert_eq!((a.status, a.text().as_str()), (200, "a"), "request {n}");
        tokio::time::sleep(IDLE).await;
    }
}

#[tokio::test]
async fn h1_connection_serves_small_and_large_heads_after_idling() {
    let (_up, proxy) = proxy().await;
    h1_rounds(&[b"http/1.1"], &proxy).await;
}

#[tokio::test]
async fn tls_without_alpn_is_http1_only() {
    let (_up, proxy) = proxy().await;
    h1_rounds(&[], &proxy).await;
    // No ALPN, yet the HTTP/2 preface: HTTP/2 over TLS needs ALPN (RFC 9113 §3.2; nginx does not
    // sniff either), so no HTTP/2 SETTINGS comes back, at most an HTTP/1.1 refusal.
    let mut io = tls_connect(proxy.https, &[]).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), None);
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2raw::frame(4, 0, 0, &[]));
    io.write_all(&hello).await.expect("write");
    let back = closed_within(&mut io, SOON)
        .await
        .expect("connection closed");
    assert!(
        back.is_empty() || back.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&back)
    );
}

#[tokio::test]
async fn h2_connection_serves_small_and_large_heads_after_idling() {
    let (_up, proxy) = proxy().await;
    let io = tls_connect(proxy.https, &[b"h2"]).await;
    let (mut send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(conn);
    for n in 0..4 {
        let mut req = http::Request::get(proxy.url("/id"));
        if n % 2 == 1 {
            for (k, v) in big_fields(24 * 1024) {
                req = req.header(k, v);
            }
        }
        let (status, _, body) = h2_ask(&mut send, req.body(()).expect("req"))
            .await
            .expect("h2 answer");
        assert_eq!(
            (status.as_u16(), body.as_slice()),
            (200, &b"a"[..]),
            "request {n}"
        );
        tokio::time::sleep(IDLE).await;
    }
    // and the raw view: the server's SETTINGS still arrive first on a fresh connection
    let mut c = Conn::open(proxy.https).await;
    c.send(&h2raw::get(1, "/id")).await;
    let frames = c.until(|f| f.stream == 1 && f.end_stream()).await;
    assert!(
        frames.iter().any(|f| f.stream == 1),
        "no answer on stream 1"
    );
}
