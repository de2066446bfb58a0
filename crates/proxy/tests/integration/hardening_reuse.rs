//! Hardening (issue 26 item 4): at `PROXY_MAX_CONNECTIONS`, idle connections make room for new
//! clients (nginx "reusing connections"): sockets that never start TLS and idle keep-alive
//! connections are closed first; a connection with a request in flight is kept.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::proxy_to;
use crate::support::raw::{SOON, h1, read_answer};
use crate::support::upstream::TestUpstream;

/// A limit of 20 held by 9 silent TCP sockets, 10 idle keep-alive connections and 1 request
/// in flight: 5 newcomers (a new connection each) are served, each within 3 s, and the request
/// in flight completes. Before: the newcomers waited in the backlog (10 s handshake timeout,
/// 75 s keep-alive) and 3 of 5 failed (the other 2 got the slot of the request in flight once it ended).
#[tokio::test]
async fn at_the_connection_limit_idle_connections_make_room() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_MAX_CONNECTIONS", "20")]).await;
    let mut busy = h1(proxy.https).await;
    busy.write_all(b"GET /slow?ms=9000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut silent = Vec::new();
    for _ in 0..9 {
        silent.push(TcpStream::connect(proxy.https).await.expect("connect"));
    }
    let mut idle = Vec::new();
    for _ in 0..10 {
        let mut s = h1(proxy.https).await;
        s.write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let a = read_answer(&mut s, &mut buf).await.expect("answer");
        assert_eq!(a.status, 200);
        idle.push(s);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let newcomer = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let mut served = 0;
    for _ in 0..5 {
        if let Ok(r) = newcomer.get(proxy.url("/id")).send().await
            && r.status() == 200
            && r.text().await.is_ok_and(|t| t == "a")
        {
            served += 1;
        }
    }
    eprintln!("newcomers at the connection limit: {served} of 5 served");
    assert_eq!(served, 5, "newcomers served at the connection limit");
    let mut buf = Vec::new();
    let a = tokio::time::timeout(SOON, read_answer(&mut busy, &mut buf))
        .await
        .expect("in time")
        .expect("the request in flight was kept");
    assert_eq!((a.status, a.text().as_str()), (200, "slow done"));
}
