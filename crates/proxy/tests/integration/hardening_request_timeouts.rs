//! Hardening (issue 8), request timeouts against the real proxy over real sockets: in-flight
//! requests outliving the connection timeouts, a stalled request body (408 or a cut response),
//! upstream connect (502) and response (504) timeouts, and the bounded drain at shutdown.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::raw::{SOON, Tls, answer, closed_within, h1, read_answer};
use crate::support::recorder::Recorder;
use crate::support::upstream::TestUpstream;
use crate::support::{client, eventually, proxy_to};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn in_flight_requests_outlive_the_idle_and_header_timeouts() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(
        up.addr,
        &[
            ("PROXY_HEADER_TIMEOUT", "300ms"),
            ("PROXY_KEEPALIVE_TIMEOUT", "300ms"),
        ],
    )
    .await;
    let a = answer(
        proxy.https,
        b"GET /slow?ms=1500 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!((a.status, a.text().as_str()), (200, "slow done"));
    let resp = client()
        .get(proxy.url("/slow?ms=1500"))
        .send()
        .await
        .expect("h2");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "slow done");
}

/// A body that stops arriving: 408 with the page while the upstream has not answered yet
/// (`/count` reads the whole body first), then the connection is closed.
#[tokio::test]
async fn stalled_request_body_gets_408_and_a_close() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_BODY_TIMEOUT", "300ms")]).await;
    for json in [false, true] {
        let mut s = h1(proxy.https).await;
        let accept = if json {
            "application/json"
        } else {
            "text/html"
        };
        s.write_all(
            format!(
                "POST /count HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\n\
                 Content-Length: 100\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let mut buf = Vec::new();
        let a = tokio::time::timeout(SOON, read_answer(&mut s, &mut buf))
            .await
            .expect("answered in time")
            .expect("an answer");
        if json {
            a.assert_json_page(408);
        } else {
            a.assert_page(408);
        }
        assert!(
            closed_within(&mut s, SOON).await.is_some(),
            "connection left open after 408"
        );
    }
    // The same over HTTP/2: a streamed body that stalls after its first chunk.
    let stalled =
        futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"0123"))])
            .chain(futures_util::stream::pending());
    let resp = client()
        .post(proxy.url("/count"))
        .body(reqwest::Body::wrap_stream(stalled))
        .send()
        .await
        .expect("h2 answer");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 408);
    let lines = proxy.access_log();
    assert_eq!(
        lines.lines().filter(|l| l.contains("\" 408 ")).count(),
        3,
        "{lines}"
    );
}

/// When the upstream has already answered (`/echo` streams the body back), a stalled body can
/// only cut the response short: 200 head, then the connection closes mid-body.
#[tokio::test]
async fn stalled_body_after_the_upstream_answered_cuts_the_response() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_BODY_TIMEOUT", "300ms")]).await;
    let mut s = h1(proxy.https).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let got = closed_within(&mut s, SOON)
        .await
        .expect("connection closed after the body stalled");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the cut body looks complete: {text}"
    );
}

/// An upstream that accepts no TCP connection (full backlog): 502 after the connect timeout,
/// well before the response timeout.
#[tokio::test]
async fn upstream_connect_timeout_gives_502() {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let hole = sock.listen(1).expect("listen");
    let addr = hole.local_addr().expect("addr");
    // Fill the accept queue; later SYNs are dropped, so connects hang.
    let mut fill = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
        {
            fill.push(s);
        }
    }
    let hangs = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr))
        .await
        .is_err();
    assert!(
        hangs,
        "precondition: connecting to a full backlog should hang"
    );
    let proxy = proxy_to(
        addr,
        &[
            ("PROXY_UPSTREAM_CONNECT_TIMEOUT", "300ms"),
            ("PROXY_UPSTREAM_TIMEOUT", "30s"),
        ],
    )
    .await;
    let a = answer(proxy.https, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    a.assert_page(502);
    drop(hole);
}

#[tokio::test]
async fn upstream_response_timeout_gives_504() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_UPSTREAM_TIMEOUT", "300ms")]).await;
    let a = answer(
        proxy.https,
        b"GET /slow?ms=5000 HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
    )
    .await;
    a.assert_json_page(504);
}

/// A request that reached the upstream, then a shutdown with PROXY_DRAIN_TIMEOUT=300ms: the
/// connection to watch and how long `stop` took.
async fn stop_during_a_held_request() -> (Tls, Duration, Recorder) {
    let rec = Recorder::start().await;
    let mut proxy = proxy_to(rec.addr, &[("PROXY_DRAIN_TIMEOUT", "300ms")]).await;
    let mut s = h1(proxy.https).await;
    s.write_all(b"GET /hold HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let arrived = eventually(SOON, || async { rec.arrived.load(Ordering::SeqCst) == 1 }).await;
    assert!(arrived, "the request never reached the upstream");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), proxy.stop())
        .await
        .expect("shutdown returned within the drain bound");
    (s, started.elapsed(), rec)
}

/// The drain is bounded: a request slower than PROXY_DRAIN_TIMEOUT does not hold shutdown.
#[tokio::test]
async fn drain_timeout_bounds_shutdown() {
    let (_s, took, _rec) = stop_during_a_held_request().await;
    eprintln!("stopped after {took:?}");
    assert!(
        took >= Duration::from_millis(250),
        "did not drain at all ({took:?})"
    );
}

/// At the drain timeout the remaining connections are closed, not abandoned: the held request
/// does not complete 8 s later on a task nobody waits for (the binary would drop them on exit,
/// an embedder such as TestProxy would keep serving them).
#[tokio::test]
async fn connections_left_at_the_drain_timeout_are_closed() {
    let (mut s, _, _rec) = stop_during_a_held_request().await;
    let rest = closed_within(&mut s, Duration::from_secs(3))
        .await
        .expect("the slow request's connection outlived the drain");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}
