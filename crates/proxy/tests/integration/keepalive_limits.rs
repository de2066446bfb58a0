//! Connections without end (issue 14 §4): PROXY_KEEPALIVE_REQUESTS and PROXY_KEEPALIVE_LIFETIME
//! close a connection gracefully (HTTP/1.1 `Connection: close` on the last answer, HTTP/2
//! GOAWAY) with nothing in flight lost, and HTTP/2 PINGs alone do not keep a connection open.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::h2raw::{self, Conn, h2_ask};
use crate::support::raw::{SOON, closed_within, h1, read_answer, tls_connect};
use crate::support::upstream::TestUpstream;
use crate::support::{TestProxy, proxy_to};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

async fn proxy(env: &[(&str, &str)]) -> (TestUpstream, TestProxy) {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, env).await;
    (up, proxy)
}

/// An `h2`-crate connection and its driver task (which ends when the connection does).
async fn h2_conn(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let io = tls_connect(addr, &[b"h2"]).await;
    let (send, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    (send, tokio::spawn(conn))
}

fn get(proxy: &TestProxy, path: &str) -> http::Request<()> {
    http::Request::get(proxy.url(path)).body(()).expect("req")
}

#[tokio::test]
async fn h1_connection_closes_after_keepalive_requests() {
    let (_up, proxy) = proxy(&[("PROXY_KEEPALIVE_REQUESTS", "3")]).await;
    let mut s = h1(proxy.https).await;
    let mut buf = Vec::new();
    for n in 1..=3 {
        s.write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let a = read_answer(&mut s, &mut buf).await.expect("answer");
        assert_eq!((a.status, a.text().as_str()), (200, "a"), "request {n}");
        let close = a.header("connection") == Some("close");
        assert_eq!(close, n == 3, "request {n}: {}", a.head);
    }
    assert!(
        closed_within(&mut s, SOON).await.is_some(),
        "connection kept open after PROXY_KEEPALIVE_REQUESTS"
    );
}

#[tokio::test]
async fn h2_connection_gets_goaway_after_keepalive_requests_and_loses_nothing() {
    let (_up, proxy) = proxy(&[("PROXY_KEEPALIVE_REQUESTS", "3")]).await;
    let (mut send, conn) = h2_conn(proxy.https).await;
    // The first request is still waiting for the upstream when the third one arrives.
    let mut ready = send.clone().ready().await.expect("ready");
    let (slow, _) = ready
        .send_request(get(&proxy, "/slow?ms=1500"), true)
        .expect("send");
    for n in 2..=3 {
        let (status, _, body) = h2_ask(&mut send, get(&proxy, "/id")).await.expect("h2");
        assert_eq!(
            (status, body.as_slice()),
            (http::StatusCode::OK, &b"a"[..]),
            "request {n}"
        );
    }
    let slow = tokio::time::timeout(SOON, slow)
        .await
        .expect("in time")
        .expect("the in-flight request was answered");
    assert_eq!(slow.status(), 200);
    let mut body = slow.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.expect("body"));
    }
    assert_eq!(data, b"slow done");
    let ended = tokio::time::timeout(SOON, conn).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "connection not closed gracefully after PROXY_KEEPALIVE_REQUESTS: {ended:?}"
    );
}

#[tokio::test]
async fn h1_connection_closes_after_keepalive_lifetime_without_losing_the_answer() {
    let (_up, proxy) = proxy(&[("PROXY_KEEPALIVE_LIFETIME", "1s")]).await;
    // A request still running when the lifetime ends gets its answer, marked as the last.
    let mut s = h1(proxy.https).await;
    s.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let a = read_answer(&mut s, &mut buf).await.expect("answer");
    assert_eq!((a.status, a.text().as_str()), (200, "slow done"));
    assert_eq!(a.header("connection"), Some("close"), "{}", a.head);
    assert!(closed_within(&mut s, SOON).await.is_some());
    // An idle connection past its lifetime is closed (the keep-alive timeout is 75 s).
    let mut s = h1(proxy.https).await;
    s.write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let a = read_answer(&mut s, &mut buf).await.expect("answer");
    assert_eq!(a.status, 200);
    assert!(
        closed_within(&mut s, SOON).await.is_some(),
        "connection kept open past PROXY_KEEPALIVE_LIFETIME"
    );
}

/// Send a PING every 300 ms (and acknowledge the proxy's) until the proxy closes the
/// connection: the frames it sent, or `None` if it is still open after `within`.
async fn ping_until_closed(c: &mut Conn, within: Duration) -> Option<Vec<h2raw::Frame>> {
    let mut seen = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(300));
    let closed = tokio::time::timeout(within, async {
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let _ = c.io.write_all(&h2raw::frame(h2raw::PING, 0, 0, b"keepopen")).await;
                    let _ = c.io.flush().await;
                }
                f = c.next() => match f {
                    None => return,
                    Some(f) => {
                        if f.kind == h2raw::PING && f.flags & 1 == 0 {
                            let ack = h2raw::frame(h2raw::PING, 1, 0, &f.payload);
                            let _ = c.io.write_all(&ack).await;
                            let _ = c.io.flush().await;
                        }
                        seen.push(f);
                    }
                },
            }
        }
    })
    .await;
    closed.ok().map(|()| seen)
}

/// One request, then only PINGs: the connection is idle all the same.
async fn pinging_h2_connection(env: &[(&str, &str)]) -> Option<Vec<h2raw::Frame>> {
    let (_up, proxy) = proxy(env).await;
    let mut c = Conn::open(proxy.https).await;
    c.send(&h2raw::get(1, "/id")).await;
    c.until(|f| f.kind == h2raw::DATA && f.end_stream()).await;
    ping_until_closed(&mut c, SOON).await
}

fn has_goaway(frames: &[h2raw::Frame]) -> bool {
    frames
        .iter()
        .any(|f| f.kind == h2raw::GOAWAY && f.goaway_code() == 0)
}

#[tokio::test]
async fn h2_pings_alone_do_not_keep_a_connection_open() {
    let frames = pinging_h2_connection(&[("PROXY_KEEPALIVE_TIMEOUT", "1s")])
        .await
        .expect("a connection that only PINGs was kept open past the keep-alive timeout");
    assert!(
        has_goaway(&frames),
        "closed without a graceful GOAWAY: {frames:?}"
    );
}

#[tokio::test]
async fn h2_connection_gets_goaway_after_keepalive_lifetime() {
    let frames = pinging_h2_connection(&[("PROXY_KEEPALIVE_LIFETIME", "1s")])
        .await
        .expect("connection kept open past PROXY_KEEPALIVE_LIFETIME");
    assert!(
        has_goaway(&frames),
        "closed without a graceful GOAWAY: {frames:?}"
    );
}
