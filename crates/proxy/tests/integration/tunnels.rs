//! Upgrade tunnels obey the limits (issue 14 §2): only the protocols in PROXY_UPGRADE_PROTOCOLS
//! are tunnelled (never h2c), a silent tunnel closes after PROXY_TUNNEL_IDLE_TIMEOUT, a tunnel
//! keeps its PROXY_MAX_CONNECTIONS slot until it ends, and SIGTERM drains tunnels (bounded by
//! PROXY_DRAIN_TIMEOUT), closing them with TLS close_notify.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::binary::{SpawnedProxy, spawn_proxy};
use crate::support::raw::{Answer, SOON, Tls, h1, read_answer, tls_connect};
use crate::support::upstream::TestUpstream;
use crate::support::{eventually, proxy_to};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ask for an upgrade to `protocol` on `/upgrade` over a fresh HTTP/1.1 connection: the answer
/// head and the connection (the tunnel, after a 101).
async fn upgrade(addr: SocketAddr, path: &str, protocol: &str, extra: &str) -> (Answer, Tls) {
    let mut tls = h1(addr).await;
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n{extra}\r\n"
    );
    tls.write_all(raw.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let answer = tokio::time::timeout(SOON, read_answer(&mut tls, &mut buf))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert!(buf.is_empty(), "bytes after the answer: {buf:?}");
    (answer, tls)
}

/// A WebSocket tunnel through the proxy to the echoing test upstream.
async fn websocket(addr: SocketAddr) -> Tls {
    let (answer, tls) = upgrade(addr, "/upgrade", "websocket", "").await;
    assert_eq!(answer.status, 101, "{}", answer.head);
    assert_eq!(
        answer.header("upgrade"),
        Some("websocket"),
        "{}",
        answer.head
    );
    tls
}

/// Send `msg` through the tunnel and read it back; false if the tunnel is gone.
async fn echoes(tls: &mut Tls, msg: &[u8]) -> bool {
    if tls.write_all(msg).await.is_err() || tls.flush().await.is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    matches!(
        tokio::time::timeout(SOON, tls.read_exact(&mut back)).await,
        Ok(Ok(_)) if back == msg
    )
}

/// How the proxy ended the connection.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// TLS close_notify, then EOF.
    Clean,
    /// EOF or reset without close_notify.
    Cut(String),
}

/// Read until the proxy ends the connection; `None` if it is still open after `within`.
async fn end_within(tls: &mut Tls, within: Duration) -> Option<End> {
    tokio::time::timeout(within, async {
        let mut chunk = [0u8; 4096];
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) => return End::Clean,
                Ok(_) => {}
                Err(e) => return End::Cut(e.to_string()),
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn only_listed_upgrades_are_tunnelled_and_h2c_never() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[]).await;
    let mut tls = websocket(proxy.https).await;
    assert!(echoes(&mut tls, b"through the tunnel").await);
    // Not listed: forwarded as a plain request, without the upgrade (the upstream says so).
    for (protocol, extra) in [
        ("foo", ""),
        ("h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
        ("H2C", ""),
    ] {
        let (answer, _) = upgrade(proxy.https, "/upgrade", protocol, extra).await;
        assert_eq!(answer.status, 200, "{protocol}: {}", answer.head);
        assert_eq!(answer.text(), "not upgraded", "{protocol}");
        let (answer, _) = upgrade(proxy.https, "/headers", protocol, extra).await;
        let seen = answer.text().to_ascii_lowercase();
        for gone in ["upgrade:", "http2-settings:", "connection:"] {
            assert!(
                !seen.lines().any(|l| l.starts_with(gone)),
                "{protocol}: {gone} reached the upstream:\n{seen}"
            );
        }
    }
    // A listed protocol among others: only it is offered upstream.
    let (answer, _) = upgrade(proxy.https, "/headers", "h2c, websocket", "").await;
    assert!(
        answer.text().contains("upgrade: websocket\n"),
        "{}",
        answer.text()
    );
    // More protocols can be listed.
    let proxy = proxy_to(up.addr, &[("PROXY_UPGRADE_PROTOCOLS", "websocket, echo")]).await;
    let (answer, mut tls) = upgrade(proxy.https, "/upgrade", "echo", "").await;
    assert_eq!(answer.status, 101, "{}", answer.head);
    assert!(echoes(&mut tls, b"echo protocol").await);
}

#[tokio::test]
async fn a_silent_tunnel_is_closed_after_the_tunnel_idle_timeout() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_TUNNEL_IDLE_TIMEOUT", "1s")]).await;
    let mut tls = websocket(proxy.https).await;
    // Traffic in either direction keeps it open, well past the timeout.
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            echoes(&mut tls, format!("beat {i}").as_bytes()).await,
            "cut while in use"
        );
    }
    // Then silence: closed, cleanly.
    let end = end_within(&mut tls, SOON).await;
    assert_eq!(
        end,
        Some(End::Clean),
        "a silent tunnel stayed open or was cut uncleanly"
    );
}

#[tokio::test]
async fn a_tunnel_keeps_its_connection_slot_until_it_ends() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_MAX_CONNECTIONS", "2")]).await;
    let mut first = websocket(proxy.https).await;
    let mut second = websocket(proxy.https).await;
    assert!(echoes(&mut first, b"1").await && echoes(&mut second, b"2").await);
    // Both slots are taken by tunnels: a third connection waits in the backlog.
    let https = proxy.https;
    let mut third = tokio::spawn(async move { tls_connect(https, &[b"http/1.1"]).await });
    let waited = tokio::time::timeout(Duration::from_secs(2), &mut third).await;
    assert!(
        waited.is_err(),
        "a third connection was served while two tunnels held PROXY_MAX_CONNECTIONS=2"
    );
    // One tunnel ends: its slot goes to the waiting connection.
    first.shutdown().await.expect("close the first tunnel");
    drop(first);
    let mut tls = tokio::time::timeout(SOON, third)
        .await
        .expect("served once a tunnel ended")
        .expect("handshake");
    tls.write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let a = read_answer(&mut tls, &mut buf).await.expect("answer");
    assert_eq!((a.status, a.text().as_str()), (200, "a"));
    assert!(echoes(&mut second, b"still there").await);
}

/// SIGTERM to the binary, and wait until it stops accepting (its drain has begun).
async fn terminate(proxy: &SpawnedProxy) {
    proxy.signal(rustix::process::Signal::TERM);
    let https = proxy.https;
    assert!(
        eventually(SOON, || async move {
            tokio::net::TcpStream::connect(https).await.is_err()
        })
        .await,
        "the listener stayed open after SIGTERM"
    );
}

/// SIGTERM to the real binary with a tunnel open: it keeps carrying traffic after the listener
/// closed, and is closed with close_notify once PROXY_DRAIN_TIMEOUT is over; then exit 0.
#[tokio::test]
async fn sigterm_drains_a_tunnel_then_closes_it_cleanly() {
    let up = TestUpstream::start("a").await;
    let upstream = up.addr.to_string();
    let mut proxy = spawn_proxy(&[
        ("PROXY_UPSTREAM", upstream.as_str()),
        ("PROXY_DRAIN_TIMEOUT", "3s"),
        ("PROXY_WORKERS", "2"),
    ])
    .await;
    let mut tls = websocket(proxy.https).await;
    assert!(echoes(&mut tls, b"before").await);
    terminate(&proxy).await;
    assert!(
        echoes(&mut tls, b"during the drain").await,
        "the tunnel was cut at SIGTERM instead of drained"
    );
    let end = end_within(&mut tls, SOON).await;
    assert_eq!(
        end,
        Some(End::Clean),
        "tunnel not closed cleanly at the drain timeout"
    );
    let status = proxy.exit_status(SOON).await;
    assert!(status.success(), "{status:?}");
}

/// A tunnel that ends by itself during the drain lets the proxy exit without waiting for the
/// drain timeout.
#[tokio::test]
async fn sigterm_exits_as_soon_as_the_last_tunnel_ends() {
    let up = TestUpstream::start("a").await;
    let upstream = up.addr.to_string();
    let mut proxy = spawn_proxy(&[
        ("PROXY_UPSTREAM", upstream.as_str()),
        ("PROXY_DRAIN_TIMEOUT", "60s"),
    ])
    .await;
    let mut tls = websocket(proxy.https).await;
    terminate(&proxy).await;
    assert!(
        echoes(&mut tls, b"draining").await,
        "the tunnel was cut at SIGTERM"
    );
    tls.shutdown().await.expect("close the tunnel");
    drop(tls);
    let status = proxy.exit_status(SOON).await;
    assert!(status.success(), "{status:?}");
}
