//! `prepare-dirs` on real folders: the rights computed from owner/group/mode, what is changed
//! and what is left alone. The test that hands a folder's group to another gid needs root (CI
//! runs as root; it says so and returns early otherwise).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::env::Env;

use super::*;

fn config(logs: &Path, tls: &Path) -> Config {
    let cert = tls.join("localhost.crt").display().to_string();
    let key = tls.join("localhost.key").display().to_string();
    let logs = logs.display().to_string();
    Config::from_env(&Env::from_pairs([
        ("PROXY_LOG_DIR", logs.as_str()),
        ("PROXY_TLS_CERT", cert.as_str()),
        ("PROXY_TLS_KEY", key.as_str()),
    ]))
    .expect("valid settings")
}

fn me() -> RunAs {
    RunAs {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

fn stat(dir: &Path) -> (u32, u32, u32) {
    let m = fs::metadata(dir).expect("stat");
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn run_as_parses_uid_colon_gid_and_rejects_anything_else() {
    assert_eq!(
        "1500:1501".parse(),
        Ok(RunAs {
            uid: 1500,
            gid: 1501
        })
    );
    for bad in ["1500", "a:b", "1500:", ":1500", "-1:0", "1:2:3"] {
        let err = bad.parse::<RunAs>().expect_err(bad);
        assert!(err.contains("UID:GID"), "{bad}: {err}");
    }
}

#[test]
fn writable_by_reads_the_class_that_applies() {
    let who = RunAs {
        uid: 1000,
        gid: 1000,
    };
    assert!(writable_by(who, 1000, 0, 0o700));
    assert!(
        !writable_by(who, 1000, 1000, 0o577),
        "owner without w: group bits do not apply"
    );
    assert!(writable_by(who, 0, 1000, 0o775));
    assert!(
        !writable_by(who, 0, 1000, 0o757),
        "group without w: other bits do not apply"
    );
    assert!(!writable_by(who, 0, 0, 0o755), "a fresh clone as root");
    assert!(
        !writable_by(who, 1500, 1500, 0o755),
        "a fresh clone as uid 1500"
    );
    assert!(writable_by(who, 0, 0, 0o1777));
    assert!(!writable_by(who, 0, 0, 0o775), "w without x is not enough");
    assert!(writable_by(RunAs { uid: 0, gid: 0 }, 1, 1, 0o500));
}

#[test]
fn folders_are_the_log_folder_and_the_keypair_folder_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (logs, tls) = (dir.path().join("logs"), dir.path().join("tls"));
    let dirs = folders(&config(&logs, &tls));
    assert_eq!(
        dirs,
        [
            ("PROXY_LOG_DIR", logs.clone()),
            ("PROXY_TLS_CERT", tls.clone())
        ]
    );

    let cert = tls.join("a.crt").display().to_string();
    let no_generate = Config::from_env(&Env::from_pairs([
        ("PROXY_LOG_DIR", logs.display().to_string()),
        ("PROXY_TLS_CERT", cert),
        ("PROXY_TLS_GENERATE", "false".into()),
    ]))
    .expect("valid settings");
    assert_eq!(
        folders(&no_generate),
        [("PROXY_LOG_DIR", logs)],
        "the proxy never writes keys then"
    );
}

#[test]
fn an_already_writable_folder_is_left_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (logs, tls) = (dir.path().join("logs"), dir.path().join("tls"));
    fs::create_dir(&logs).expect("mkdir");
    fs::set_permissions(&logs, Permissions::from_mode(0o750)).expect("chmod");
    let report = prepare_dirs(&config(&logs, &tls), me()).expect("prepared");
    assert_eq!(stat(&logs), (me().uid, me().gid, 0o750), "unchanged");
    assert!(report.contains("already writable"), "{report}");
    assert!(tls.is_dir(), "a missing folder is created: {report}");
}

#[test]
fn the_group_gains_rwx_when_the_proxy_is_in_it_and_the_owner_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (logs, tls) = (dir.path().join("logs"), dir.path().join("tls"));
    for d in [&logs, &tls] {
        fs::create_dir(d).expect("mkdir");
        fs::set_permissions(d, Permissions::from_mode(0o700)).expect("chmod");
    }
    // another uid, our gid: only chmod is needed, which the owner may do without privileges
    let who = RunAs {
        uid: me().uid + 1,
        gid: me().gid,
    };
    let report = prepare_dirs(&config(&logs, &tls), who).expect("prepared");
    for d in [&logs, &tls] {
        assert_eq!(
            stat(d),
            (me().uid, me().gid, 0o770),
            "{}: {report}",
            d.display()
        );
    }
    assert!(
        report.contains("PROXY_LOG_DIR=") && report.contains("PROXY_TLS_CERT="),
        "{report}"
    );
    assert!(report.contains("made writable by"), "{report}");
}

#[test]
fn as_root_a_fresh_clone_folder_gets_the_proxys_group() {
    if me().uid != 0 {
        eprintln!("skipped: changing a folder's group to another gid needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (logs, tls) = (dir.path().join("logs"), dir.path().join("tls"));
    for d in [&logs, &tls] {
        fs::create_dir(d).expect("mkdir");
        std::os::unix::fs::chown(d, Some(1500), Some(1500)).expect("chown");
        fs::set_permissions(d, Permissions::from_mode(0o755)).expect("chmod");
    }
    let who = RunAs {
        uid: 1000,
        gid: 1000,
    };
    prepare_dirs(&config(&logs, &tls), who).expect("prepared");
    for d in [&logs, &tls] {
        let (uid, gid, mode) = stat(d);
        assert_eq!((uid, gid, mode), (1500, 1000, 0o775), "{}", d.display());
        assert!(writable_by(who, uid, gid, mode));
    }
}

#[test]
fn a_file_where_the_folder_should_be_is_an_error_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (logs, tls) = (dir.path().join("logs"), dir.path().join("tls"));
    fs::write(&logs, "not a folder").expect("write");
    let err = prepare_dirs(&config(&logs, &tls), me()).expect_err("a file");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("PROXY_LOG_DIR={}", logs.display())),
        "{text}"
    );
}
