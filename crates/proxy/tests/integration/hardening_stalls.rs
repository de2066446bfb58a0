//! Hardening (issue 26 items 1 and 3): a client that stops taking an answer (HTTP/2 window 0,
//! or a socket it never reads) while it keeps its connection alive with PINGs. Its streams are
//! reset after `PROXY_SEND_TIMEOUT` (HTTP/1.1: its connection closed), and meanwhile they never
//! hold the upstream connection's shared window: a bystander is served throughout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::h2raw::{self, Conn, PING, RST_STREAM, SETTINGS, frame, request};
use crate::support::raw::{SOON, h1};
use crate::support::upstream::TestUpstream;
use crate::support::{client, proxy_to};

/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.5.2) of 0: the client takes no DATA at all.
fn window_zero() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 0])
}

fn ping() -> Vec<u8> {
    frame(PING, 0, 0, &[7; 8])
}

/// A client that opens `streams` requests for `path` with window 0 and PINGs every 200 ms.
async fn staller(https: std::net::SocketAddr, path: &str, streams: u32) -> Conn {
    let mut c = Conn::open(https).await;
    c.send(&window_zero()).await;
    for i in 0..streams {
        c.send(&request(
            1 + 2 * i,
            "GET",
            path,
            &[("accept-encoding", "gzip")],
            true,
        ))
        .await;
    }
    c
}

/// Bystander requests (`GET /id`, one every 50 ms, each allowed 5 s) for `lasting`:
/// (served, failed).
async fn bystander(url: String, lasting: Duration) -> (u32, u32) {
    let (mut ok, mut failed) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < lasting {
        let c = client();
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            let r = c.get(&url).send().await.ok()?;
            (r.status() == 200).then_some(())?;
            r.bytes().await.ok()
        })
        .await;
        match got {
            Ok(Some(b)) if b.as_ref() == b"a" => ok += 1,
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (ok, failed)
}

/// Window 0 and PINGs: the error page (gzip) and a 4 MB answer from the app are both reset
/// (RST_STREAM CANCEL) after the 1 s send timeout; the connection itself stays. Before: no
/// reset, ever (the streams, their encoders and their upstream streams were held as long as
/// the PINGs flowed). A bystander is served all along.
#[tokio::test]
async fn an_answer_the_client_takes_nothing_of_is_reset_after_the_send_timeout() {
    let up = TestUpstream::start_h2("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_SEND_TIMEOUT", "1s")]).await;
    let beside = tokio::spawn(bystander(proxy.url("/id"), Duration::from_secs(3)));
    let mut c = staller(proxy.https, "/nonexistent", 1).await;
    c.send(&request(3, "GET", "/big?n=4000000", &[], true))
        .await;
    let started = Instant::now();
    let mut reset = Vec::new();
    while reset.len() < 2 && started.elapsed() < SOON {
        c.send(&ping()).await;
        if let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(200), c.next()).await
            && f.kind == RST_STREAM
        {
            reset.push((f.stream, f.rst_code()));
        }
    }
    reset.sort_unstable();
    assert_eq!(reset, [(1, 8), (3, 8)], "both streams reset with CANCEL");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The connection still serves.
    c.send(&frame(h2raw::SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]))
        .await;
    c.send(&h2raw::get(5, "/id")).await;
    c.until(|f| f.stream == 5 && f.end_stream()).await;
    let (ok, failed) = beside.await.expect("bystander");
    eprintln!("bystander beside the send-timeout staller: {ok} served, {failed} failed");
    assert_eq!(failed, 0, "bystander failures ({ok} served)");
}

/// HTTP/1.1: a client that never reads a 64 MiB answer has its connection closed after the
/// send timeout: reading afterwards ends early. Before: the whole answer was still there.
#[tokio::test]
async fn an_http1_answer_the_client_does_not_read_closes_the_connection() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_SEND_TIMEOUT", "1s")]).await;
    let total = 64 * 1024 * 1024;
    let mut s = h1(proxy.https).await;
    s.write_all(format!("GET /big?n={total} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(SOON, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection was not closed");
    assert!(got < total, "the whole answer was sent ({got} bytes)");
}

/// The shared upstream HTTP/2 connection: 2 clients × 8 streams of 4 MB answers they never
/// take (window 0, PINGs), one worker, one upstream connection, send timeout at its 60 s
/// default. Bystanders on other connections are served meanwhile. Before: the stalled streams
/// held the whole upstream connection window, and every bystander waited (0 bytes) until the
/// stallers left.
#[tokio::test]
async fn stalled_streams_never_hold_the_shared_upstream_window() {
    let up = TestUpstream::start_h2("a").await;
    let proxy = proxy_to(
        up.addr,
        &[
            ("PROXY_WORKERS", "1"),
            ("PROXY_UPSTREAM_H2_CONNECTIONS", "1"),
        ],
    )
    .await;
    let mut stallers = Vec::new();
    for _ in 0..2 {
        stallers.push(staller(proxy.https, "/big?n=4000000", 8).await);
    }
    // Let the app's data reach the proxy and the windows fill.
    for _ in 0..10 {
        for c in &mut stallers {
            c.send(&ping()).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let beside = tokio::spawn(bystander(proxy.url("/id"), Duration::from_secs(3)));
    while !beside.is_finished() {
        for c in &mut stallers {
            c.send(&ping()).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, failed) = beside.await.expect("bystander");
    eprintln!("bystander beside 16 stalled streams: {ok} served, {failed} failed");
    assert_eq!(
        failed, 0,
        "bystander failures beside 16 stalled streams ({ok} served)"
    );
    assert!(ok > 0);
}
