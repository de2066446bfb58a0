//! One client cancelling streams must not fail another's requests (issue 14 §1): attacking
//! HTTP/2 connections send bursts of HEADERS, pause ~2 ms, then RST_STREAM(CANCEL) them all,
//! while a well-behaved load runs through the same proxy to an HTTP/2 upstream that has the
//! app's rapid-reset guard (`max_pending_accept_reset_streams(20)`, common::server). The
//! bystanders get no error; the attack is summarised in the log, not one line per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;

use crate::support::h2raw::h2_client;
use crate::support::load::Load;
use crate::support::upstream::TestUpstream;
use crate::support::{SwapLookup, TestProxy, client};

/// Attacking connections, streams per burst, bursts per connection (bounded: a few seconds).
const ATTACKERS: usize = 8;
const BURST: usize = 50;
const BURSTS: usize = 400;
/// How long the attack lasts at most.
const ATTACK_FOR: Duration = Duration::from_secs(3);

/// How the attacking streams are opened.
#[derive(Clone, Copy)]
enum Heads {
    /// `GET /id` with END_STREAM: nothing more to come.
    Ended,
    /// `POST /count` without END_STREAM: a body "to come" that never does (the client's reset
    /// breaks it while the proxy streams it upstream).
    BodyToCome,
}

/// One attacking connection: `BURSTS` times, `BURST` requests, a 2 ms pause, every one
/// cancelled. Returns the streams it cancelled; stops early when the proxy closes the connection.
async fn attack(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, heads: Heads) -> u64 {
    let mut send = h2_client(addr).await;
    let mut cancelled = 0;
    for _ in 0..BURSTS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut streams = Vec::with_capacity(BURST);
        for _ in 0..BURST {
            let Ok(ready) = send.clone().ready().await else {
                return cancelled;
            };
            send = ready;
            let (req, end) = match heads {
                Heads::Ended => (
                    http::Request::get(format!("https://localhost:{}/id", addr.port())),
                    true,
                ),
                Heads::BodyToCome => (
                    http::Request::post(format!("https://localhost:{}/count", addr.port())),
                    false,
                ),
            };
            match send.send_request(req.body(()).expect("request"), end) {
                Ok((resp, stream)) => streams.push((resp, stream)),
                Err(_) => return cancelled,
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        for (resp, mut stream) in streams {
            stream.send_reset(h2::Reason::CANCEL);
            drop(resp);
            cancelled += 1;
        }
    }
    cancelled
}

async fn h2_upstream_proxy(up: &TestUpstream, extra: &[(&str, &str)]) -> TestProxy {
    let mut env = vec![
        ("PROXY_UPSTREAM", "upstream.test:8443"),
        ("PROXY_UPSTREAM_HTTP2", "true"),
        ("PROXY_WORKERS", "1"),
    ];
    env.extend_from_slice(extra);
    let mut opts = crate::support::ProxyOptions::new(&env);
    opts.lookup = Some(SwapLookup::new(vec![up.addr]));
    TestProxy::start_with(opts).await
}

/// Run the attack beside a well-behaved `load`; the load's outcome and the streams cancelled.
async fn under_attack(
    proxy: &TestProxy,
    load: Load,
    heads: Heads,
) -> (crate::support::load::Outcome, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let cancelled = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let (stop, cancelled, addr) = (stop.clone(), cancelled.clone(), proxy.https);
            tokio::spawn(async move {
                // A closed connection is replaced, as an attacker would.
                while !stop.load(Ordering::Relaxed) {
                    let n = attack(addr, stop.clone(), heads).await;
                    cancelled.fetch_add(n, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(ATTACK_FOR).await;
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
    }
    let outcome = load.stop().await;
    (outcome, cancelled.load(Ordering::Relaxed))
}

#[tokio::test]
async fn cancel_flood_does_not_fail_bystanders() {
    let up = TestUpstream::start_h2("a").await;
    // One upstream connection: the case the attack used to break.
    let proxy = h2_upstream_proxy(&up, &[("PROXY_UPSTREAM_H2_CONNECTIONS", "1")]).await;
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(proxy.logs.error_layer()),
    );
    let load = Load::start(&proxy.url("/slow?ms=5"), (0..4).map(|_| client()).collect());
    let (outcome, cancelled) = under_attack(&proxy, load, Heads::Ended).await;
    let log = proxy.error_log();
    eprintln!(
        "reset flood: {cancelled} streams cancelled; bystanders {} ok, {} failed; error.log {} lines, summaries: {:?}",
        outcome.ok,
        outcome.failed,
        log.lines().count(),
        log.lines()
            .filter(|l| l.contains("more like this"))
            .collect::<Vec<_>>()
    );
    assert!(outcome.ok > 0, "the bystanders were served");
    let first: Vec<_> = outcome
        .errors
        .iter()
        .take(3)
        .map(|e| &e[..e.len().min(120)])
        .collect();
    assert_eq!(outcome.failed, 0, "{first:?}");
    // The log: a few lines and a summary with the count, not one line per attacking connection.
    // (The lines left are mostly the proxy's own HTTP/2 server cutting attacking connections
    // at its rapid-reset guard: h2's warning, once per connection, then the summary.)
    assert!(log.lines().count() <= 30, "{log}");
    assert!(log.contains("more like this in the last"), "{log}");
    // Afterwards the upstream still answers through the proxy.
    let r = client().get(proxy.url("/id")).send().await.expect("after");
    assert_eq!(r.status(), 200);
}

/// The attack with HEADERS that leave a body to come: the client's reset breaks the request body
/// the proxy streams upstream, which must not reset the upstream stream before the upstream has
/// answered it either. The bystanders send bodies too.
#[tokio::test]
async fn cancel_flood_with_bodies_to_come_does_not_fail_bystanders() {
    let up = TestUpstream::start_h2("a").await;
    let proxy = h2_upstream_proxy(&up, &[("PROXY_UPSTREAM_H2_CONNECTIONS", "1")]).await;
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(proxy.logs.error_layer()),
    );
    let load = Load::start_post(
        &proxy.url("/count"),
        (0..4).map(|_| client()).collect(),
        &[b'x'; 100],
    );
    let (outcome, cancelled) = under_attack(&proxy, load, Heads::BodyToCome).await;
    eprintln!(
        "reset flood, bodies to come: {cancelled} streams cancelled; bystanders {} ok, {} failed; error.log {} lines",
        outcome.ok,
        outcome.failed,
        proxy.error_log().lines().count()
    );
    assert!(outcome.ok > 0, "the bystanders were served");
    let first: Vec<_> = outcome
        .errors
        .iter()
        .take(3)
        .map(|e| &e[..e.len().min(120)])
        .collect();
    assert_eq!(outcome.failed, 0, "{first:?}");
    let r = client().get(proxy.url("/id")).send().await.expect("after");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_connection_that_keeps_cancelling_is_closed_gracefully() {
    use crate::support::h2raw::{Conn, GOAWAY, get, rst};
    let up = TestUpstream::start_h2("a").await;
    let proxy = h2_upstream_proxy(&up, &[]).await;
    let mut conn = Conn::open(proxy.https).await;
    // Streams the proxy has accepted (not a rapid reset: 20 ms later), whose answers are still
    // pending upstream, cancelled ten at a time: past common::server's MAX_CANCELLED, GOAWAY.
    let mut stream = 1;
    for _ in 0..15 {
        let ids: Vec<u32> = (0..10).map(|i| stream + 2 * i).collect();
        stream += 20;
        let heads: Vec<u8> = ids.iter().flat_map(|&i| get(i, "/slow?ms=500")).collect();
        conn.send(&heads).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let resets: Vec<u8> = ids.iter().flat_map(|&i| rst(i, 0x8)).collect();
        conn.send(&resets).await;
    }
    let frames = conn.until(|f| f.kind == GOAWAY).await;
    let goaway = frames.last().expect("GOAWAY");
    assert_eq!(goaway.goaway_code(), 0, "a graceful close (NO_ERROR)");
    // Everyone else is still served.
    let r = client().get(proxy.url("/id")).send().await.expect("after");
    assert_eq!(r.status(), 200);
}
