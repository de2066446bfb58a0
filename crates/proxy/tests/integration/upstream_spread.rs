//! A single-address upstream still spreads (issue 17 item 3): behind one address, a small TCP
//! balancer that sends each new connection to the next of several real upstreams (as a Swarm
//! VIP or a cloud load balancer does); the proxy's several HTTP/2 connections per address, and
//! their replacement after a number of requests or an age, reach every backend, and nothing in
//! flight is lost when a connection is replaced.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::upstream::TestUpstream;
use crate::support::{ProxyOptions, SwapLookup, TestProxy, client};

/// A per-connection round-robin balancer on one address; dropping the token stops it.
async fn balancer(backends: Vec<SocketAddr>) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut next = 0;
        loop {
            let accepted = tokio::select! {
                _ = stopped.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((mut front, _)) = accepted else {
                continue;
            };
            let backend = backends[next % backends.len()];
            next += 1;
            tokio::spawn(async move {
                if let Ok(mut back) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
                }
            });
        }
    });
    (addr, stop)
}

async fn three_behind_one(
    env: &[(&str, &str)],
) -> (TestProxy, Vec<TestUpstream>, CancellationToken) {
    let ups = vec![
        TestUpstream::start_h2("b1").await,
        TestUpstream::start_h2("b2").await,
        TestUpstream::start_h2("b3").await,
    ];
    let (addr, stop) = balancer(ups.iter().map(|u| u.addr).collect()).await;
    let mut all = vec![
        ("PROXY_UPSTREAM", "upstream.test:8443"),
        ("PROXY_UPSTREAM_HTTP2", "true"),
        ("PROXY_WORKERS", "1"),
    ];
    all.extend_from_slice(env);
    let mut opts = ProxyOptions::new(&all);
    opts.lookup = Some(SwapLookup::new(vec![addr]));
    (TestProxy::start_with(opts).await, ups, stop)
}

/// Which backend answered `n` requests sent `concurrent` at a time.
async fn backends(
    proxy: &TestProxy,
    n: usize,
    concurrent: usize,
    path: &str,
) -> HashMap<String, usize> {
    let c = client();
    let mut seen = HashMap::new();
    for _ in 0..n / concurrent {
        let batch: Vec<_> = (0..concurrent)
            .map(|_| {
                let (c, url) = (c.clone(), proxy.url(path));
                tokio::spawn(async move {
                    let r = c.get(url).send().await.expect("answer");
                    assert_eq!(r.status(), 200);
                    r.text().await.expect("body")
                })
            })
            .collect();
        for t in batch {
            *seen.entry(t.await.expect("task")).or_insert(0) += 1;
        }
    }
    seen
}

#[tokio::test]
async fn several_connections_per_address_reach_every_backend() {
    let (proxy, _ups, _stop) = three_behind_one(&[("PROXY_UPSTREAM_H2_CONNECTIONS", "3")]).await;
    let seen = backends(&proxy, 30, 1, "/id").await;
    eprintln!("spread over 3 connections: {seen:?}");
    for b in ["b1", "b2", "b3"] {
        assert!(
            seen.get(b).is_some_and(|n| *n > 0),
            "{b} got nothing: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_is_replaced_after_its_requests_with_nothing_lost() {
    let (proxy, _ups, _stop) = three_behind_one(&[
        ("PROXY_UPSTREAM_H2_CONNECTIONS", "1"),
        ("PROXY_UPSTREAM_H2_MAX_REQUESTS", "5"),
    ])
    .await;
    // Slow answers in flight while their connection retires: every one still arrives.
    let slow = backends(&proxy, 40, 4, "/slow?ms=30").await;
    assert_eq!(slow.values().sum::<usize>(), 40, "{slow:?}");
    let seen = backends(&proxy, 30, 1, "/id").await;
    eprintln!("one connection, 5 requests each: {seen:?}");
    for b in ["b1", "b2", "b3"] {
        assert!(
            seen.get(b).is_some_and(|n| *n > 0),
            "{b} got nothing: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_connection_is_replaced_after_its_lifetime() {
    let (proxy, _ups, _stop) = three_behind_one(&[
        ("PROXY_UPSTREAM_H2_CONNECTIONS", "1"),
        ("PROXY_UPSTREAM_H2_LIFETIME", "100ms"),
    ])
    .await;
    let mut seen = HashMap::new();
    for _ in 0..4 {
        for (k, v) in backends(&proxy, 3, 1, "/id").await {
            *seen.entry(k).or_insert(0) += v;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for b in ["b1", "b2", "b3"] {
        assert!(
            seen.get(b).is_some_and(|n| *n > 0),
            "{b} got nothing: {seen:?}"
        );
    }
}

/// A request that finds a connection open does not wait while the pool grows: in front of the
/// upstream, a listener that forwards its first connection and stalls every later one (accepts
/// TCP, never forwards), so the second connection's dial hangs; the second request is answered
/// on the first connection meanwhile (before the stall ends, which the test bounds at 20 s).
#[tokio::test]
async fn a_request_uses_an_open_connection_while_another_is_dialled() {
    let up = TestUpstream::start_h2("a").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front_addr = listener.local_addr().expect("addr");
    let release = CancellationToken::new();
    let released = release.clone();
    let backend = up.addr;
    tokio::spawn(async move {
        let mut stalled = Vec::new();
        while let Ok((mut front, _)) = listener.accept().await {
            if stalled.is_empty() {
                stalled.push(None);
                tokio::spawn(async move {
                    if let Ok(mut back) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut front, &mut back).await;
                    }
                });
            } else if stalled.len() < 16 {
                stalled.push(Some(front));
            }
            if released.is_cancelled() {
                return;
            }
        }
    });
    let lookup = SwapLookup::new(vec![front_addr]);
    let env = [
        ("PROXY_UPSTREAM", "upstream.test:8443"),
        ("PROXY_UPSTREAM_HTTP2", "true"),
        ("PROXY_WORKERS", "1"),
        ("PROXY_UPSTREAM_H2_CONNECTIONS", "2"),
        ("PROXY_UPSTREAM_CONNECT_TIMEOUT", "60s"),
    ];
    let mut opts = ProxyOptions::new(&env);
    opts.lookup = Some(lookup);
    let proxy = TestProxy::start_with(opts).await;
    let c = client();
    let first = c.get(proxy.url("/id")).send().await.expect("first");
    assert_eq!(first.status(), 200);
    // The second connection's dial now hangs; the request goes on the first one.
    let second = tokio::time::timeout(Duration::from_secs(20), c.get(proxy.url("/id")).send())
        .await
        .expect("answered while the second connection was still being dialled")
        .expect("second");
    assert_eq!(second.status(), 200);
    release.cancel();
}
