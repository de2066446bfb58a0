//! The development CA through the whole proxy, checked by clients that verify with `ca.crt` as
//! their only root (rustls, and reqwest on rustls): the first start's leaf verifies for every
//! configured name and for no other, a leaf signed with the CA's key for another name is
//! rejected (the name constraints are enforced, not just present), renewal under load fails no
//! request, a pair the user brought is never touched, a corrupt `ca.key` stops start-up, an old
//! self-signed folder keeps working, and `proxy cert trust` prints the CA's fingerprint.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use testkit::Pair;

use crate::support::load::{Load, mixed_clients};
use crate::support::{
    Captured, ProxyOptions, TestApp, TestProxy, eventually, served_fingerprint, start_up_error,
};

const DEADLINE: Duration = Duration::from_secs(15);

pub(crate) fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A proxy on `tls_dir` in front of the real app, with these extra settings; returns once a
/// handshake shows the pair it loaded (so the watcher and the renewal task run).
pub(crate) async fn proxy_on(tls_dir: &Path, env: &[(&str, &str)]) -> (TestProxy, TestApp) {
    let app = TestApp::start().await;
    let upstream = app.addr.to_string();
    let mut opts = ProxyOptions::new(&[("PROXY_UPSTREAM", upstream.as_str())]);
    opts.env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    opts.tls_dir = Some(tls_dir.to_owned());
    let proxy = TestProxy::start_with(opts).await;
    let fp = proxy.certs.fingerprint();
    let shown = eventually(DEADLINE, || async {
        served_fingerprint(proxy.https).await == fp
    })
    .await;
    assert!(shown, "the proxy never served its pair");
    (proxy, app)
}

/// A TLS handshake with `addr` by a rustls client whose only root is `ca_pem`, asking for
/// `name` (a DNS name or an IP address); the chain it was shown, or why it refused.
pub(crate) async fn verified(
    addr: SocketAddr,
    ca_pem: &str,
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(common::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let server_name = ServerName::try_from(name.to_owned()).expect("server name");
    match tokio::time::timeout(DEADLINE, connector.connect(server_name, tcp)).await {
        Ok(Ok(tls)) => Ok(tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .to_vec()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake timed out".to_owned()),
    }
}

/// reqwest trusting `ca_pem` only (no built-in roots, no `danger_accept_invalid_certs`).
fn trusting(ca_pem: &str) -> impl Fn() -> reqwest::ClientBuilder + use<> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca");
    move || {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
    }
}

fn rename_into(dir: &Path, pair: &Pair) {
    for (name, text) in [("localhost.key", &pair.key), ("localhost.crt", &pair.cert)] {
        let tmp = dir.join(format!(".{name}.incoming"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}

/// A leaf signed with the folder's `ca.key`, as the proxy itself issues them (its organisation),
/// but with only `days_left` of a 90-day life left: due for renewal.
fn due_leaf(dir: &Path, days_left: i64) -> Pair {
    let (crt, key) = (read(dir, "ca.crt"), read(dir, "ca.key"));
    let sans = ["localhost", "127.0.0.1", "::1"];
    Pair::signed_by(
        &crt,
        &key,
        &sans,
        proxy::LEAF_ORG,
        days_left - 90,
        days_left,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_serves_a_leaf_that_clients_trusting_only_ca_crt_accept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // The leaf alone (no certificates issued on demand, see on_demand.rs): valid for its names
    // and no other.
    let (proxy, _app) = proxy_on(d, &[("PROXY_TLS_ISSUE_CACHE", "0")]).await;
    let ca = read(d, "ca.crt");
    let leaf = CertificateDer::from_pem_slice(read(d, "localhost.crt").as_bytes()).expect("pem");
    for name in ["localhost", "127.0.0.1", "::1"] {
        let chain = verified(proxy.https, &ca, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            chain,
            std::slice::from_ref(&leaf),
            "the leaf alone is served"
        );
    }
    for other in ["example.com", "app.localhost", "10.0.0.1"] {
        let err = verified(proxy.https, &ca, other).await.expect_err(other);
        assert!(err.contains("not valid for"), "{other}: {err}");
    }
    let client = trusting(&ca)().build().expect("client");
    let answer = client
        .get(proxy.url("/"))
        .send()
        .await
        .expect("GET without -k");
    assert_eq!(answer.status(), 200);
    drop(proxy);

    // A name under localhost can be added later: the same CA (already trusted) signs it.
    let names = [(
        "PROXY_TLS_NAMES",
        "localhost, app.localhost, *.api.localhost, 127.0.0.1, ::1",
    )];
    let (again, _app) = proxy_on(d, &names).await;
    assert_eq!(read(d, "ca.crt"), ca, "the CA is kept");
    for name in ["app.localhost", "v1.api.localhost", "localhost"] {
        verified(again.https, &ca, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_signed_with_the_ca_key_for_another_name_is_rejected_by_a_verifying_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[]).await;
    let (ca, ca_key) = (read(d, "ca.crt"), read(d, "ca.key"));
    let serve = |pair: Pair| {
        rename_into(d, &pair);
        let https = proxy.https;
        async move {
            let fp = pair.fingerprint.clone();
            let shown =
                eventually(DEADLINE, || async { served_fingerprint(https).await == fp }).await;
            assert!(shown, "the test leaf was never served");
        }
    };
    // Control: the same signing inside the constraints is accepted.
    serve(Pair::signed_by(
        &ca,
        &ca_key,
        &["other.localhost"],
        "test",
        -1,
        30,
    ))
    .await;
    verified(proxy.https, &ca, "other.localhost")
        .await
        .expect("inside the constraints");
    for sans in [
        &["evil.example.com"][..],
        &["localhost", "evil.example.com"][..],
    ] {
        serve(Pair::signed_by(&ca, &ca_key, sans, "test", -1, 30)).await;
        for asked in sans {
            let err = verified(proxy.https, &ca, asked).await.expect_err(asked);
            assert!(
                err.contains("NameConstraintViolation"),
                "{sans:?} as {asked}: {err}"
            );
        }
    }
}

/// The leaf is renewed three times while six clients (HTTP/2, HTTP/1.1 keep-alive, a new
/// connection each time), each trusting only `ca.crt`, send requests: none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewal_under_load_fails_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[("PROXY_TLS_RENEW_INTERVAL", "1s")]).await;
    let ca = read(d, "ca.crt");
    let load = Load::start(&proxy.url("/"), mixed_clients(trusting(&ca)));
    let mut took = Vec::new();
    for round in 0..3 {
        let before = (load.ok(), proxy.certs.fingerprint());
        let planted = due_leaf(d, 20);
        let written = Instant::now();
        rename_into(d, &planted);
        let renewed = eventually(DEADLINE, || async {
            let now = served_fingerprint(proxy.https).await;
            now != before.1 && now != planted.fingerprint
        })
        .await;
        assert!(renewed, "round {round}: the due leaf was never renewed");
        took.push(written.elapsed());
        let on_disk =
            common::tls::Keypair::load(&d.join("localhost.crt"), &d.join("localhost.key"))
                .expect("renewed pair");
        let info = on_disk.leaf_info(&d.join("localhost.crt")).expect("info");
        assert_eq!(info.fingerprint, served_fingerprint(proxy.https).await);
        let days = (info.not_after - time::OffsetDateTime::now_utc()).whole_days();
        assert!(
            (89..=90).contains(&days),
            "a fresh 90-day leaf, not {days} days"
        );
        verified(proxy.https, &ca, "localhost")
            .await
            .expect("renewed leaf verifies");
        assert!(
            load.progressed(before.0, 20, DEADLINE).await,
            "requests stalled"
        );
    }
    let out = load.stop().await;
    println!(
        "renewal under load: {} requests succeeded, {} failed (6 verifying clients, 3 renewals); \
         due leaf written -> renewed leaf served: {took:?} (check interval 1s)",
        out.ok, out.failed
    );
    assert_eq!(out.failed, 0, "failed requests: {:?}", out.errors);
}

/// From the renewal check deciding to renew to a new handshake being shown the new leaf, ten
/// times; prints the median (no timing is asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_trigger_to_served_median_of_10() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[]).await;
    let mut samples = Vec::new();
    let mut inside = Vec::new();
    for i in 0..10 {
        let planted = due_leaf(d, 10);
        rename_into(d, &planted);
        let fp = planted.fingerprint.clone();
        let shown = eventually(DEADLINE, || async {
            served_fingerprint(proxy.https).await == fp
        })
        .await;
        assert!(shown, "round {i}: the due leaf was never served");
        let store = proxy.certs.clone();
        let started = Instant::now();
        let decided = tokio::task::spawn_blocking(move || store.renew_if_due())
            .await
            .expect("task")
            .expect("renewed");
        let new = served_fingerprint(proxy.https).await;
        samples.push(started.elapsed());
        inside.push(decided);
        assert_ne!(new, planted.fingerprint, "round {i}: still the due leaf");
    }
    samples.sort();
    inside.sort();
    println!(
        "renewal check -> new leaf served to a new handshake, 10 renewals: median {:?} (min {:?}, \
         max {:?}); inside the proxy (decision -> swapped): median {:?}",
        (samples[4] + samples[5]) / 2,
        samples[0],
        samples[9],
        (inside[4] + inside[5]) / 2
    );
}

#[tokio::test]
async fn a_pair_the_user_brought_is_never_touched() {
    // Beside a CA (the folder after a first start), expiring soon, for other names.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    drop(proxy_on(d, &[]).await);
    let user = Pair::between("user.test", -80, 5);
    rename_into(d, &user);
    // And in a folder without a CA.
    let bare = tempfile::tempdir().expect("tempdir");
    user.write_into(bare.path());
    for folder in [d, bare.path()] {
        let (captured, guard) = Captured::info();
        let (proxy, _app) = proxy_on(folder, &[("PROXY_TLS_RENEW_INTERVAL", "1s")]).await;
        drop(guard);
        let log = captured.text();
        assert!(
            log.contains("expires in 4 days"),
            "the expiry warning stays: {log}"
        );
        assert_eq!(served_fingerprint(proxy.https).await, user.fingerprint);
        assert_eq!(proxy.certs.renew_if_due(), None);
        // Let the background check run a few times too.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(served_fingerprint(proxy.https).await, user.fingerprint);
        assert_eq!(read(folder, "localhost.crt"), user.cert);
        assert_eq!(read(folder, "localhost.key"), user.key);
    }
    assert!(
        !bare.path().join("ca.crt").exists(),
        "no CA appears beside a user's pair"
    );
}

#[tokio::test]
async fn a_corrupt_ca_key_refuses_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    drop(proxy_on(d, &[]).await);
    let key = d.join("ca.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .expect("corrupt");
    let err = start_up_error(d, &[]);
    assert!(
        err.starts_with("cannot use the development CA: ")
            && err.contains(&key.display().to_string()),
        "{err}"
    );
}

/// A folder from an older version holds only a self-signed `localhost.crt`/`.key`: it is served
/// as it is, no CA is created, and the log says how to switch.
#[tokio::test]
async fn an_old_self_signed_folder_keeps_working_and_the_log_says_how_to_switch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (_, _, old) = proxy::generate_into(d).expect("an old version's pair");
    let (captured, _guard) = Captured::info();
    let (proxy, _app) = proxy_on(d, &[]).await;
    assert_eq!(served_fingerprint(proxy.https).await, old.fingerprint);
    assert!(!d.join("ca.crt").exists() && !d.join("ca.key").exists());
    let log = captured.text();
    assert!(
        log.contains("is self-signed")
            && log.contains("To switch to a development CA you trust once: delete"),
        "{log}"
    );
}

/// `proxy <args>` (the real binary) on the keypair folder `dir`: its exit status and stdout.
async fn proxy_cli(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(args)
        .env_clear()
        .env("PROXY_TLS_CERT", dir.join("localhost.crt"))
        .env("PROXY_TLS_KEY", dir.join("localhost.key"))
        .output()
        .await
        .expect("run the proxy binary");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status, text + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn cert_trust_prints_the_commands_and_the_ca_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    drop(proxy_on(d, &[]).await);
    let ca = CertificateDer::from_pem_slice(read(d, "ca.crt").as_bytes()).expect("pem");
    let (status, text) = proxy_cli(d, &["cert", "trust"]).await;
    assert!(status.success(), "{text}");
    assert!(text.contains(&common::tls::fingerprint(&ca)), "{text}");
    let curl = format!("curl --cacert {}", d.join("ca.crt").display());
    assert!(text.contains(&curl), "{text}");
    let (status, text) = proxy_cli(d, &["cert"]).await;
    assert!(status.success(), "{text}");
    let constraints = "May sign only DNS:localhost, IP:127.0.0.1/32, IP:::1/128";
    assert!(text.contains(constraints), "{text}");
}
