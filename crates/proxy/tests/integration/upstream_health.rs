//! Passive health (issue 17 item 2), over both upstream protocols: a request tries every
//! resolved address before it fails; an address whose connect failed or timed out is skipped
//! for `PROXY_UPSTREAM_FAIL_TIMEOUT` (unless every address is); while the upstream name gives
//! no address the answer is 503 with `Retry-After`, through the error page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::support::upstream::TestUpstream;
use crate::support::{ProxyOptions, SwapLookup, TestProxy, client, closed_port};
use tracing_subscriber::layer::SubscriberExt;

async fn proxy(lookup: Arc<SwapLookup>, http2: &str, extra: &[(&str, &str)]) -> TestProxy {
    let mut env = vec![
        ("PROXY_UPSTREAM", "upstream.test:8443"),
        ("PROXY_UPSTREAM_HTTP2", http2),
        ("PROXY_WORKERS", "1"),
    ];
    env.extend_from_slice(extra);
    let mut opts = ProxyOptions::new(&env);
    opts.lookup = Some(lookup);
    TestProxy::start_with(opts).await
}

/// An address that accepts no connection and refuses none: a listener whose accept queue is
/// full, so the kernel drops every further SYN (a stale VIP, a vanished overlay task). Keep the
/// returned guards alive while it is used.
async fn black_hole() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut queued = Vec::new();
    while let Ok(Ok(s)) =
        tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
    {
        queued.push(s);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    (addr, listener, queued)
}

async fn statuses(proxy: &TestProxy, n: usize) -> Vec<u16> {
    let c = client();
    let mut out = Vec::new();
    for _ in 0..n {
        let r = c.get(proxy.url("/id")).send().await.expect("answer");
        out.push(r.status().as_u16());
    }
    out
}

#[tokio::test]
async fn a_name_without_address_is_a_503_with_retry_after() {
    for http2 in ["false", "true", "auto"] {
        let proxy = proxy(SwapLookup::new(Vec::new()), http2, &[]).await;
        let r = client()
            .get(proxy.url("/"))
            .header("accept", "text/html")
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 503, "PROXY_UPSTREAM_HTTP2={http2}");
        assert_eq!(
            r.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"5"[..]),
            "PROXY_UPSTREAM_HTTP2={http2}"
        );
        let page = r.text().await.expect("body");
        assert!(page.contains("503"), "the error page: {page}");
    }
}

#[tokio::test]
async fn every_address_is_tried_before_a_request_fails() {
    let up = TestUpstream::start_h2("good").await;
    for http2 in ["false", "true"] {
        let (a, b, c) = (
            closed_port().await,
            closed_port().await,
            closed_port().await,
        );
        let lookup = SwapLookup::new(vec![a, b, c, up.addr]);
        // No skipping: each request meets the refusing addresses it rotates onto.
        let proxy = proxy(lookup, http2, &[("PROXY_UPSTREAM_FAIL_TIMEOUT", "0s")]).await;
        let seen = statuses(&proxy, 8).await;
        assert!(seen.iter().all(|s| *s == 200), "{http2}: {seen:?}");
    }
}

#[tokio::test]
async fn a_silent_address_is_dialled_once_per_fail_timeout() {
    let up = TestUpstream::start_h2("good").await;
    let (hole, _listener, _queued) = black_hole().await;
    for http2 in ["false", "true"] {
        let lookup = SwapLookup::new(vec![hole, up.addr]);
        let proxy = proxy(
            lookup,
            http2,
            &[
                ("PROXY_UPSTREAM_CONNECT_TIMEOUT", "300ms"),
                ("PROXY_UPSTREAM_FAIL_TIMEOUT", "60s"),
            ],
        )
        .await;
        let _log = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(proxy.logs.error_layer()),
        );
        let seen = statuses(&proxy, 8).await;
        assert!(seen.iter().all(|s| *s == 200), "{http2}: {seen:?}");
        let log = proxy.error_log();
        let dialled = log
            .lines()
            .filter(|l| l.contains("upstream connect failed") && l.contains(&hole.to_string()))
            .count();
        assert_eq!(dialled, 1, "{http2}: {log}");
    }
}

#[tokio::test]
async fn when_every_address_is_down_each_is_still_tried() {
    let a = closed_port().await;
    let proxy = proxy(SwapLookup::new(vec![a]), "false", &[]).await;
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(proxy.logs.error_layer()),
    );
    assert_eq!(statuses(&proxy, 2).await, [502, 502]);
    let log = proxy.error_log();
    let dialled = log
        .lines()
        .filter(|l| l.contains("upstream connect failed"))
        .count();
    assert_eq!(dialled, 2, "{log}");
}

/// An app that accepts TCP and never answers the TLS handshake (hung), beside a good one: over
/// HTTP/2 it is marked down after one handshake timeout, like an address that refuses TCP.
#[tokio::test]
async fn an_address_that_accepts_tcp_but_never_handshakes_is_skipped() {
    let up = TestUpstream::start_h2("good").await;
    let hung = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hung_addr = hung.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
            assert!(held.len() < 64, "bounded");
        }
    });
    let lookup = SwapLookup::new(vec![hung_addr, up.addr]);
    let proxy = proxy(
        lookup,
        "true",
        &[
            ("PROXY_UPSTREAM_CONNECT_TIMEOUT", "300ms"),
            ("PROXY_UPSTREAM_FAIL_TIMEOUT", "60s"),
        ],
    )
    .await;
    let seen = statuses(&proxy, 8).await;
    assert!(seen.iter().all(|s| *s == 200), "{seen:?}");
    let dialled = accepted.load(std::sync::atomic::Ordering::SeqCst);
    holder.abort();
    assert_eq!(dialled, 1, "connections the hung app accepted");
}
