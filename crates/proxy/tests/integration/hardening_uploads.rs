//! Hardening (issue 26 item 5): `PROXY_UPSTREAM_TIMEOUT` is a gap between two operations with
//! the upstream (nginx `proxy_send_timeout` / `proxy_read_timeout`), never a total: an upload
//! slower than the timeout reaches the app whole, while an app that stops taking the body, or
//! gives no answer head after it, still gets 504. A well-behaved client runs beside each.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::support::load::Load;
use crate::support::raw::{SOON, h1, read_answer};
use crate::support::upstream::TestUpstream;
use crate::support::{client, proxy_to};

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 24;

/// `POST /count` of `CHUNKS` × `CHUNK` bytes written one chunk every `pace`; the answer.
async fn upload(https: std::net::SocketAddr, pace: Duration) -> (u16, String, Duration) {
    let total = CHUNK * CHUNKS;
    let mut s = h1(https).await;
    let head =
        format!("POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: {total}\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    for _ in 0..CHUNKS {
        s.write_all(&[b'u'; CHUNK]).await.expect("chunk");
        s.flush().await.expect("flush");
        tokio::time::sleep(pace).await;
    }
    let mut buf = Vec::new();
    let a = tokio::time::timeout(SOON, read_answer(&mut s, &mut buf))
        .await
        .expect("an answer in time")
        .expect("an answer");
    (a.status, a.text(), started.elapsed())
}

/// 1.5 MiB over ~2.4 s behind a 1 s upstream timeout, the app on HTTP/1.1 and on HTTP/2:
/// 200 and every byte counted by the app (before: 504 after 1 s, the app saw a cut body).
#[tokio::test]
async fn an_upload_slower_than_the_upstream_timeout_arrives_whole() {
    for h2 in [false, true] {
        let up = match h2 {
            false => TestUpstream::start("a").await,
            true => TestUpstream::start_h2("a").await,
        };
        let proxy = proxy_to(
            up.addr,
            &[
                ("PROXY_UPSTREAM_TIMEOUT", "1s"),
                ("PROXY_MAX_BODY_SIZE", "0"),
            ],
        )
        .await;
        let bystander = Load::start(&proxy.url("/id"), vec![client(), client()]);
        let (status, body, took) = upload(proxy.https, Duration::from_millis(100)).await;
        let seen = bystander.stop().await;
        assert!(took > Duration::from_secs(2), "the upload took {took:?}");
        assert_eq!(
            (status, body),
            (200, (CHUNK * CHUNKS).to_string()),
            "h2 upstream: {h2}"
        );
        assert_eq!(seen.failed, 0, "bystander errors: {:?}", seen.errors);
        assert!(seen.ok > 0);
    }
}

/// The timeout still ends an exchange the upstream does not move: an app that never reads the
/// body (the proxy's writes stall) and an app that is slow to answer after the body.
#[tokio::test]
async fn an_upstream_that_stops_taking_the_body_or_answering_still_gets_504() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(
        up.addr,
        &[
            ("PROXY_UPSTREAM_TIMEOUT", "1s"),
            ("PROXY_MAX_BODY_SIZE", "0"),
        ],
    )
    .await;
    // 64 MiB as fast as the proxy takes it, to an app route that never reads it: the socket
    // buffers fill, the proxy's writes stop, and 1 s later the answer is 504.
    let mut s = h1(proxy.https).await;
    let total = 64 * 1024 * 1024;
    let head = format!(
        "POST /slow?ms=30000 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {total}\r\n\r\n"
    );
    let (mut r, mut w) = tokio::io::split(&mut s);
    let writer = async {
        w.write_all(head.as_bytes()).await.ok()?;
        for _ in 0..total / CHUNK {
            w.write_all(&[b's'; CHUNK]).await.ok()?;
        }
        Some(())
    };
    let mut buf = Vec::new();
    let reader = tokio::time::timeout(SOON, read_answer(&mut r, &mut buf));
    let answer = tokio::select! {
        a = reader => a.expect("an answer in time").expect("an answer"),
        _ = writer => panic!("the whole body was taken by an app that never reads it"),
    };
    assert_eq!(answer.status, 504);
    // The body sent quickly, the head late: 504 too.
    let (mut s, mut buf) = (h1(proxy.https).await, Vec::new());
    s.write_all(
        b"POST /slow?ms=3000 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .expect("write");
    let a = tokio::time::timeout(SOON, read_answer(&mut s, &mut buf))
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(a.status, 504);
}
