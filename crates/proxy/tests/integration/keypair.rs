//! The proxy's keypair lifecycle over real TLS through the whole proxy: first-start generation,
//! restart with a new pair, hot reload (in-place write, rename-over, Kubernetes symlink swap,
//! SIGHUP), broken pairs refused with the old one kept, chains in order, start-up refusals, and
//! zero failed requests while the pair rotates. Every wait is a bounded poll, never a timed assert.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::load::{Load, mixed_clients};
use crate::support::{
    Captured, ProxyOptions, TestApp, TestProxy, eventually, served_fingerprint, start_up_error,
};
use common::tls::rcgen;

const DEADLINE: Duration = Duration::from_secs(10);

use testkit::Pair;

fn crt(dir: &Path) -> PathBuf {
    dir.join("localhost.crt")
}

fn key(dir: &Path) -> PathBuf {
    dir.join("localhost.key")
}

fn write_in_place(dir: &Path, p: &Pair) {
    p.write_into(dir);
}

fn write_renaming(dir: &Path, p: &Pair) {
    for (target, text) in [(key(dir), &p.key), (crt(dir), &p.cert)] {
        let tmp = dir.join(".incoming");
        std::fs::write(&tmp, text).expect("write temp");
        std::fs::rename(&tmp, target).expect("rename over");
    }
}

/// Poll new TLS connections until they are shown `want`; returns how long that took.
async fn await_served(addr: SocketAddr, want: &str) -> Duration {
    let start = Instant::now();
    let seen = eventually(DEADLINE, || async {
        served_fingerprint(addr).await == want
    })
    .await;
    assert!(seen, "the proxy never served {want}");
    start.elapsed()
}

/// A proxy on `tls_dir` (an empty folder means: generate) in front of the real app.
async fn proxy_on(tls_dir: &Path) -> (TestProxy, TestApp) {
    let app = TestApp::start().await;
    let upstream = app.addr.to_string();
    let mut opts = ProxyOptions::new(&[("PROXY_UPSTREAM", upstream.as_str())]);
    opts.tls_dir = Some(tls_dir.to_owned());
    let proxy = TestProxy::start_with(opts).await;
    // A served handshake means `run` has started, so the watcher and SIGHUP handler are in place.
    let fp = proxy.certs.fingerprint();
    await_served(proxy.https, &fp).await;
    (proxy, app)
}

use testkit::served_chain;

#[tokio::test]
async fn fresh_folder_generates_the_served_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _app) = proxy_on(dir.path()).await;
    let mode = std::fs::metadata(key(dir.path()))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let on_disk =
        common::tls::Keypair::load(&crt(dir.path()), &key(dir.path())).expect("load pair");
    let info = on_disk.leaf_info(&crt(dir.path())).expect("info");
    assert_eq!(info.sans, ["localhost", "127.0.0.1", "::1"]);
    assert_eq!(served_fingerprint(proxy.https).await, info.fingerprint);
    let described = proxy::describe(proxy.certs.files()).expect("describe");
    assert!(described.contains(&info.fingerprint), "{described}");
}

#[tokio::test]
async fn a_restarted_proxy_serves_the_replaced_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut first, _app) = proxy_on(dir.path()).await;
    let generated = first.certs.fingerprint();
    first.stop().await;
    let new = Pair::new("restart.test");
    write_renaming(dir.path(), &new);
    let (second, _app2) = proxy_on(dir.path()).await;
    assert_ne!(new.fingerprint, generated);
    assert_eq!(served_fingerprint(second.https).await, new.fingerprint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_by_in_place_write_and_rename_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _app) = proxy_on(dir.path()).await;
    let (b, c) = (Pair::new("b.test"), Pair::new("c.test"));
    write_in_place(dir.path(), &b);
    await_served(proxy.https, &b.fingerprint).await;
    write_renaming(dir.path(), &c);
    await_served(proxy.https, &c.fingerprint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_by_kubernetes_symlink_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let publish = |version: &str, p: &Pair| {
        let v = root.join(version);
        std::fs::create_dir(&v).expect("mkdir");
        write_in_place(&v, p);
        std::os::unix::fs::symlink(version, root.join("..data_tmp")).expect("symlink");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
    };
    let (a, b) = (Pair::new("a.test"), Pair::new("b.test"));
    publish("..2026_01", &a);
    for name in ["localhost.crt", "localhost.key"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("link");
    }
    let (proxy, _app) = proxy_on(root).await;
    assert_eq!(served_fingerprint(proxy.https).await, a.fingerprint);
    publish("..2026_02", &b);
    std::fs::remove_dir_all(root.join("..2026_01")).expect("remove old version");
    await_served(proxy.https, &b.fingerprint).await;
}

/// SIGHUP alone reloads: the configured files are hard links into another folder and are
/// rewritten through that folder, which the proxy's folder watch cannot see.
#[tokio::test]
async fn sighup_reloads_the_pair() {
    let (captured, _guard) = Captured::info();

    let dir = tempfile::tempdir().expect("tempdir");
    let (tls, elsewhere) = (dir.path().join("tls"), dir.path().join("elsewhere"));
    std::fs::create_dir(&tls).expect("mkdir");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let (a, b) = (Pair::new("a.test"), Pair::new("b.test"));
    write_in_place(&elsewhere, &a);
    std::fs::hard_link(crt(&elsewhere), crt(&tls)).expect("link cert");
    std::fs::hard_link(key(&elsewhere), key(&tls)).expect("link key");
    let (proxy, _app) = proxy_on(&tls).await;
    assert_eq!(served_fingerprint(proxy.https).await, a.fingerprint);

    // Rewrite the same inodes through the other folder (no event in the watched one).
    for (path, text) in [(key(&elsewhere), &b.key), (crt(&elsewhere), &b.cert)] {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }
    assert_eq!(std::fs::read_to_string(crt(&tls)).expect("read"), b.cert);
    // The handler is installed process-wide (the served handshake above proves `run` started).
    let me = rustix::process::getpid();
    rustix::process::kill_process(me, rustix::process::Signal::HUP).expect("send SIGHUP");
    await_served(proxy.https, &b.fingerprint).await;
    let log = captured.text();
    assert!(log.contains("TLS keypair reloaded (SIGHUP)"), "{log}");
    assert!(!log.contains("(folder change)"), "{log}");
}

/// A broken pair is refused (old fingerprint kept, reason in error.log); a later good one is
/// taken. Runs on the current thread so the error.log layer sees the watcher's events.
#[tokio::test]
async fn broken_pair_keeps_the_old_one_and_logs_why() {
    use tracing_subscriber::layer::SubscriberExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _app) = proxy_on(dir.path()).await;
    let error_layer = tracing_subscriber::registry().with(proxy.logs.error_layer());
    let _guard = tracing::subscriber::set_default(error_layer);
    let old = proxy.certs.fingerprint();
    let (b, c) = (Pair::new("b.test"), Pair::new("c.test"));
    let expired = Pair::between("expired.test", -30, -1);
    let half_written = Pair {
        cert: b.cert[..b.cert.len() / 2].to_owned(),
        key: b.key.clone(),
        fingerprint: b.fingerprint.clone(),
    };
    let mismatched = Pair {
        cert: b.cert.clone(),
        key: c.key.clone(),
        fingerprint: b.fingerprint.clone(),
    };
    let cases = [
        (&mismatched, "does not match the certificate"),
        (&half_written, "not a PEM certificate file"),
        (&expired, "the certificate expired on"),
    ];
    for (broken, reason) in cases {
        write_renaming(dir.path(), broken);
        let refusal = || {
            proxy
                .error_log()
                .lines()
                .find(|l| l.contains("new TLS keypair refused") && l.contains(reason))
                .map(str::to_owned)
        };
        let logged = eventually(DEADLINE, || async { refusal().is_some() }).await;
        assert!(logged, "no refusal for {reason:?}: {}", proxy.error_log());
        let line = refusal().unwrap_or_default();
        assert!(
            line.contains(&old),
            "the line names the pair still served: {line}"
        );
        assert_eq!(served_fingerprint(proxy.https).await, old);
    }
    write_renaming(dir.path(), &c);
    await_served(proxy.https, &c.fingerprint).await;
    assert_eq!(proxy.certs.last_reload_error(), None);
}

/// A root, an intermediate it signed, and a leaf for localhost the intermediate signed (PEM).
fn chain() -> (String, String, String) {
    let ca = |name: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_owned());
        p
    };
    let new_key = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let root = rcgen::CertifiedIssuer::self_signed(ca("Test Root"), new_key()).expect("root");
    let mid =
        rcgen::CertifiedIssuer::signed_by(ca("Test Intermediate"), new_key(), &root).expect("mid");
    let leaf_key = new_key();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &mid)
        .expect("leaf");
    (leaf.pem(), mid.pem(), leaf_key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_is_served_leaf_first_after_a_hot_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _app) = proxy_on(dir.path()).await;
    let (leaf, mid, leaf_key) = chain();
    let cert = format!("{leaf}{mid}");
    let want = common::tls::Keypair::from_pem(
        cert.as_bytes(),
        Path::new("chain"),
        leaf_key.as_bytes(),
        Path::new("key"),
    )
    .expect("parse chain")
    .chain;
    let fingerprint = common::tls::fingerprint(&want[0]);
    let new = Pair {
        fingerprint: fingerprint.clone(),
        cert,
        key: leaf_key,
    };
    write_renaming(dir.path(), &new);
    await_served(proxy.https, &fingerprint).await;
    assert_eq!(served_chain(proxy.https).await, want);
}

#[test]
fn bad_pairs_stop_start_up_with_clear_errors() {
    let (a, b) = (Pair::new("a.test"), Pair::new("b.test"));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    std::fs::write(crt(d), &a.cert).expect("write");
    let err = start_up_error(d, &[]);
    let (c, k) = (crt(d).display().to_string(), key(d).display().to_string());
    let want = format!("PROXY_TLS_CERT={c} exists but PROXY_TLS_KEY={k} does not");
    assert!(err.starts_with(&want), "{err}");

    std::fs::write(key(d), &b.key).expect("write");
    let err = start_up_error(d, &[]);
    let want = format!("PROXY_TLS_KEY={k}: the private key does not match");
    assert!(err.starts_with(&want), "{err}");

    let expired = Pair::between("expired.test", -30, -3);
    write_in_place(d, &expired);
    let err = start_up_error(d, &[]);
    let want = format!("PROXY_TLS_CERT={c}: the certificate expired on");
    assert!(
        err.starts_with(&want) && err.contains("(3 days ago)"),
        "{err}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let err = start_up_error(empty.path(), &[("PROXY_TLS_GENERATE", "false")]);
    assert!(err.contains("PROXY_TLS_GENERATE=false"), "{err}");
}

/// Requests from several clients — on kept-alive HTTP/2 and HTTP/1.1 connections, and on a new
/// connection each time — never fail while the pair is replaced ten times.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_rotations_under_load_fail_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _app) = proxy_on(dir.path()).await;
    let clients = mixed_clients(|| reqwest::Client::builder().danger_accept_invalid_certs(true));
    let load = Load::start(&proxy.url("/"), clients);
    for i in 0..10 {
        let next = Pair::new(&format!("rotation{i}.test"));
        let before = load.ok();
        if i % 2 == 0 {
            write_renaming(dir.path(), &next);
        } else {
            write_in_place(dir.path(), &next);
        }
        await_served(proxy.https, &next.fingerprint).await;
        // Keep the load going across each swap.
        assert!(
            load.progressed(before, 20, DEADLINE).await,
            "requests stalled after rotation {i}"
        );
    }
    let out = load.stop().await;
    println!(
        "rotation under load: {} requests succeeded, {} failed (6 clients, 10 rotations)",
        out.ok, out.failed
    );
    assert_eq!(out.failed, 0, "failed requests: {:?}", out.errors);
    assert_eq!(proxy.certs.changes(), 10);
}

/// Time from the write (rename-over of the key, then the certificate) to a new TLS connection
/// being shown the new certificate, 20 times; prints the median (no timing is asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_latency_median_of_20() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, _app) = proxy_on(dir.path()).await;
    let mut samples = Vec::new();
    for i in 0..20 {
        let next = Pair::new(&format!("latency{i}.test"));
        let start = Instant::now();
        write_renaming(dir.path(), &next);
        let seen = eventually(DEADLINE, || async {
            served_fingerprint(proxy.https).await == next.fingerprint
        })
        .await;
        assert!(seen, "rotation {i} never served");
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "write -> served over 20 rotations: median {:?}, min {:?}, max {:?}",
        (samples[9] + samples[10]) / 2,
        samples[0],
        samples[19]
    );
}
