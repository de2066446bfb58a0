//! Hardening (issue 8), sizes and connection limits against the real proxy over real sockets:
//! header block (431), URI (414) and body (413) limits, PROXY_MAX_CONNECTIONS, and
//! file-descriptor exhaustion in the real binary.

use std::time::Duration;

use crate::support::binary::spawn_proxy_with_fd_limit;
use crate::support::raw::{SOON, answer, ask, h1, read_answer};
use crate::support::recorder::Recorder;
use crate::support::upstream::TestUpstream;
use crate::support::{client, client_h1, eventually, proxy_to};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn big_headers(total: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < total {
        let n = (total - out.len()).min(4000);
        out.push_str(&format!("X-Big-{i}: {}\r\n", "v".repeat(n)));
        i += 1;
    }
    out
}

#[tokio::test]
async fn header_block_over_the_limit_gets_431_with_the_page() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await; // default 32 KiB
    let under = format!(
        "GET /under HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        big_headers(30 * 1024)
    );
    assert_eq!(answer(proxy.https, under.as_bytes()).await.status, 200);
    let over = format!(
        "GET /over HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        big_headers(33 * 1024)
    );
    answer(proxy.https, over.as_bytes()).await.assert_page(431);
    let json = format!(
        "GET /over HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n{}\r\n",
        big_headers(40 * 1024)
    );
    answer(proxy.https, json.as_bytes())
        .await
        .assert_json_page(431);
    assert_eq!(rec.targets(), ["/under"]);

    let small = proxy_to(rec.addr, &[("PROXY_MAX_HEADER_SIZE", "4k")]).await;
    let over = format!(
        "GET /over HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        big_headers(5 * 1024)
    );
    answer(small.https, over.as_bytes()).await.assert_page(431);
    assert_eq!(rec.targets(), ["/under"]);
}

/// Beyond hyper's read buffer (2 × limit + 8 KiB) or beyond 100 header fields, hyper answers a
/// bare 431 itself; nothing is forwarded either way.
#[tokio::test]
async fn headers_beyond_hypers_buffer_or_field_count_get_a_bare_431() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let huge = format!(
        "GET /huge HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        big_headers(200 * 1024)
    );
    let (a, closed) = ask(proxy.https, huge.as_bytes()).await;
    let a = a.expect("an answer");
    assert_eq!(a.status, 431, "{}", a.head);
    assert!(a.is_bare(), "{}", a.head);
    assert!(closed);
    let mut many = String::from("GET /many HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-F{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let a = answer(proxy.https, many.as_bytes()).await;
    eprintln!("120 small header fields: {}", a.head);
    assert_eq!(a.status, 431, "{}", a.head);
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn long_uris_get_414() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[("PROXY_MAX_URI_LENGTH", "1024")]).await;
    let ok = format!("/{}", "a".repeat(1000));
    let long = format!("/{}", "a".repeat(1100));
    let get = |t: &str| format!("GET {t} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(answer(proxy.https, get(&ok).as_bytes()).await.status, 200);
    answer(proxy.https, get(&long).as_bytes())
        .await
        .assert_page(414);
    // The default is 8 KiB.
    let dflt = proxy_to(rec.addr, &[]).await;
    let long = format!("/{}", "b".repeat(9000));
    answer(dflt.https, get(&long).as_bytes())
        .await
        .assert_page(414);
    // Beyond hyper's own URI limit (64 KiB) hyper answers a bare 414.
    let huge = format!("/{}", "c".repeat(66_000));
    let a = answer(dflt.https, get(&huge).as_bytes()).await;
    assert_eq!(a.status, 414, "{}", a.head);
    assert!(a.is_bare(), "{}", a.head);
    assert_eq!(rec.targets(), [ok]);
}

#[tokio::test]
async fn body_over_the_limit_is_413_up_front_and_while_streaming() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[("PROXY_MAX_BODY_SIZE", "64k")]).await;
    // Declared too large: answered before any body byte is sent.
    let mut s = h1(proxy.https).await;
    s.write_all(b"POST /declared HTTP/1.1\r\nHost: localhost\r\nContent-Length: 65537\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(SOON, read_answer(&mut s, &mut buf))
        .await
        .expect("413 without waiting for the body")
        .expect("answer")
        .assert_page(413);
    // Chunked, too large only while streaming.
    let mut chunked = String::from(
        "POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..10 {
        chunked.push_str(&format!("2800\r\n{}\r\n", "z".repeat(0x2800)));
    }
    chunked.push_str("0\r\n\r\n");
    answer(proxy.https, chunked.as_bytes())
        .await
        .assert_page(413);
    // Exactly at the limit: forwarded whole.
    let at = client_h1()
        .post(proxy.url("/at"))
        .body(vec![7u8; 64 * 1024])
        .send()
        .await
        .expect("at the limit");
    assert_eq!(at.status(), 200);
    assert_eq!(at.text().await.expect("body"), "recorded 65536");
    // HTTP/2, streamed without a length.
    let chunks = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 10_000]))),
    );
    let resp = client()
        .post(proxy.url("/h2"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("h2");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 413);
    let seen = rec.seen();
    assert!(
        !seen
            .iter()
            .any(|s| s.target == "/declared" || s.body.as_ref().is_some_and(|b| b.len() > 65536)),
        "an oversized body reached the upstream whole: {:?}",
        seen.iter().map(|s| &s.target).collect::<Vec<_>>()
    );
    assert!(seen.iter().any(|s| s.target == "/at"));
}

#[tokio::test]
async fn default_body_limit_is_one_mebibyte() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[]).await;
    let a = answer(
        proxy.https,
        b"POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048577\r\n\r\n",
    )
    .await;
    a.assert_page(413);
    let resp = client_h1()
        .post(proxy.url("/count"))
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .expect("1 MiB");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), "1048576");
}

/// Beyond PROXY_MAX_CONNECTIONS, new connections wait in the backlog (their handshake does not
/// progress) and are served as soon as a slot frees; a pile of waiting ones crashes nothing.
#[tokio::test]
async fn connections_beyond_the_limit_wait_and_are_then_served() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_MAX_CONNECTIONS", "3")]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(h1(proxy.https).await);
    }
    let addr = proxy.https;
    let waiting = tokio::spawn(async move {
        let mut s = h1(addr).await;
        s.write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        read_answer(&mut s, &mut buf).await.map(|a| a.status)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a 4th connection was served while 3 were held"
    );
    // Pile up more waiting connections (plain TCP: each takes a backlog slot).
    let mut pile = Vec::new();
    for _ in 0..50 {
        pile.push(TcpStream::connect(proxy.https).await.expect("backlog"));
    }
    held.pop();
    let status = tokio::time::timeout(SOON, waiting)
        .await
        .expect("served once a slot freed")
        .expect("task");
    assert_eq!(status, Some(200));
    drop(pile);
    drop(held);
    let ok = eventually(SOON, || async {
        matches!(
            client_h1()
                .get(proxy.url("/id"))
                .send()
                .await
                .map(|r| r.status().as_u16()),
            Ok(200)
        )
    })
    .await;
    assert!(ok, "the proxy did not recover after the pile-up");
}

/// File-descriptor exhaustion (the real binary under `ulimit -n 64`): accept errors are logged
/// and backed off, and once descriptors free up the proxy serves again.
#[tokio::test(flavor = "multi_thread")]
async fn fd_exhaustion_backs_off_and_recovers() {
    let up = TestUpstream::start("a").await;
    let mut proxy = spawn_proxy_with_fd_limit(
        64,
        &[
            ("PROXY_UPSTREAM", &up.addr.to_string()),
            ("PROXY_HANDSHAKE_TIMEOUT", "60s"),
        ],
    )
    .await;
    // Silent connections: each holds a descriptor in the proxy (waiting for a ClientHello).
    let mut hogs = Vec::new();
    for _ in 0..100 {
        hogs.push(TcpStream::connect(proxy.https).await.expect("connect"));
    }
    let (warned, out) = proxy.wait_for_line("accept failed", SOON).await;
    assert!(warned, "no 'accept failed' warning on stdout:\n{out}");
    assert!(
        proxy.child.try_wait().expect("wait").is_none(),
        "the proxy died"
    );
    drop(hogs);
    let c = client_h1();
    let url = proxy.url("/id");
    let ok = eventually(SOON, || async {
        matches!(
            c.get(&url).send().await.map(|r| r.status().as_u16()),
            Ok(200)
        )
    })
    .await;
    assert!(
        ok,
        "the proxy did not serve again after descriptors freed up"
    );
    proxy.signal(rustix::process::Signal::TERM);
    let status = proxy.exit_status(SOON).await;
    assert!(status.success(), "{status}");
}
