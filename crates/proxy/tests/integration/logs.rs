//! The log folder and files through the public API: combined/JSON lines, retention folders and
//! `latest`, truncation, flush at shutdown, reopen (direct and SIGUSR1), error.log, bad folders.

use std::path::Path;
use std::time::{Duration, Instant};

use proxy::{AccessEntry, LogFormat as Format};
use proxy::{LogConfig, LogDirError, Logs};
use time::macros::datetime;

fn cfg(dir: &Path, retention: bool, format: Format) -> LogConfig {
    LogConfig {
        dir: dir.to_path_buf(),
        retention,
        format,
    }
}

fn entry(target: &str) -> AccessEntry {
    AccessEntry {
        remote_addr: "192.0.2.10".parse().expect("ip"),
        remote_user: None,
        time: datetime!(2026-11-29 13:47:02 UTC),
        method: "GET".into(),
        target: target.into(),
        protocol: "HTTP/1.1",
        status: 200,
        body_bytes_sent: 1234,
        referer: None,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        request_id: "req-1".into(),
        upstream_addr: Some("172.18.0.3:8000".parse().expect("addr")),
        request_time: Duration::from_millis(15),
        upstream_time: Some(Duration::from_millis(14)),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn a_known_request_gives_the_exact_combined_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = Logs::open(&cfg(tmp.path(), false, Format::Combined)).expect("open");
    logs.access().log(entry("/quote?lang=en"));
    logs.flush().expect("flush");
    assert_eq!(
        read(&tmp.path().join("access.log")),
        "192.0.2.10 - - [29/Nov/2026:13:47:02 +0000] \"GET /quote?lang=en HTTP/1.1\" 200 1234 \
         \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"\n"
    );
}

#[test]
fn json_format_writes_one_object_per_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = Logs::open(&cfg(tmp.path(), false, Format::Json)).expect("open");
    logs.access().log(entry("/a"));
    logs.access().log(entry("/b"));
    logs.flush().expect("flush");
    let text = read(&logs.access_path());
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[1]["request"], "GET /b HTTP/1.1");
    assert_eq!(lines[0]["request_id"], "req-1");
    assert_eq!(lines[0]["upstream_addr"], "172.18.0.3:8000");
    assert!(text.contains("\"request_time\":0.015,\"upstream_response_time\":0.014}"));
}

#[test]
fn retention_keeps_every_start_and_moves_latest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = cfg(tmp.path(), true, Format::Combined);
    let t1 = datetime!(2026-11-29 13:47:02 UTC);

    let first = Logs::open_at(&c, t1, 16).expect("first start");
    assert_eq!(first.dir(), tmp.path().join("2026-11-29T13-47-02Z"));
    first.access().log(entry("/first"));
    first.flush().expect("flush");
    let latest = tmp.path().join("latest");
    assert_eq!(
        std::fs::read_link(&latest).expect("symlink"),
        Path::new("2026-11-29T13-47-02Z"),
        "latest is a relative link"
    );
    drop(first);

    // Same second: a suffix, not a collision.
    let second = Logs::open_at(&c, t1, 16).expect("second start");
    assert_eq!(second.dir(), tmp.path().join("2026-11-29T13-47-02Z-1"));
    assert_eq!(
        std::fs::read_link(&latest).expect("symlink"),
        Path::new("2026-11-29T13-47-02Z-1")
    );
    drop(second);

    let third = Logs::open_at(&c, datetime!(2026-11-29 14:00:00 UTC), 16).expect("third");
    third.access().log(entry("/third"));
    third.flush().expect("flush");
    assert_eq!(
        std::fs::read_link(&latest).expect("symlink"),
        Path::new("2026-11-29T14-00-00Z")
    );
    // Through the link we read the newest files; the first folder is untouched.
    assert!(read(&latest.join("access.log")).contains("/third"));
    let kept = read(&tmp.path().join("2026-11-29T13-47-02Z/access.log"));
    assert!(
        kept.contains("/first") && !kept.contains("/third"),
        "{kept}"
    );
    for name in [
        "2026-11-29T13-47-02Z",
        "2026-11-29T13-47-02Z-1",
        "2026-11-29T14-00-00Z",
    ] {
        assert!(tmp.path().join(name).join("access.log").is_file(), "{name}");
        assert!(tmp.path().join(name).join("error.log").is_file(), "{name}");
    }
    assert!(!tmp.path().join("access.log").exists());
}

#[test]
fn retention_off_truncates_the_files_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("access.log"), "old access line\n").expect("write");
    std::fs::write(tmp.path().join("error.log"), "old error line\n").expect("write");
    let logs = Logs::open(&cfg(tmp.path(), false, Format::Combined)).expect("open");
    assert_eq!(logs.dir(), tmp.path());
    assert_eq!(read(&tmp.path().join("access.log")), "");
    assert_eq!(read(&tmp.path().join("error.log")), "");
    logs.access().log(entry("/new"));
    logs.flush().expect("flush");
    let text = read(&tmp.path().join("access.log"));
    assert!(!text.contains("old") && text.contains("/new"), "{text}");
    assert!(!tmp.path().join("latest").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_writes_every_queued_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A queue deep enough that the writer is still busy when shutdown starts.
    let n = 100_000;
    let c = cfg(tmp.path(), false, Format::Combined);
    let logs = Logs::open_at(&c, time::OffsetDateTime::now_utc(), n).expect("open");
    let access = logs.access();
    for i in 0..n {
        access.log(entry(&format!("/{i}")));
    }
    logs.shutdown().await.expect("shutdown");
    let text = read(&logs.access_path());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), n);
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.contains(&format!("\"GET /{i} HTTP/1.1\"")),
            "{i}: {line}"
        );
    }
    // After shutdown nothing is written any more, and logging does not block or panic.
    access.log(entry("/late"));
    assert!(!read(&logs.access_path()).contains("/late"));
}

#[test]
fn reopen_starts_new_files_after_they_were_moved() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = Logs::open(&cfg(tmp.path(), false, Format::Combined)).expect("open");
    let access = logs.access();
    access.log(entry("/before"));
    logs.flush().expect("flush");
    std::fs::rename(logs.access_path(), tmp.path().join("access.log.1")).expect("mv");
    std::fs::rename(logs.error_path(), tmp.path().join("error.log.1")).expect("mv");
    // Until the reopen, lines still go to the moved file (what logrotate expects).
    access.log(entry("/moved"));
    logs.reopen().expect("reopen");
    access.log(entry("/after"));
    logs.flush().expect("flush");
    let old = read(&tmp.path().join("access.log.1"));
    assert!(old.contains("/before") && old.contains("/moved") && !old.contains("/after"));
    let new = read(&logs.access_path());
    assert_eq!(new.lines().count(), 1, "{new}");
    assert!(new.contains("/after"));
    assert!(logs.error_path().is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_reopens_the_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = Logs::open(&cfg(tmp.path(), false, Format::Combined)).expect("open");
    let stop = tokio_util::sync::CancellationToken::new();
    proxy::Signals::new(stop.clone())
        .reopen_logs(logs.clone())
        .spawn()
        .expect("signal handlers");
    logs.access().log(entry("/before"));
    logs.flush().expect("flush");
    std::fs::rename(logs.access_path(), tmp.path().join("access.log.1")).expect("mv");

    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR1)
        .expect("kill -USR1");
    // Wait for the condition (the reopened file), not for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !logs.access_path().exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(logs.access_path().exists(), "SIGUSR1 did not reopen");
    logs.access().log(entry("/after"));
    logs.flush().expect("flush");
    assert!(read(&logs.access_path()).contains("/after"));
    assert!(!read(&tmp.path().join("access.log.1")).contains("/after"));
    stop.cancel();
}

#[test]
fn error_log_gets_warnings_and_errors_with_span_fields() {
    use tracing_subscriber::layer::SubscriberExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let logs = Logs::open(&cfg(tmp.path(), false, Format::Combined)).expect("open");
    let subscriber = tracing_subscriber::registry().with(logs.error_layer());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request", request_id = "abc123");
        let _g = span.enter();
        tracing::info!("not an error");
        tracing::warn!(upstream = "10.0.0.2:8000", "upstream slow");
        let cause = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        tracing::error!(error = &cause as &dyn std::error::Error, "upstream failed");
    });
    logs.flush().expect("flush");
    let text = read(&logs.error_path());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains(" [warn] "), "{text}");
    assert!(
        lines[0].ends_with(": upstream slow, upstream: 10.0.0.2:8000, request_id: abc123"),
        "{text}"
    );
    assert!(
        lines[1].contains(" [error] ")
            && lines[1].ends_with(": upstream failed, error: refused, request_id: abc123"),
        "{text}"
    );
    assert!(!text.contains("not an error"));
    assert!(read(&logs.access_path()).is_empty());
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope");
    let err = Logs::open(&cfg(&missing, true, Format::Combined)).expect_err("missing");
    assert!(matches!(err, LogDirError::Missing { .. }), "{err}");
    let msg = err.to_string();
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    assert!(
        msg.starts_with(&format!("PROXY_LOG_DIR={}:", missing.display())),
        "{msg}"
    );
    assert!(msg.contains(&format!("uid {uid}, gid {gid}")), "{msg}");
    assert!(msg.contains(&format!("chown {uid}:{gid}")), "{msg}");

    let file = tmp.path().join("file");
    std::fs::write(&file, "").expect("write");
    let err = Logs::open(&cfg(&file, false, Format::Combined)).expect_err("file");
    assert!(matches!(err, LogDirError::NotADirectory { .. }), "{err}");
}

const CHILD_VAR: &str = "PROXY_LOGS_TEST_UNWRITABLE_DIR";
const NOBODY: u32 = 65534;

/// Opens the folder in `CHILD_VAR` (retention on and off) and prints each error on one line.
fn child_role(dir: &str) {
    for retention in [true, false] {
        match Logs::open(&cfg(Path::new(dir), retention, Format::Combined)) {
            Ok(_) => println!("CHILD-OK"),
            Err(e) => println!("CHILD-ERR {}", e.to_string().replace('\n', " ")),
        }
    }
}

#[test]
fn an_unwritable_folder_names_path_ids_and_fix() {
    if let Ok(dir) = std::env::var(CHILD_VAR) {
        child_role(&dir);
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("logs");
    std::fs::create_dir(&dir).expect("mkdir");
    let is_root = rustix::process::getuid().is_root();
    let output = if is_root {
        // Root writes anywhere: run this test again as an unprivileged user.
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        for p in [tmp.path(), dir.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        // This test's name inside the test binary (`logs::…`).
        let name = format!(
            "{}::an_unwritable_folder_names_path_ids_and_fix",
            module_path!().split_once("::").map_or("", |(_, m)| m)
        );
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--exact", name.as_str(), "--nocapture"])
            .env(CHILD_VAR, &dir)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .expect("run the child test");
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        let dir_text = dir.to_str().expect("utf8");
        let out = std::panic::catch_unwind(|| {
            let mut s = String::new();
            for retention in [true, false] {
                match Logs::open(&cfg(Path::new(dir_text), retention, Format::Combined)) {
                    Ok(_) => s.push_str("CHILD-OK\n"),
                    Err(e) => s.push_str(&format!("CHILD-ERR {e}\n")),
                }
            }
            s
        });
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        out.expect("no panic")
    };
    let (uid, gid) = if is_root {
        (NOBODY, NOBODY)
    } else {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    };
    let errors: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("CHILD-ERR "))
        .collect();
    assert_eq!(errors.len(), 2, "both modes must fail:\n{output}");
    for msg in errors {
        assert!(
            msg.starts_with(&format!("PROXY_LOG_DIR={}:", dir.display())),
            "{msg}"
        );
        assert!(msg.contains(&format!("as uid {uid}, gid {gid}")), "{msg}");
        assert!(
            msg.contains(&format!("sudo chown {uid}:{gid} ./logs")),
            "{msg}"
        );
        assert!(msg.contains("Permission denied"), "{msg}");
    }
}
