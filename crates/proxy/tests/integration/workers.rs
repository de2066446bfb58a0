//! `PROXY_WORKERS`: every worker serves a share of the connections (each has its own listening
//! socket), measured on the real binary by the CPU time of its worker threads.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;

use crate::support::binary::spawn_proxy;
use crate::support::raw::{self, SOON};
use crate::support::upstream::TestUpstream;

const CONNECTIONS: usize = 64;
const REQUESTS_EACH: usize = 40;

/// CPU ticks (user + system) of each of the proxy's worker threads, by name: the main thread
/// (worker 0) and `proxy-worker-N`.
fn worker_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc task list");
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ...": comm may hold spaces; the fields after ')' are fixed.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        if tid != pid.to_string() && !comm.starts_with("proxy-worker") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after the comm.
        out.push((comm.to_owned(), ticks(11) + ticks(12)));
    }
    out.sort();
    out
}

/// Listening sockets on 127.0.0.1:`port` (state 0A in `/proc/net/tcp`).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")
        })
        .count()
}

/// A burst of connections arrives as one readiness event; with one listening socket shared by
/// the workers, the worker that woke first accepted them all and the other sat idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_connections_is_spread_over_the_workers() {
    let up = TestUpstream::start("w").await;
    let proxy = spawn_proxy(&[
        ("PROXY_UPSTREAM", &up.addr.to_string()),
        ("PROXY_WORKERS", "2"),
    ])
    .await;
    let pid = proxy.child.id().expect("pid");
    let mut before = worker_ticks(pid);
    for _ in 0..100 {
        if before.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        before = worker_ticks(pid);
    }
    assert_eq!(before.len(), 2, "two worker threads: {before:?}");
    assert_eq!(
        listening_sockets(proxy.https.port()),
        2,
        "one listening socket per worker"
    );
    let conns = join_all((0..CONNECTIONS).map(|_| raw::h1(proxy.https))).await;
    let served = join_all(conns.into_iter().map(|mut tls| async move {
        let mut buf = Vec::new();
        for _ in 0..REQUESTS_EACH {
            tls.write_all(b"GET /id HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .expect("write");
            tls.flush().await.expect("flush");
            let answer = tokio::time::timeout(SOON, raw::read_answer(&mut tls, &mut buf)).await;
            assert_eq!(answer.ok().flatten().map(|a| a.status), Some(200));
        }
    }))
    .await;
    assert_eq!(served.len(), CONNECTIONS);
    let after = worker_ticks(pid);
    let spent: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|((_, a), (_, b))| a - b)
        .collect();
    let total: u64 = spent.iter().sum();
    assert!(
        total >= 20,
        "enough work to judge the split: {after:?} {before:?}"
    );
    let least = spent.iter().copied().min().unwrap_or(0);
    assert!(
        least * 5 >= total,
        "each of the 2 workers did at least a fifth of the work: {spent:?} ticks ({after:?})"
    );
}
