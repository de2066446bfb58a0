//! A client that asks for many static files over HTTP/2 and never reads them (its streams
//! stall on flow control) holds a few open files, not one per stream: a connection streams at
//! most `files::open::PER_CONNECTION` files at once, one client address at most
//! `files::open::PER_ADDRESS` over all its connections, and everyone else is still served.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::static_files::Site;
use crate::support::raw::tls_connect;

/// Streams each stalling connection opens (under the proxy's 128 concurrent streams).
const STREAMS: usize = 100;

/// Descriptors of this process open on `file` (the proxy runs in-process).
fn open_on(file: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == file))
                .count()
        })
        .unwrap_or(0)
}

/// One connection that sends `STREAMS` GETs for `path` and never reads a byte of the answers.
async fn stall(addr: std::net::SocketAddr, path: &str) -> Vec<h2::client::ResponseFuture> {
    stall_n(addr, path, STREAMS).await
}

/// As [`stall`], `streams` of them.
async fn stall_n(
    addr: std::net::SocketAddr,
    path: &str,
    streams: usize,
) -> Vec<h2::client::ResponseFuture> {
    let io = tls_connect(addr, &[b"h2"]).await;
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .handshake::<_, Bytes>(io)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut held = Vec::with_capacity(streams);
    let mut send = send;
    for _ in 0..streams {
        send = send.ready().await.expect("ready");
        let req = http::Request::get(format!("https://localhost:{}{path}", addr.port()))
            .body(())
            .expect("request");
        let (resp, _stream) = send.send_request(req, true).expect("send");
        held.push(resp);
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_downloads_hold_few_files_and_others_are_served() {
    let site = Site::start(&[]).await;
    let big = site.root().join("big.bin");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(1 << 30).expect("sparse length");
    let big = big.canonicalize().expect("canonical");
    let a = stall(site.proxy.https, "/static/big.bin").await;
    let b = stall(site.proxy.https, "/static/big.bin").await;
    // Let the proxy open whatever it will open for them.
    let mut most = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        most = most.max(open_on(&big));
    }
    assert!(most > 0, "the stalled downloads did start");
    assert!(
        most <= 2 * 16 + 2,
        "{most} open descriptors on the file for 2 stalled connections of {STREAMS} streams"
    );
    // Someone else is served meanwhile: a static file, at once.
    let resp = tokio::time::timeout(Duration::from_secs(5), site.get("/static/hello.txt", &[]))
        .await
        .expect("a bystander's static file in time");
    assert_eq!(resp.status(), StatusCode::OK);
    drop((a, b));
}

/// One client address, 70 connections × 16 never-read streams of a large file (1,120, above
/// the process-wide 1,024): a bystander from another address (127.0.0.2) still gets its static
/// file. Before: every slot was the attacker's and the bystander got 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_static_file_slot() {
    let site = Site::start(&[]).await;
    let big = site.root().join("big.bin");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(1 << 30).expect("sparse length");
    let mut held = Vec::new();
    for _ in 0..70 {
        held.push(stall_n(site.proxy.https, "/static/big.bin", 16).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bystander = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!(
        "https://127.0.0.1:{}/static/hello.txt",
        site.proxy.https.port()
    );
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let status = bystander
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16());
        statuses.push(status.unwrap_or(0));
    }
    eprintln!("bystander beside 1,120 stalled static streams of one address: {statuses:?}");
    assert_eq!(statuses, [200, 200, 200]);
    drop(held);
}
