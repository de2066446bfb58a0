//! Certificates issued on demand, through the whole proxy, checked by rustls clients whose only
//! root is the generated `ca.crt`: a name under `localhost` that the leaf does not cover gets its
//! own leaf, kept in `names/` and reused after a restart; a name outside the CA's constraints
//! gets the proxy's leaf and nothing is minted; the cache and rate bounds hand the proxy's leaf
//! to the name beyond them; one issuance serves every handshake waiting for the name, and a
//! slow one holds up no other handshake.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::dev_ca::{proxy_on, read, verified};
use crate::support::{Captured, eventually};

const DEADLINE: Duration = Duration::from_secs(15);

/// The SANs of a DER certificate.
fn sans(der: &CertificateDer<'_>) -> Vec<String> {
    common::tls::CertInfo::parse(der, Path::new("served"))
        .expect("parse")
        .sans
}

/// The `.crt` files in `names/`, sorted.
fn on_disk(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir.join("names"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.ends_with(".crt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The proxy's own leaf, as served.
fn own_leaf(dir: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(read(dir, "localhost.crt").as_bytes()).expect("pem")
}

/// The chain a client accepting any certificate is shown when it asks for `name`.
async fn shown_to(
    addr: std::net::SocketAddr,
    name: rustls_pki_types::ServerName<'static>,
) -> Vec<CertificateDer<'static>> {
    let config = common::client::insecure_client_config(&[b"http/1.1"]).expect("config");
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio::time::timeout(DEADLINE, connector.connect(name, tcp))
        .await
        .expect("in time")
        .expect("handshake");
    tls.get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .to_vec()
}

#[tokio::test]
async fn a_name_under_localhost_gets_its_own_leaf_kept_on_disk_and_reused_after_restart() {
    let (captured, _guard) = Captured::info();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[]).await;
    assert!(proxy.certs.issues_on_demand());
    let ca = read(d, "ca.crt");
    let mut first = Vec::new();
    for name in ["api.localhost", "a.b.localhost"] {
        let chain = verified(proxy.https, &ca, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(chain.len(), 1, "the leaf alone is served");
        assert_eq!(sans(&chain[0]), [name], "{name} has a leaf of its own");
        first.push(chain[0].clone());
        let (crt, key) = proxy.certs.issued_paths(name);
        let written = eventually(DEADLINE, || async { crt.exists() }).await;
        assert!(written, "{} was never written", crt.display());
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        let pem = std::fs::read(&crt).expect("crt");
        assert_eq!(
            CertificateDer::from_pem_slice(&pem).expect("pem"),
            chain[0],
            "the file holds the served leaf"
        );
    }
    // The name the leaf covers still gets the leaf; a second handshake reuses the issued one.
    let chain = verified(proxy.https, &ca, "localhost")
        .await
        .expect("localhost");
    assert_eq!(chain[0], own_leaf(d));
    let again = verified(proxy.https, &ca, "api.localhost")
        .await
        .expect("again");
    assert_eq!(again[0], first[0], "issued once");
    // HTTPS through it, as curl --resolve api.localhost:PORT:127.0.0.1 does.
    let ca_cert = reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca");
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca_cert)
        .resolve("api.localhost", proxy.https)
        .build()
        .expect("client");
    let url = format!("https://api.localhost:{}/", proxy.https.port());
    client.get(&url).send().await.expect("verified request");
    let described = proxy::describe(proxy.certs.files()).expect("proxy cert");
    for name in ["a.b.localhost", "api.localhost"] {
        assert!(
            described.contains(&format!("Issued        {name} (until")),
            "{described}"
        );
    }
    drop(proxy);
    let issued = captured.text();
    assert_eq!(issued.matches("on demand in").count(), 2, "{issued}");

    let (again, _app) = proxy_on(d, &[]).await;
    let loaded: Vec<String> = again
        .certs
        .issued_names()
        .into_iter()
        .map(|n| n.0)
        .collect();
    assert_eq!(
        loaded,
        ["a.b.localhost", "api.localhost"],
        "loaded at start"
    );
    for (name, before) in ["api.localhost", "a.b.localhost"].iter().zip(&first) {
        let chain = verified(again.https, &ca, name)
            .await
            .expect("after restart");
        assert_eq!(&chain[0], before, "{name}: reused, not reissued");
    }
    assert!(
        !captured.text()[issued.len()..].contains("on demand in"),
        "nothing was issued after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_constraints_get_the_proxys_leaf_and_nothing_is_minted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[]).await;
    let ca = read(d, "ca.crt");
    let leaf = own_leaf(d);
    for name in [
        "example.com",
        "localhost.example",
        "notlocalhost",
        "a_b.localhost",
    ] {
        let Ok(server_name) = rustls_pki_types::ServerName::try_from(name) else {
            continue;
        };
        let shown = shown_to(proxy.https, server_name.to_owned()).await;
        assert_eq!(shown[0], leaf, "{name} gets the proxy's leaf");
        if name != "a_b.localhost" {
            let err = verified(proxy.https, &ca, name).await.expect_err(name);
            assert!(err.contains("not valid for"), "{name}: {err}");
        }
    }
    assert!(proxy.certs.issued_names().is_empty());
    assert_eq!(on_disk(d), Vec::<String>::new(), "nothing minted");
}

#[tokio::test]
async fn beyond_the_cache_size_a_name_gets_the_proxys_leaf() {
    let (captured, _guard) = Captured::info();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[("PROXY_TLS_ISSUE_CACHE", "2")]).await;
    let ca = read(d, "ca.crt");
    for name in ["n1.localhost", "n2.localhost"] {
        verified(proxy.https, &ca, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = verified(proxy.https, &ca, "n3.localhost")
        .await
        .expect_err("n3 is beyond the cache");
    assert!(err.contains("not valid for"), "{err}");
    // The names already issued keep theirs.
    verified(proxy.https, &ca, "n1.localhost")
        .await
        .expect("n1 kept");
    let names: Vec<String> = proxy
        .certs
        .issued_names()
        .into_iter()
        .map(|n| n.0)
        .collect();
    assert_eq!(names, ["n1.localhost", "n2.localhost"]);
    let files = eventually(DEADLINE, || async { on_disk(d).len() == 2 }).await;
    assert!(files, "{:?}", on_disk(d));
    assert_eq!(on_disk(d), ["n1.localhost.crt", "n2.localhost.crt"]);
    let log = captured.text();
    assert!(log.contains("PROXY_TLS_ISSUE_CACHE=2"), "{log}");
}

#[tokio::test]
async fn beyond_the_rate_a_name_gets_the_proxys_leaf() {
    let (captured, _guard) = Captured::info();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[("PROXY_TLS_ISSUE_RATE", "2")]).await;
    let ca = read(d, "ca.crt");
    for name in ["r1.localhost", "r2.localhost"] {
        verified(proxy.https, &ca, name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // 2 a minute: the bucket refills one every 30 s, so the third name within that is refused.
    let err = verified(proxy.https, &ca, "r3.localhost")
        .await
        .expect_err("r3 is beyond the rate");
    assert!(err.contains("not valid for"), "{err}");
    verified(proxy.https, &ca, "r2.localhost")
        .await
        .expect("issued names need no token");
    assert_eq!(proxy.certs.issued_names().len(), 2);
    let log = captured.text();
    assert!(log.contains("PROXY_TLS_ISSUE_RATE=2"), "{log}");
}

/// With one event loop, a handshake for a new name waits on a slow issuance (a test hook makes
/// it take 1.5 s) while a handshake for `localhost` on the same loop completes at once; every
/// handshake waiting for the new name gets the one leaf issued.
#[tokio::test]
async fn a_slow_issuance_holds_up_no_other_handshake_and_is_done_once() {
    let (captured, _guard) = Captured::info();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[("PROXY_WORKERS", "1")]).await;
    let ca = read(d, "ca.crt");
    proxy
        .certs
        .delay_issuance_for_tests(Duration::from_millis(1500));
    let started = Instant::now();
    let waiting: Vec<_> = (0..4)
        .map(|_| {
            let ca = ca.clone();
            let https = proxy.https;
            tokio::spawn(async move { verified(https, &ca, "slow.localhost").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let chain = verified(proxy.https, &ca, "localhost")
        .await
        .expect("localhost");
    assert_eq!(chain[0], own_leaf(d));
    assert!(
        waiting.iter().all(|w| !w.is_finished()),
        "the handshake for localhost waited for the slow issuance"
    );
    let quick = started.elapsed();
    let mut leaves = Vec::new();
    for w in waiting {
        let chain = w.await.expect("task").expect("slow.localhost verifies");
        leaves.push(chain[0].clone());
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(quick < Duration::from_millis(1500), "{quick:?}");
    leaves.dedup();
    assert_eq!(leaves.len(), 1, "one issuance for the four handshakes");
    assert_eq!(proxy.certs.issued_names().len(), 1);
    // The issuance logs once its files are written, after the handshakes went on.
    let logged = eventually(DEADLINE, || async {
        captured.text().contains("on demand in")
    })
    .await;
    assert!(logged);
    let log = captured.text();
    assert_eq!(log.matches("on demand in").count(), 1, "{log}");
}

/// A leaf in `names/` that is due (a third of its life left) is not served again: the next
/// handshake for its name gets a fresh one, written over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_leaf_on_disk_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, app) = proxy_on(d, &[]).await;
    drop((proxy, app));
    let (ca, ca_key) = (read(d, "ca.crt"), read(d, "ca.key"));
    let due = testkit::Pair::signed_by(&ca, &ca_key, &["old.localhost"], proxy::LEAF_ORG, -80, 10);
    std::fs::create_dir_all(d.join("names")).expect("mkdir");
    std::fs::write(d.join("names/old.localhost.crt"), &due.cert).expect("crt");
    std::fs::write(d.join("names/old.localhost.key"), &due.key).expect("key");
    let (proxy, _app) = proxy_on(d, &[]).await;
    assert!(
        proxy.certs.issued_names().is_empty(),
        "the due leaf is not loaded"
    );
    let chain = verified(proxy.https, &ca, "old.localhost")
        .await
        .expect("fresh");
    let fresh = common::tls::fingerprint(&chain[0]);
    assert_ne!(fresh, due.fingerprint);
    let replaced = eventually(DEADLINE, || async {
        std::fs::read(d.join("names/old.localhost.crt"))
            .ok()
            .and_then(|pem| CertificateDer::from_pem_slice(&pem).ok())
            .is_some_and(|der| der == chain[0])
    })
    .await;
    assert!(replaced, "the file was not replaced");
}

/// The renewal check covers the issued leaves too: once the folder holds another CA, the next
/// check replaces the issued leaf (which no longer verifies) with one from the new CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renewal_check_reissues_an_issued_leaf_the_ca_no_longer_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (proxy, _app) = proxy_on(d, &[]).await;
    let old_ca = read(d, "ca.crt");
    let first = verified(proxy.https, &old_ca, "api.localhost")
        .await
        .expect("issued");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    drop(proxy_on(elsewhere.path(), &[]).await);
    for name in ["ca.key", "ca.crt"] {
        std::fs::copy(elsewhere.path().join(name), d.join(name)).expect("replace the CA");
    }
    let new_ca = read(d, "ca.crt");
    let certs = proxy.certs.clone();
    tokio::task::spawn_blocking(move || certs.renew_if_due())
        .await
        .expect("renewal check");
    let renewed = verified(proxy.https, &new_ca, "api.localhost")
        .await
        .expect("the new CA's leaf");
    assert_ne!(renewed[0], first[0]);
    let on_file = std::fs::read(d.join("names/api.localhost.crt")).expect("crt");
    assert_eq!(
        CertificateDer::from_pem_slice(&on_file).expect("pem"),
        renewed[0]
    );
}
