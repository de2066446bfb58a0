//! The inspector's memory bound, measured on the real binary (its own process, so other tests
//! do not blur its RSS): a flood of large bodies both ways at the entry and body caps keeps the
//! kept bytes under `PROXY_INSPECT_MEMORY` and the process's RSS within that cap plus a fixed
//! allowance, while every byte still reaches the upstream and the client.

use std::time::Duration;

use futures_util::StreamExt;

use crate::support::binary::spawn_proxy;
use crate::support::client;
use crate::support::upstream::TestUpstream;

/// `PROXY_INSPECT_MEMORY` in this test.
const CAP: u64 = 16 << 20;
/// RSS allowed above the cap: buffers of the exchanges in flight, allocator slack.
const ALLOWANCE: u64 = 48 << 20;
const BODY: usize = 1 << 20;
const REQUESTS: usize = 300;
const CONCURRENCY: usize = 8;

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[tokio::test]
async fn a_flood_of_large_bodies_stays_within_the_memory_cap() {
    let up = TestUpstream::start("a").await;
    let cap = CAP.to_string();
    let proxy = spawn_proxy(&[
        ("PROXY_UPSTREAM", &up.addr.to_string()),
        ("PROXY_INSPECT_LISTEN", "127.0.0.1:0"),
        ("PROXY_INSPECT_ENTRIES", "1000"),
        ("PROXY_INSPECT_BODY_LIMIT", "1m"),
        ("PROXY_INSPECT_MEMORY", &cap),
        ("PROXY_MAX_BODY_SIZE", "0"),
        ("PROXY_WORKERS", "2"),
    ])
    .await;
    let inspector = proxy
        .startup
        .split(" inspector=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the inspector's address in the start-up log")
        .to_owned();
    let pid = proxy.child.id().expect("pid");
    let c = client();
    for _ in 0..20 {
        c.get(proxy.url("/id")).send().await.expect("warm-up");
    }
    let before = rss(pid);
    let body = bytes::Bytes::from(vec![b'z'; BODY]);
    let mut peak = before;
    let mut flood = futures_util::stream::iter(0..REQUESTS)
        .map(|_| {
            let (c, url, body) = (c.clone(), proxy.url("/echo"), body.clone());
            async move {
                let resp = c.post(url).body(body).send().await.expect("post");
                resp.bytes().await.expect("echoed").len()
            }
        })
        .buffer_unordered(CONCURRENCY);
    let mut n = 0;
    while let Some(len) = flood.next().await {
        assert_eq!(len, BODY, "every byte came back");
        n += 1;
        if n % 25 == 0 {
            peak = peak.max(rss(pid));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss(pid);
    peak = peak.max(after);
    let metrics = reqwest::get(format!("http://{inspector}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let kept = metric(&metrics, "proxy_inspect_memory_bytes");
    let entries = metric(&metrics, "proxy_inspect_entries");
    println!(
        "RSS before {before} B, peak {peak} B, after {after} B; kept {kept} B in {entries} \
         entries (cap {CAP} B, {REQUESTS} x {BODY} B both ways)"
    );
    assert!(kept <= CAP, "kept {kept} B > cap {CAP} B");
    assert!(entries >= 7, "the newest entries are kept ({entries})");
    assert!(
        peak.saturating_sub(before) <= CAP + ALLOWANCE,
        "RSS grew by {} B (cap {CAP} + allowance {ALLOWANCE})",
        peak - before
    );
}
