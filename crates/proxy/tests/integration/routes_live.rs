//! Live routes (issue 23 §3, §4): `PROXY_ROUTES_FILE` is watched, a saved change is in force
//! within a second, a file that does not parse keeps the old routes (error.log names the line);
//! 50 route changes while 20 WebSockets and 5 event streams run through an unchanged route drop
//! nothing; an event written upstream reaches the client at once, compressed or not.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::routes::{get, upgrade};
use crate::support::raw::SOON;
use crate::support::upstream::TestUpstream;
use crate::support::{Captured, ProxyOptions, TestProxy, client_h1, eventually};

/// A proxy reading its routes from `file` (written with `text` first).
async fn proxy_with_file(file: &Path, text: &str, env: &[(&str, &str)]) -> TestProxy {
    std::fs::write(file, text).expect("write routes");
    let mut opts = ProxyOptions::new(env);
    let path = file.to_str().expect("utf-8").to_owned();
    opts.env.push(("PROXY_ROUTES_FILE".into(), path));
    TestProxy::start_with(opts).await
}

/// Replace the file's content the way editors do (write beside, rename over).
fn save(file: &Path, text: &str) {
    let tmp = file.with_extension("swp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, file).expect("rename");
}

#[tokio::test]
async fn a_saved_change_is_in_force_within_a_second_and_a_bad_file_keeps_the_old_routes() {
    let a = TestUpstream::start_plain("a").await;
    let b = TestUpstream::start_plain("b").await;
    // Before the proxy starts: the watcher task logs into this thread's subscriber.
    let (captured, _guard) = Captured::info();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes");
    let first = format!("# the app\nlocalhost=http://{}\n", a.addr);
    let proxy = proxy_with_file(&file, &first, &[]).await;
    assert_eq!(get(&proxy, "localhost", "/id").await, (200, "a".into()));
    assert_eq!(get(&proxy, "b.localhost", "/id").await.0, 404);

    let saved = Instant::now();
    save(&file, &format!("{first}b.localhost=http://{}\n", b.addr));
    let took = async {
        eventually(SOON, || async {
            get(&proxy, "b.localhost", "/id").await.1 == "b"
        })
        .await
    };
    assert!(took.await, "the new route serves");
    let in_force = saved.elapsed();
    println!("routes file change in force after {in_force:?}");
    assert!(
        in_force < Duration::from_secs(3),
        "in force after {in_force:?}"
    );

    save(&file, &format!("{first}b.localhost=htp://{}\n", b.addr));
    let logged = eventually(SOON, || async {
        captured.text().contains("new routes refused")
    })
    .await;
    let log = captured.text();
    assert!(logged, "the log says why: {log}");
    assert!(log.contains("line 3: `b.localhost=htp://"), "{log}");
    assert!(log.contains("unknown scheme `htp`"), "{log}");
    assert_eq!(
        get(&proxy, "b.localhost", "/id").await,
        (200, "b".into()),
        "old routes serve on"
    );
    assert_eq!(get(&proxy, "localhost", "/id").await, (200, "a".into()));
}

/// Send `msg` through the tunnel and read it back.
async fn echoes(tls: &mut crate::support::raw::Tls, msg: &[u8]) -> bool {
    if tls.write_all(msg).await.is_err() || tls.flush().await.is_err() {
        return false;
    }
    let mut back = vec![0u8; msg.len()];
    matches!(
        tokio::time::timeout(SOON, tls.read_exact(&mut back)).await,
        Ok(Ok(_)) if back == msg
    )
}

#[tokio::test]
async fn fifty_route_changes_drop_no_websocket_and_no_stream_on_a_route_that_stays() {
    const CHANGES: usize = 50;
    let app = TestUpstream::start_plain("app").await;
    let other = TestUpstream::start_plain("other").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes");
    let base = format!("localhost=http://{}\n", app.addr);
    let proxy = proxy_with_file(&file, &base, &[]).await;

    let mut sockets = Vec::new();
    for _ in 0..20 {
        let (status, tls) = upgrade(proxy.https, "localhost", "/upgrade").await;
        assert_eq!(status, 101);
        sockets.push(tls);
    }
    // 5 event streams, 40 events 100 ms apart: they run through all the changes.
    let streams: Vec<_> = (0..5)
        .map(|_| {
            let url = proxy.url("/sse?n=40&ms=100");
            tokio::spawn(async move {
                let mut resp = client_h1()
                    .get(url)
                    .header("host", "localhost")
                    .send()
                    .await
                    .expect("stream answer");
                let mut text = Vec::new();
                while let Some(chunk) = resp.chunk().await.expect("stream not cut") {
                    text.extend_from_slice(&chunk);
                }
                String::from_utf8(text).expect("utf-8")
            })
        })
        .collect();

    let (mut lost, mut changed) = (0, 0);
    for i in 0..CHANGES {
        // Another route comes and goes, and a prefix route on the same host with it.
        let text = match i % 2 {
            0 => format!(
                "{base}o{i}.localhost=http://{o}\nlocalhost/o{i}/=http://{o} strip\n",
                o = other.addr
            ),
            _ => base.clone(),
        };
        save(&file, &text);
        // As the watcher does (it may have been first: then this finds nothing new).
        proxy.routes.reload().expect("routes reload");
        let served = get(&proxy, &format!("o{i}.localhost"), "/id").await;
        let want = match i % 2 {
            0 => (200, "other".to_owned()),
            _ => (404, served.1.clone()),
        };
        changed += usize::from(served == want);
        for (n, ws) in sockets.iter_mut().enumerate() {
            if !echoes(ws, format!("m{i}.{n};").as_bytes()).await {
                lost += 1;
            }
        }
    }
    assert_eq!(changed, CHANGES, "every change was in force at once");
    assert_eq!(lost, 0, "messages lost or tunnels closed");
    let want: Vec<u64> = (0..40).collect();
    for s in streams {
        let got = tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("stream ends")
            .expect("stream task");
        assert_eq!(numbers(&got), want, "every event, in order");
    }
    // The changes were real: the route that came and went serves while it is there.
    save(&file, &format!("{base}o.localhost=http://{}\n", other.addr));
    proxy.routes.reload().expect("reload");
    assert_eq!(
        get(&proxy, "o.localhost", "/id").await,
        (200, "other".into())
    );
}

/// The event numbers of an event stream's text, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ")?.split(' ').next()?.parse().ok())
        .collect()
}

/// The number of each whole event in `text` and how long after it was written upstream it is
/// now (the writer's clock is this process's).
fn fresh_events(text: &str, seen: usize) -> Vec<(u64, Duration)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    text.split_terminator("\n\n")
        .filter(|e| e.starts_with("data: "))
        .skip(seen)
        .filter_map(|e| {
            let mut words = e["data: ".len()..].split(' ');
            let i = words.next()?.parse().ok()?;
            let written = Duration::from_micros(words.next()?.parse().ok()?);
            Some((i, now.saturating_sub(written)))
        })
        .collect()
}

/// Each event's delay (written upstream → whole at the client), decoding gzip as it arrives.
async fn event_delays(proxy: &TestProxy, gzip: bool, n: usize) -> Vec<(u64, Duration)> {
    let mut req = client_h1()
        .get(proxy.url(&format!("/sse?n={n}&ms=200")))
        .header("host", "localhost");
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let mut resp = req.send().await.expect("answer");
    let coded = resp.headers().get("content-encoding").cloned();
    assert_eq!(
        coded.is_some(),
        gzip,
        "compressed exactly when asked: {coded:?}"
    );
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let mut plain = Vec::new();
    let mut delays = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        let text = match gzip {
            true => {
                decoder.write_all(&chunk).expect("gzip");
                decoder.flush().expect("gzip flush");
                String::from_utf8_lossy(decoder.get_ref()).into_owned()
            }
            false => {
                plain.extend_from_slice(&chunk);
                String::from_utf8_lossy(&plain).into_owned()
            }
        };
        let seen = delays.len();
        delays.extend(fresh_events(&text, seen));
    }
    delays
}

#[tokio::test]
async fn events_reach_the_client_as_they_are_written_compressed_or_not() {
    let app = TestUpstream::start_plain("app").await;
    let routes = format!("localhost=http://{}", app.addr);
    let proxy = crate::routes::proxy_with_routes(
        &routes,
        &[
            ("PROXY_COMPRESSION_UPSTREAM", "true"),
            ("PROXY_COMPRESSION_MIN_SIZE", "0"),
        ],
    )
    .await;
    for gzip in [false, true] {
        let delays = event_delays(&proxy, gzip, 8).await;
        let order: Vec<u64> = delays.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, (0..8).collect::<Vec<u64>>(), "every event, in order");
        let mut ms: Vec<u128> = delays.iter().map(|(_, d)| d.as_micros()).collect();
        ms.sort_unstable();
        println!(
            "gzip={gzip}: delay written upstream -> whole at the client, µs: median {} max {}",
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
        // Generous (debug build, two shared cores): an event held back for the next one
        // would be 200 ms late.
        assert!(
            delays.iter().all(|(_, d)| *d < Duration::from_millis(150)),
            "{delays:?}"
        );
    }
}
