//! `proxy check` through the real binary: a good set of settings and files exits 0 and prints the
//! effective configuration without secret material; a broken set exits 1 and names every
//! problem (bad setting values, a missing key, a template syntax error, an unwritable log
//! folder), not just the first.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use testkit::Pair;

/// Run `proxy check` with only these settings. As root (CI containers) it runs as `nobody`, so a
/// folder without write permission is really unwritable to it.
fn check(dir: &Path, envs: &[(&str, String)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxy"));
    cmd.arg("check")
        .env_clear()
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())));
    if rustix::process::geteuid().is_root() {
        chmod(dir, 0o755);
        cmd.uid(65534).gid(65534);
    }
    let Output { status, stdout, .. } = cmd.output().expect("run proxy check");
    let out = String::from_utf8(stdout).expect("utf-8");
    (status.code().unwrap_or(-1), out)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn path(p: &Path) -> String {
    p.to_str().expect("utf-8").to_owned()
}

/// A keypair, an error page and a log folder in `dir`; the settings naming them.
fn good_set(dir: &Path) -> (Pair, Vec<(&'static str, String)>) {
    let (tls, logs) = (dir.join("tls"), dir.join("logs"));
    std::fs::create_dir(dir.join("static")).expect("mkdir");
    std::fs::create_dir(&tls).expect("mkdir");
    std::fs::create_dir(&logs).expect("mkdir");
    chmod(&tls, 0o755);
    chmod(&logs, 0o777);
    let pair = Pair::new("localhost");
    pair.write_into(&tls);
    chmod(&tls.join("localhost.key"), 0o644);
    std::fs::write(
        dir.join("error.html"),
        "<h1>{{ status }} {{ reason }}</h1>\n",
    )
    .expect("page");
    // A value read from a file (Docker secrets): its contents must never be printed.
    std::fs::write(dir.join("hsts"), "max-age=1; secret-marker-7f3a\n").expect("hsts");
    let envs = vec![
        ("PROXY_TLS_CERT", path(&tls.join("localhost.crt"))),
        ("PROXY_TLS_KEY", path(&tls.join("localhost.key"))),
        ("PROXY_TLS_GENERATE", "false".into()),
        ("PROXY_ERROR_PAGE", path(&dir.join("error.html"))),
        ("PROXY_LOG_DIR", path(&logs)),
        ("PROXY_UPSTREAM", "app:8000".into()),
        ("PROXY_HSTS_FILE", path(&dir.join("hsts"))),
        (
            "PROXY_STATIC",
            format!("/static/={}", path(&dir.join("static"))),
        ),
    ];
    (pair, envs)
}

#[test]
fn a_good_set_exits_0_and_prints_the_settings_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pair, envs) = good_set(dir.path());
    let (code, out) = check(dir.path(), &envs);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"), "{out}");
    for (name, value) in &envs {
        if !name.ends_with("_FILE") {
            assert!(
                out.contains(&format!("{name:<31} {value}")),
                "{name}: {out}"
            );
        }
    }
    assert!(
        out.contains("PROXY_MAX_BODY_SIZE"),
        "defaults are printed too: {out}"
    );
    assert!(
        out.contains(&pair.fingerprint),
        "the served pair is described: {out}"
    );
    assert!(
        out.contains(&format!(
            "{:<31} (read from PROXY_HSTS_FILE={})",
            "PROXY_HSTS",
            path(&dir.path().join("hsts"))
        )),
        "{out}"
    );
    // No secret material: no key, no *_FILE contents.
    assert!(!out.contains("secret-marker"), "{out}");
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    let key_body: String = pair.key.lines().nth(1).unwrap_or_default().to_owned();
    assert!(!key_body.is_empty() && !out.contains(&key_body), "{out}");
    // Nothing left behind in the log folder.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .expect("ls")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_broken_set_exits_1_and_names_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_pair, mut envs) = good_set(dir.path());
    std::fs::remove_file(dir.path().join("tls/localhost.key")).expect("rm key");
    std::fs::write(dir.path().join("error.html"), "<h1>fine</h1>\n{% if %}\n").expect("page");
    chmod(&dir.path().join("logs"), 0o555);
    std::fs::remove_dir(dir.path().join("static")).expect("rm static");
    envs.push(("PROXY_WORKERS", "lots".into()));
    envs.push(("PROXY_MAX_BODY_SIZE", "huge".into()));
    let (code, out) = check(dir.path(), &envs);
    assert_eq!(code, 1, "{out}");
    let problems = out.split("problem(s):").nth(1).unwrap_or_default();
    for want in [
        "PROXY_WORKERS=\"lots\"",
        "PROXY_MAX_BODY_SIZE=\"huge\"",
        "PROXY_TLS_KEY=",
        &format!(
            "PROXY_ERROR_PAGE={}: line 2:",
            path(&dir.path().join("error.html"))
        ),
        &format!(
            "PROXY_LOG_DIR={}: not writable",
            path(&dir.path().join("logs"))
        ),
        &format!(
            "PROXY_STATIC: /static/={}: ",
            path(&dir.path().join("static"))
        ),
    ] {
        assert!(problems.contains(want), "{want} missing in:\n{out}");
    }
    assert!(out.starts_with("Settings"), "{out}");
    assert!(
        out.contains(&format!("{:<31} (invalid, see below)", "PROXY_WORKERS")),
        "{out}"
    );
    assert!(out.contains("6 problem(s):"), "{out}");
    assert!(!out.contains("configuration OK"), "{out}");
}

#[test]
fn a_bad_value_from_a_secret_file_is_named_but_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_pair, mut envs) = good_set(dir.path());
    let secret = dir.path().join("workers");
    std::fs::write(&secret, "hunter2-secret\n").expect("secret");
    envs.push(("PROXY_WORKERS_FILE", path(&secret)));
    // A key pasted where its path belongs (a Docker-secrets mix-up) must not be echoed either.
    let key = std::fs::read_to_string(dir.path().join("tls/localhost.key")).expect("key");
    envs.retain(|(k, _)| *k != "PROXY_TLS_KEY");
    envs.push(("PROXY_TLS_KEY", key.clone()));
    let (code, out) = check(dir.path(), &envs);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("PROXY_WORKERS_FILE={}:", path(&secret))),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains("PROXY_TLS_KEY="), "{out}");
    assert!(!out.contains("PRIVATE KEY"), "{out}");
    let body = key.lines().nth(1).unwrap_or("-");
    assert!(!out.contains(body), "{out}");
}

#[test]
fn routes_are_printed_and_a_wrong_entry_is_named_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_pair, mut envs) = good_set(dir.path());
    let file = dir.path().join("routes");
    std::fs::write(
        &file,
        "# the app\nlocalhost=https://app:8000\napi.localhost/v1/=http://api:3000 strip ws=off\n",
    )
    .expect("routes");
    envs.push(("PROXY_ROUTES_FILE", path(&file)));
    let (code, out) = check(dir.path(), &envs);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok    routes: 3 route(s) from PROXY_ROUTES_FILE="),
        "{out}"
    );
    assert!(
        out.contains("api.localhost/v1/=http://api:3000 strip ws=off"),
        "{out}"
    );
    assert!(
        out.contains("*=https://app:8000"),
        "PROXY_UPSTREAM is the * route: {out}"
    );

    std::fs::write(
        &file,
        "localhost=https://app:8000\n\napi.localhost=http://api:3000 gzip\n",
    )
    .expect("routes");
    let (code, out) = check(dir.path(), &envs);
    assert_eq!(code, 1, "{out}");
    let problem = out
        .lines()
        .find(|l| l.contains("- PROXY_ROUTES_FILE="))
        .unwrap_or_default()
        .to_owned();
    assert!(
        problem.contains("line 3: `api.localhost=http://api:3000 gzip`"),
        "{out}"
    );
    assert!(problem.contains("unknown option `gzip`"), "{out}");
}
