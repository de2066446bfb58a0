//! The logs end to end: through the in-process proxy (combined and JSON lines for real requests,
//! redirects and error answers, error.log causes, retention across restarts, flush at stop) and
//! through the real binary (SIGUSR1 reopen, every line on disk after SIGTERM, error.log echoed on
//! stdout).

use std::path::Path;
use std::time::Duration;

use crate::support::binary::spawn_proxy;
use crate::support::{
    ProxyOptions, TestApp, TestProxy, client, client_h1, closed_port, eventually,
};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The access log's lines once it has `n` of them (waits for the condition, not for a time).
async fn access_lines(proxy: &TestProxy, n: usize) -> Vec<String> {
    let reached = eventually(Duration::from_secs(10), || async {
        proxy.access_log().lines().count() >= n
    })
    .await;
    let text = proxy.access_log();
    assert!(reached, "expected {n} access lines, got:\n{text}");
    text.lines().map(str::to_owned).collect()
}

/// Split a combined line at its `[$time_local]`, checking the timestamp's shape.
fn split_time(line: &str) -> (&str, &str) {
    let (before, rest) = line.split_once(" [").expect("[");
    let (stamp, after) = rest.split_once("] ").expect("]");
    let parsed = time::OffsetDateTime::parse(
        stamp,
        time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
        ),
    );
    assert!(parsed.is_ok(), "time_local {stamp:?}");
    (before, after)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_proxied_request_is_one_combined_line() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(&app.addr.to_string(), &[]).await;
    let resp = client_h1()
        .get(proxy.url("/?lang=en"))
        .header("user-agent", "e2e-agent/1.0 \"quoted\"")
        .header("referer", "https://ref.example/page")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let n = resp.bytes().await.expect("body").len();
    let lines = access_lines(&proxy, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (before, after) = split_time(&lines[0]);
    assert_eq!(before, "127.0.0.1 - -");
    assert_eq!(
        after,
        format!(
            "\"GET /?lang=en HTTP/1.1\" 200 {n} \"https://ref.example/page\" \
             \"e2e-agent/1.0 \\x22quoted\\x22\""
        )
    );
}

// Single-threaded so that the thread-local subscriber below sees the proxy's own events (the
// binary installs the same layer globally with `Logs::init_tracing`).
#[tokio::test(flavor = "current_thread")]
async fn redirects_and_error_answers_are_logged_and_failures_reach_error_log() {
    use tracing_subscriber::layer::SubscriberExt;
    let down = closed_port().await;
    let proxy = TestProxy::start(&down.to_string(), &[]).await;
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(proxy.logs.error_layer()),
    );
    let resp = client_h1()
        .get(proxy.http_url("/a?b=1"))
        .send()
        .await
        .expect("redirect");
    assert_eq!(resp.status(), 301);
    let resp = client_h1().get(proxy.url("/x")).send().await.expect("502");
    assert_eq!(resp.status(), 502);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let page_len = resp.bytes().await.expect("body").len();

    let lines = access_lines(&proxy, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let redirect = lines
        .iter()
        .find(|l| l.contains("\"GET /a?b=1 HTTP/1.1\""))
        .expect("redirect line");
    assert!(split_time(redirect).1 == "\"GET /a?b=1 HTTP/1.1\" 301 0 \"-\" \"-\"");
    let failed = lines
        .iter()
        .find(|l| l.contains("\"GET /x HTTP/1.1\""))
        .expect("502 line");
    assert_eq!(
        split_time(failed).1,
        format!("\"GET /x HTTP/1.1\" 502 {page_len} \"-\" \"-\"")
    );

    // error.log names the failure, its cause and the request.
    let found = eventually(Duration::from_secs(10), || async {
        proxy.error_log().lines().any(|l| l.contains(&id))
    })
    .await;
    let errors = proxy.error_log();
    assert!(found, "no error.log line for {id}:\n{errors}");
    let line = errors.lines().find(|l| l.contains(&id)).expect("line");
    assert!(
        line.contains(" [warn] ") || line.contains(" [error] "),
        "{line}"
    );
    assert!(line.to_ascii_lowercase().contains("refused"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_log_carries_ids_upstream_and_timings() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(
        &app.addr.to_string(),
        &[("PROXY_ACCESS_LOG_FORMAT", "json")],
    )
    .await;
    let resp = client().get(proxy.url("/")).send().await.expect("request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let n = resp.bytes().await.expect("body").len();
    let lines = access_lines(&proxy, 1).await;
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    assert_eq!(v["request"], "GET / HTTP/2.0");
    assert_eq!(v["status"], 200);
    assert_eq!(v["body_bytes_sent"], n);
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(v["upstream_addr"], app.addr.to_string().as_str());
    assert!(v["request_time"].is_number() && v["upstream_response_time"].is_number());
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_with_retention_keeps_the_first_folder() {
    let app = TestApp::start().await;
    let root = tempfile::tempdir().expect("tempdir");
    let start = || {
        let mut opts = ProxyOptions::new(&[
            ("PROXY_UPSTREAM", &app.addr.to_string()),
            ("LOG_RETENTION", "true"),
        ]);
        opts.log_dir = Some(root.path().to_path_buf());
        TestProxy::start_with(opts)
    };
    let mut first = start().await;
    let resp = client().get(first.url("/")).send().await.expect("request");
    let _ = resp.bytes().await.expect("body");
    access_lines(&first, 1).await;
    first.stop().await;
    let first_dir = first.logs.dir().to_path_buf();
    drop(first);

    let second = start().await;
    assert_ne!(second.logs.dir(), first_dir);
    assert_eq!(second.logs.dir().parent(), Some(root.path()));
    let latest = std::fs::read_link(root.path().join("latest")).expect("latest");
    assert_eq!(Some(latest.as_os_str()), second.logs.dir().file_name());
    assert_eq!(read(&first_dir.join("access.log")).lines().count(), 1);
    assert_eq!(read(&second.logs.access_path()), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_proxy_leaves_every_line_on_disk() {
    let app = TestApp::start().await;
    let mut proxy = TestProxy::start(&app.addr.to_string(), &[]).await;
    let c = client();
    let n = 40;
    for i in 0..n {
        let resp = c
            .get(proxy.url(&format!("/?i={i}")))
            .send()
            .await
            .expect("request");
        let _ = resp.bytes().await.expect("body");
    }
    proxy.stop().await;
    let text = read(&proxy.logs.access_path());
    for i in 0..n {
        assert!(
            text.contains(&format!("\"GET /?i={i} HTTP/2.0\" 200 ")),
            "{i}"
        );
    }
    assert_eq!(text.lines().count(), n);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_reopens_on_sigusr1_and_flushes_on_sigterm() {
    let down = closed_port().await;
    let mut proxy = spawn_proxy(&[
        ("PROXY_UPSTREAM", &down.to_string()),
        ("LOG_RETENTION", "true"),
    ])
    .await;

    let c = client();
    let url = proxy.url("/");
    let get = |n: usize| {
        let c = c.clone();
        let url = url.clone();
        async move {
            for i in 0..n {
                let resp = c.get(format!("{url}?i={i}")).send().await.expect("request");
                assert_eq!(resp.status(), 502);
                let _ = resp.bytes().await.expect("body");
            }
        }
    };
    get(30).await;

    let dir = proxy.log_dir.join("latest");
    let moved = dir.join("access.log.1");
    let ready = eventually(Duration::from_secs(10), || async {
        read(&dir.join("access.log")).lines().count() == 30
    })
    .await;
    assert!(ready, "30 lines before the rotation");
    std::fs::rename(dir.join("access.log"), &moved).expect("mv");
    proxy.signal(rustix::process::Signal::USR1);
    let reopened = eventually(Duration::from_secs(30), || async {
        dir.join("access.log").exists()
    })
    .await;
    assert!(reopened, "SIGUSR1 reopened access.log");
    get(5).await;

    proxy.signal(rustix::process::Signal::TERM);
    let status = proxy.exit_status(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let out = proxy.startup.clone() + &proxy.rest_of_stdout().await;

    assert_eq!(read(&moved).lines().count(), 30);
    let fresh = read(&dir.join("access.log"));
    assert_eq!(fresh.lines().count(), 5, "{fresh}");
    for i in 0..5 {
        assert!(
            fresh.contains(&format!("\"GET /?i={i} HTTP/2.0\" 502 ")),
            "{fresh}"
        );
    }
    // error.log has the upstream failures, and every one of them was on stdout too.
    let errors = read(&dir.join("error.log"));
    let failures: Vec<&str> = errors
        .lines()
        .filter(|l| l.contains("upstream request failed"))
        .collect();
    assert_eq!(failures.len(), 35, "{errors}");
    for line in failures {
        let id = line
            .split("request_id: ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .expect("request id")
            .trim_matches('"');
        assert!(out.contains(id), "{id} missing on stdout");
    }
    // One start, one dated folder.
    let folders = std::fs::read_dir(&proxy.log_dir)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("20"))
        .count();
    assert_eq!(folders, 1);
}
