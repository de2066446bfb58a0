//! `PROXY_UPSTREAM_HTTP2`: requests spread over every upstream address, the original host in
//! `:authority`, re-resolution followed, a vanished address skipped; an HTTP/1-only upstream
//! served over HTTP/1.1 in `auto` mode and refused with a clear reason in `true` mode.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::upstream::TestUpstream;
use crate::support::{ProxyOptions, SwapLookup, TestProxy, client, client_h1, eventually};
use tracing_subscriber::layer::SubscriberExt;

async fn h2_proxy(lookup: std::sync::Arc<SwapLookup>, workers: &str) -> TestProxy {
    proxy_with(lookup, workers, "true").await
}

async fn proxy_with(lookup: std::sync::Arc<SwapLookup>, workers: &str, mode: &str) -> TestProxy {
    let mut opts = ProxyOptions::new(&[
        ("PROXY_UPSTREAM", "upstream.test:8443"),
        ("PROXY_UPSTREAM_HTTP2", mode),
        ("PROXY_UPSTREAM_CONNECT_TIMEOUT", "2s"),
        ("PROXY_WORKERS", workers),
    ]);
    opts.lookup = Some(lookup);
    TestProxy::start_with(opts).await
}

/// The body of `GET url`, with this `Host` header if given.
async fn body(c: reqwest::Client, url: String, host: Option<&str>) -> String {
    let mut req = c.get(url);
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    req.send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

/// WARN and above from this thread (and the workers it starts) go to the proxy's error.log.
fn log_errors(proxy: &TestProxy) -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(tracing_subscriber::registry().with(proxy.logs.error_layer()))
}

async fn ids(proxy: &TestProxy, n: usize) -> HashMap<String, usize> {
    let c = client();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let resp = c.get(proxy.url("/id")).send().await.expect("request");
        assert_eq!(resp.status(), 200);
        *seen.entry(resp.text().await.expect("body")).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn requests_are_spread_over_every_address() {
    let (a, b) = (
        TestUpstream::start_h2("a").await,
        TestUpstream::start_h2("b").await,
    );
    let lookup = SwapLookup::new(vec![a.addr, b.addr]);
    let mut opts = ProxyOptions::new(&[
        ("PROXY_UPSTREAM", "upstream.test:8443"),
        ("PROXY_UPSTREAM_HTTP2", "true"),
        ("PROXY_UPSTREAM_H2_CONNECTIONS", "1"),
        ("PROXY_WORKERS", "1"),
    ]);
    opts.lookup = Some(lookup);
    let proxy = TestProxy::start_with(opts).await;
    let seen = ids(&proxy, 20).await;
    // One worker, round-robin per request: strictly alternating.
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
    // With one connection per address: two in all, each carrying ten multiplexed requests.
    let c = client();
    let mut peers = std::collections::HashSet::new();
    for _ in 0..10 {
        peers.insert(body(c.clone(), proxy.url("/peer"), None).await);
    }
    assert_eq!(peers.len(), 2, "{peers:?}");
}

#[tokio::test]
async fn the_original_host_travels_as_the_authority() {
    let up = TestUpstream::start_h2("a").await;
    let proxy = h2_proxy(SwapLookup::new(vec![up.addr]), "1").await;
    let authority = |c, host| body(c, proxy.url("/authority"), host);
    // HTTP/1.1 client: its Host; HTTP/2 client: its :authority. Never a Host header beside.
    assert_eq!(
        authority(client_h1(), Some("shop.example:8443")).await,
        "HTTP/2.0 shop.example:8443 -"
    );
    assert_eq!(
        authority(client(), None).await,
        format!("HTTP/2.0 localhost:{} -", proxy.https.port())
    );
}

#[tokio::test]
async fn re_resolution_is_followed_and_dead_addresses_skipped() {
    let (a, b) = (
        TestUpstream::start_h2("a").await,
        TestUpstream::start_h2("b").await,
    );
    let lookup = SwapLookup::new(vec![a.addr, b.addr]);
    let proxy = h2_proxy(lookup.clone(), "2").await;
    let _subscriber = log_errors(&proxy);
    assert_eq!(ids(&proxy, 8).await.len(), 2);

    // The name now resolves to `b` only: within about a second nothing goes to `a`.
    lookup.set(vec![b.addr]);
    let moved = eventually(Duration::from_secs(5), || async {
        ids(&proxy, 6).await.keys().all(|id| id == "b")
    })
    .await;
    assert!(moved, "requests still reach the address that left DNS");

    // `a` is listed again but has gone away: every request is answered by `b`, none fails.
    lookup.set(vec![a.addr, b.addr]);
    drop(a);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let seen = ids(&proxy, 10).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
    assert!(
        proxy.error_log().contains("upstream connect failed"),
        "{}",
        proxy.error_log()
    );
}

#[tokio::test]
async fn an_upstream_without_http2_is_a_502_with_the_reason() {
    let up = TestUpstream::start("h1").await;
    let proxy = h2_proxy(SwapLookup::new(vec![up.addr]), "1").await;
    let _subscriber = log_errors(&proxy);
    let resp = client()
        .get(proxy.url("/id"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    let log = proxy.error_log();
    assert!(log.contains("does not speak HTTP/2"), "{log}");
}

#[tokio::test]
async fn auto_mode_serves_an_http1_upstream_over_http1() {
    let up = TestUpstream::start("h1").await;
    let proxy = proxy_with(SwapLookup::new(vec![up.addr]), "1", "auto").await;
    let _subscriber = log_errors(&proxy);
    for _ in 0..3 {
        let text = body(client(), proxy.url("/authority"), None).await;
        // HTTP/1.1 to the upstream, the original host in `Host`, as nginx sends it.
        assert_eq!(text, format!("HTTP/1.1 - localhost:{}", proxy.https.port()));
    }
    // The same setting with an HTTP/2 upstream: HTTP/2.
    let h2 = TestUpstream::start_h2("h2").await;
    let proxy = proxy_with(SwapLookup::new(vec![h2.addr]), "1", "auto").await;
    let text = body(client(), proxy.url("/authority"), None).await;
    assert_eq!(text, format!("HTTP/2.0 localhost:{} -", proxy.https.port()));
}

/// The first burst to an HTTP/1-only upstream in `auto` mode: the requests that waited for the
/// one HTTP/2 attempt go by HTTP/1.1 like it, and none is logged as a failed connection (they
/// were: "upstream connect failed ... which PROXY_UPSTREAM_HTTP2=true requires").
#[tokio::test]
async fn auto_mode_a_first_burst_to_an_http1_upstream_is_no_failure() {
    let up = TestUpstream::start("h1").await;
    let proxy = proxy_with(SwapLookup::new(vec![up.addr]), "1", "auto").await;
    let _subscriber = log_errors(&proxy);
    let c = client_h1();
    let burst: Vec<_> = (0..40)
        .map(|_| tokio::spawn(body(c.clone(), proxy.url("/authority"), None)))
        .collect();
    for task in burst {
        let text = task.await.expect("task");
        assert_eq!(text, format!("HTTP/1.1 - localhost:{}", proxy.https.port()));
    }
    let log = proxy.error_log();
    assert!(!log.contains("upstream connect failed"), "{log}");
}

#[tokio::test]
async fn a_burst_waits_for_one_new_connection() {
    let up = TestUpstream::start_h2("a").await;
    let proxy = h2_proxy(SwapLookup::new(vec![up.addr]), "1").await;
    // 40 requests at once on 40 client connections, before any upstream connection exists.
    let c = client_h1();
    let burst: Vec<_> = (0..40)
        .map(|_| tokio::spawn(body(c.clone(), proxy.url("/peer"), None)))
        .collect();
    let mut peers = std::collections::HashSet::new();
    for task in burst {
        peers.insert(task.await.expect("join"));
    }
    assert_eq!(
        peers.len(),
        1,
        "one upstream connection expected: {peers:?}"
    );
}

#[tokio::test]
async fn a_name_that_stops_resolving_is_a_503_not_a_wait_on_the_old_address() {
    let up = TestUpstream::start_h2("a").await;
    let old = up.addr;
    let lookup = SwapLookup::new(vec![old]);
    let proxy = h2_proxy(lookup.clone(), "1").await;
    let _subscriber = log_errors(&proxy);
    assert_eq!(ids(&proxy, 1).await.get("a"), Some(&1));
    // The container stops: its connection closes, its name leaves DNS, and its address now
    // belongs to something that accepts but never answers (as a vanished IP never answers).
    drop(up);
    lookup.set(vec![]);
    let _silent = tokio::net::TcpListener::bind(old).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = client()
        .get(proxy.url("/id"))
        .send()
        .await
        .expect("request");
    // As while a fresh deploy's app does not exist yet: 503 with Retry-After.
    assert_eq!(resp.status(), 503);
    let log = proxy.error_log();
    assert!(log.contains("resolves to no address"), "{log}");
    assert!(
        !log.contains("timed out"),
        "the old address was tried: {log}"
    );
}
