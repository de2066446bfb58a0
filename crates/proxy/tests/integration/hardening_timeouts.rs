//! Hardening (issue 8), connection timeouts against the real proxy over real sockets: TLS
//! handshake, header read (HTTP/1.1 and HTTP/2, trickled or silent), idle keep-alive (HTTP/1.1
//! and HTTP/2 GOAWAY, PING never acknowledged) and a client that never reads its answer.

use std::time::{Duration, Instant};

use crate::support::h2raw;
use crate::support::raw::{SOON, closed_within, h1, read_answer, tls_connect};
use crate::support::upstream::TestUpstream;
use crate::support::{TestProxy, client, proxy_to};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy with these header and keep-alive timeouts in front of a test upstream (keep both).
async fn proxy_with_timeouts(header: &str, keepalive: &str) -> (TestUpstream, TestProxy) {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(
        up.addr,
        &[
            ("PROXY_HEADER_TIMEOUT", header),
            ("PROXY_KEEPALIVE_TIMEOUT", keepalive),
        ],
    )
    .await;
    (up, proxy)
}

#[tokio::test]
async fn tls_handshake_timeout_closes_silent_and_stalled_handshakes() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_HANDSHAKE_TIMEOUT", "300ms")]).await;
    // Says nothing at all.
    let mut silent = TcpStream::connect(proxy.https).await.expect("connect");
    // Starts a TLS record and stalls.
    let mut stalled = TcpStream::connect(proxy.https).await.expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x80, 0x01])
        .await
        .expect("write");
    let (a, b) = tokio::join!(
        closed_within(&mut silent, SOON),
        closed_within(&mut stalled, SOON)
    );
    assert!(a.is_some(), "a silent connection was kept open");
    assert!(b.is_some(), "a stalled handshake was kept open");
    // And the proxy still serves.
    let resp = client().get(proxy.url("/id")).send().await.expect("get");
    assert_eq!(resp.status(), 200);
}

/// A client that trickles its header block gets the connection closed at the header timeout.
/// hyper closes it without writing anything (no 408); nginx does the same on
/// `client_header_timeout` (it logs a 408 but sends nothing). We log nothing.
#[tokio::test]
async fn header_timeout_closes_a_trickling_header_block() {
    let (_up, proxy) = proxy_with_timeouts("500ms", "60s").await;
    let s = h1(proxy.https).await;
    let started = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(s);
    let trickle = tokio::spawn(async move {
        let mut sent = 0usize;
        if wr
            .write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .is_err()
        {
            return sent;
        }
        for _ in 0..200 {
            if wr.write_all(b"X").await.is_err() || wr.flush().await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sent
    });
    let got = closed_within(&mut rd, SOON)
        .await
        .expect("the proxy closed the trickling connection");
    let after = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&got).into_owned();
    eprintln!("closed after {after:?}; bytes received: {:?}", text);
    assert!(
        after >= Duration::from_millis(450),
        "closed before the header timeout ({after:?})"
    );
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408 "),
        "unexpected answer: {text}"
    );
    assert!(
        !proxy.access_log().contains("/id"),
        "a request that never completed its head was logged"
    );
}

/// A client that completes the TLS handshake and then says nothing: for each ALPN, whether the
/// proxy closed it within 5 s.
async fn silent_after_handshake(header: &str, keepalive: &str) -> Vec<String> {
    let (_up, proxy) = proxy_with_timeouts(header, keepalive).await;
    let mut outcome = Vec::new();
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut s = tls_connect(proxy.https, &[alpn]).await;
        let started = Instant::now();
        let closed = closed_within(&mut s, Duration::from_secs(5)).await;
        outcome.push(format!(
            "ALPN {}, header timeout {header}, keep-alive {keepalive}: {}",
            String::from_utf8_lossy(alpn),
            match closed {
                Some(_) => format!("closed after {:?}", started.elapsed()),
                None => "still open after 5 s".to_owned(),
            }
        ));
    }
    eprintln!("{}", outcome.join("\n"));
    outcome
}

#[tokio::test]
async fn silent_clients_after_the_handshake_are_closed_at_the_idle_timeout() {
    let outcome = silent_after_handshake("60s", "500ms").await;
    assert!(outcome.iter().all(|o| o.contains("closed")), "{outcome:?}");
}

/// Before its first byte, hyper-util's auto builder is still sniffing for the HTTP/2 preface and
/// HTTP/1's header-read timer has not started; PROXY_HEADER_TIMEOUT must still apply (not only
/// the idle timeout, 75 s by default).
#[tokio::test]
async fn silent_clients_after_the_handshake_are_closed_at_the_header_timeout() {
    let outcome = silent_after_handshake("500ms", "60s").await;
    assert!(outcome.iter().all(|o| o.contains("closed")), "{outcome:?}");
}

/// Open an HTTP/2 connection (500 ms header and keep-alive timeouts), optionally complete one
/// request first, then trickle a HEADERS frame a byte every 100 ms: closed within 6 s?
async fn h2_trickle_closed(first_request: bool) -> bool {
    let (_up, proxy) = proxy_with_timeouts("500ms", "500ms").await;
    let mut c = h2raw::Conn::open(proxy.https).await;
    let mut id = 1;
    if first_request {
        c.send(&h2raw::get(1, "/id")).await;
        c.until(|f| f.kind == h2raw::DATA && f.end_stream()).await;
        id = 3;
    }
    let headers = h2raw::request(id, "GET", "/id", &[("x-slow", &"a".repeat(200))], true);
    let (mut rd, mut wr) = tokio::io::split(c.io);
    let trickle = tokio::spawn(async move {
        for b in headers {
            if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let closed = closed_within(&mut rd, Duration::from_secs(6)).await;
    trickle.abort();
    closed.is_some()
}

/// An HTTP/2 client that trickles its first HEADERS frame is closed at the header timeout
/// (hyper has none for HTTP/2).
#[tokio::test]
async fn h2_trickled_headers_are_closed_at_the_header_timeout() {
    assert!(
        h2_trickle_closed(false).await,
        "a trickling h2 client was kept open for 6 s with 500 ms timeouts"
    );
}

/// The same after one complete request on the connection (a header timeout that only guards
/// the first request is not enough): bytes of an unfinished HEADERS frame are no request, so
/// the idle timeout closes the connection.
#[tokio::test]
async fn h2_trickled_headers_after_a_first_request_are_closed() {
    assert!(
        h2_trickle_closed(true).await,
        "a trickling h2 client was kept open for 6 s with 500 ms timeouts"
    );
}

/// One request over HTTP/1.1 (answered 200), then silence: what the proxy sent until it closed
/// the connection (`None`: still open after [`SOON`]).
async fn idle_h1_connection(header: &str, keepalive: &str) -> Option<Vec<u8>> {
    let (_up, proxy) = proxy_with_timeouts(header, keepalive).await;
    let mut s = h1(proxy.https).await;
    s.write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let a = read_answer(&mut s, &mut buf).await.expect("answer");
    assert_eq!(a.status, 200);
    closed_within(&mut s, SOON).await
}

/// hyper's header-read timer also runs while an idle keep-alive connection waits for its next
/// request, so the effective keep-alive is min(PROXY_HEADER_TIMEOUT, PROXY_KEEPALIVE_TIMEOUT).
#[tokio::test]
async fn header_timeout_also_ends_idle_keepalive_connections() {
    let rest = idle_h1_connection("500ms", "60s")
        .await
        .expect("the idle connection is closed at the header timeout, not after 60 s");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[tokio::test]
async fn idle_keepalive_timeout_closes_h1_connections() {
    assert!(
        idle_h1_connection("60s", "400ms").await.is_some(),
        "idle keep-alive connection kept open"
    );
}

/// One request over raw HTTP/2, then silence: the frames the proxy sent until it closed the
/// connection (`None`: still open after [`SOON`]). `ack_pings`: answer PINGs as a client should.
async fn idle_h2_connection(ack_pings: bool) -> Option<Vec<h2raw::Frame>> {
    let (_up, proxy) = proxy_with_timeouts("60s", "400ms").await;
    let mut c = h2raw::Conn::open(proxy.https).await;
    c.send(&h2raw::get(1, "/id")).await;
    let frames = c.until(|f| f.kind == h2raw::DATA && f.end_stream()).await;
    assert!(
        frames
            .iter()
            .any(|f| f.kind == h2raw::HEADERS && f.stream == 1),
        "no answer: {frames:?}"
    );
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(SOON, async {
        while let Some(f) = c.next().await {
            if ack_pings && f.kind == h2raw::PING && f.flags & 1 == 0 {
                let _ =
                    c.io.write_all(&h2raw::frame(h2raw::PING, 1, 0, &f.payload))
                        .await;
                let _ = c.io.flush().await;
            }
            seen.push(f);
        }
    })
    .await;
    eprintln!("ack_pings={ack_pings}: frames after the answer: {seen:?}");
    closed.ok().map(|()| seen)
}

#[tokio::test]
async fn idle_keepalive_timeout_closes_h2_connections_with_goaway() {
    let frames = idle_h2_connection(true)
        .await
        .expect("idle h2 connection closed in time");
    let goaway = frames
        .iter()
        .find(|f| f.kind == h2raw::GOAWAY)
        .unwrap_or_else(|| panic!("closed without GOAWAY: {frames:?}"));
    assert_eq!(goaway.goaway_code(), 0, "graceful GOAWAY (NO_ERROR)");
}

/// h2's graceful shutdown waits for the client to acknowledge its PING before it closes; a
/// client that never does must not keep an idle connection (and its PROXY_MAX_CONNECTIONS slot)
/// forever.
#[tokio::test]
async fn idle_h2_client_that_never_acks_ping_is_still_closed() {
    let frames = idle_h2_connection(false).await;
    assert!(
        frames.is_some(),
        "an idle h2 connection that ignores PING was kept open past the keep-alive timeout"
    );
}

/// A client that asks for a large answer and never reads it (nginx `send_timeout`): once nothing
/// moves for the keep-alive timeout, the connection must go, not wait for the reader forever.
#[tokio::test]
async fn a_client_that_never_reads_its_answer_is_cut_off() {
    const N: usize = 32 << 20;
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_KEEPALIVE_TIMEOUT", "400ms")]).await;
    let mut s = h1(proxy.https).await;
    s.write_all(format!("GET /big?n={N} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    // Read nothing for 3 s: socket and TLS buffers fill, the proxy's writes stall, nothing
    // moves for far longer than the keep-alive timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Then read as fast as possible: a connection that was cut off yields what was buffered and
    // ends; one that was kept yields the whole answer.
    let mut total = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    eprintln!(
        "read {total} bytes of a {N}-byte answer; ended: {}",
        ended.is_ok()
    );
    assert!(
        total < N,
        "the whole answer was delivered: the stalled connection was kept"
    );
}
