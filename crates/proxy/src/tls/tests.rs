//! Unit tests for the keypair store: first-start generation, start-up refusals, reload refusals,
//! chains, `describe`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::tls::{Keypair, rcgen};
use time::OffsetDateTime;

use super::command::{describe, generate_into, generate_into_with};
use super::files::CertError;
use super::store::{CertStore, Reloaded, validate};
use crate::config::TlsFiles;
use crate::config::defaults::{CA_CERT_NAME, CA_KEY_NAME, CERT_NAME, KEY_NAME};

use testkit::Pair as Pem;

fn put(dir: &Path, cert: Option<&str>, key: Option<&str>) -> TlsFiles {
    if let Some(c) = cert {
        fs::write(dir.join(CERT_NAME), c).expect("write cert");
    }
    if let Some(k) = key {
        fs::write(dir.join(KEY_NAME), k).expect("write key");
    }
    TlsFiles::in_dir(dir)
}

fn open(files: TlsFiles) -> Result<Arc<CertStore>, CertError> {
    CertStore::open(files, common::tls::provider())
}

fn open_err(files: TlsFiles) -> String {
    open(files).expect_err("start-up must fail").to_string()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn fresh_folder_gets_a_ca_and_a_leaf_it_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("conf").join("tls");
    let store = open(TlsFiles::in_dir(&tls)).expect("open");
    let info = store.info();
    assert_eq!(info.sans, ["localhost", "127.0.0.1", "::1"]);
    let days = (info.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((89..=90).contains(&days), "{days}");
    assert!(
        info.issuer.contains("containerize development CA"),
        "{info:?}"
    );
    for (name, want) in [
        (KEY_NAME, 0o600),
        (CERT_NAME, 0o644),
        (CA_KEY_NAME, 0o600),
        (CA_CERT_NAME, 0o644),
    ] {
        assert_eq!(mode(&tls.join(name)), want, "{name}");
    }
    let on_disk = Keypair::load(&tls.join(CERT_NAME), &tls.join(KEY_NAME)).expect("load");
    assert_eq!(
        common::tls::fingerprint(&on_disk.chain[0]),
        store.fingerprint()
    );
    let mut names: Vec<_> = fs::read_dir(&tls)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [CA_CERT_NAME, CA_KEY_NAME, CERT_NAME, KEY_NAME],
        "no temporary files left behind"
    );
    // A restart reuses the pair (and the CA) rather than generating another.
    let ca = fs::read(tls.join(CA_CERT_NAME)).expect("ca");
    let again = open(TlsFiles::in_dir(&tls)).expect("reopen");
    assert_eq!(again.fingerprint(), store.fingerprint());
    assert_eq!(fs::read(tls.join(CA_CERT_NAME)).expect("ca"), ca);
}

#[test]
fn generation_off_and_no_files_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = TlsFiles::in_dir(dir.path());
    files.generate = false;
    let err = open_err(files);
    assert!(err.contains("PROXY_TLS_GENERATE=false"), "{err}");
    assert!(err.contains(&format!(
        "PROXY_TLS_CERT={}",
        dir.path().join(CERT_NAME).display()
    )));
    assert!(fs::read_dir(dir.path()).expect("ls").next().is_none());
}

#[test]
fn half_pairs_are_refused_naming_the_missing_file() {
    let a = Pem::new("a.test");
    let dir = tempfile::tempdir().expect("tempdir");
    let err = open_err(put(dir.path(), Some(&a.cert), None));
    let key = dir.path().join(KEY_NAME);
    assert!(
        err.contains(&format!("PROXY_TLS_KEY={} does not", key.display())),
        "{err}"
    );
    assert!(!key.exists(), "nothing generated next to a half pair");

    let dir = tempfile::tempdir().expect("tempdir");
    let err = open_err(put(dir.path(), None, Some(&a.key)));
    let cert = dir.path().join(CERT_NAME);
    assert!(
        err.contains(&format!("PROXY_TLS_CERT={} does not", cert.display())),
        "{err}"
    );
}

#[test]
fn mismatched_unparsable_and_expired_pairs_fail_start_up() {
    let (a, b) = (Pem::new("a.test"), Pem::new("b.test"));
    let dir = tempfile::tempdir().expect("tempdir");
    let err = open_err(put(dir.path(), Some(&a.cert), Some(&b.key)));
    assert!(err.starts_with("PROXY_TLS_KEY="), "{err}");
    assert!(err.contains("does not match the certificate"), "{err}");

    let err = open_err(put(dir.path(), Some("not a certificate"), Some(&a.key)));
    assert!(err.starts_with("PROXY_TLS_CERT="), "{err}");
    assert!(err.contains("no certificate found"), "{err}");

    let half_written = &a.cert[..a.cert.len() / 2];
    let err = open_err(put(dir.path(), Some(half_written), Some(&a.key)));
    assert!(err.starts_with("PROXY_TLS_CERT="), "{err}");

    let err = open_err(put(dir.path(), Some(&a.cert), Some("garbage")));
    assert!(err.starts_with("PROXY_TLS_KEY="), "{err}");
    assert!(err.contains("no usable private key"), "{err}");

    let old = Pem::between("old.test", -30, -2);
    let err = open_err(put(dir.path(), Some(&old.cert), Some(&old.key)));
    assert!(err.starts_with("PROXY_TLS_CERT="), "{err}");
    assert!(
        err.contains("expired on") && err.contains("2 days ago"),
        "{err}"
    );
}

#[test]
fn expiring_soon_is_served_with_a_warning() {
    let soon = Pem::between("soon.test", -80, 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let files = put(dir.path(), Some(&soon.cert), Some(&soon.key));
    let (_, warnings) =
        validate(&files, &common::tls::provider(), OffsetDateTime::now_utc()).expect("valid");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("expires in 4 days"), "{warnings:?}");
    assert!(open(files).is_ok());
}

#[test]
fn broken_reloads_keep_the_old_pair_and_a_good_one_replaces_it() {
    let (a, b, c) = (Pem::new("a.test"), Pem::new("b.test"), Pem::new("c.test"));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(put(dir.path(), Some(&a.cert), Some(&a.key))).expect("open");
    assert_eq!(store.fingerprint(), a.fingerprint);
    let old = Pem::between("old.test", -30, -1);
    let half = &b.key[..b.key.len() / 2];
    let broken: [(&str, &str, &str); 5] = [
        (&b.cert, &c.key, "does not match"),
        (&b.cert[..b.cert.len() - 40], &b.key, "PROXY_TLS_CERT="),
        (&b.cert, half, "PROXY_TLS_KEY="),
        (&old.cert, &old.key, "expired on"),
        ("", &b.key, "no certificate found"),
    ];
    for (cert, key, reason) in broken {
        put(dir.path(), Some(cert), Some(key));
        let err = store.reload().expect_err("refused").to_string();
        assert!(err.contains(reason), "{reason}: {err}");
        assert_eq!(store.last_reload_error().as_deref(), Some(err.as_str()));
        assert_eq!(store.fingerprint(), a.fingerprint, "old pair keeps serving");
    }
    fs::remove_file(dir.path().join(KEY_NAME)).expect("rm");
    assert!(
        store.reload().is_err(),
        "a vanished key is refused, not regenerated"
    );
    put(dir.path(), Some(&b.cert), Some(&b.key));
    match store.reload().expect("good pair") {
        Reloaded::Changed {
            previous_fingerprint,
            info,
            ..
        } => {
            assert_eq!(previous_fingerprint, a.fingerprint);
            assert_eq!(info.fingerprint, b.fingerprint);
        }
        Reloaded::Unchanged => panic!("expected a change"),
    }
    assert_eq!(store.fingerprint(), b.fingerprint);
    assert_eq!(store.last_reload_error(), None);
    assert!(matches!(store.reload(), Ok(Reloaded::Unchanged)));
    assert_eq!(store.changes(), 1);
}

/// A root, an intermediate it signed, and a leaf the intermediate signed.
fn chain() -> (String, String, String, String) {
    let ca = |name: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_owned());
        p
    };
    let key = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let root = rcgen::CertifiedIssuer::self_signed(ca("Test Root"), key()).expect("root");
    let mid = rcgen::CertifiedIssuer::signed_by(ca("Test Intermediate"), key(), &root).expect("i");
    let leaf_key = key();
    let mut leaf = rcgen::CertificateParams::new(vec!["chain.test".to_owned()]).expect("params");
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "chain.test");
    let leaf = leaf.signed_by(&leaf_key, &mid).expect("leaf");
    (leaf.pem(), mid.pem(), root.pem(), leaf_key.serialize_pem())
}

#[test]
fn chains_are_served_in_file_order_and_misorder_is_warned() {
    let (leaf, mid, _root, key) = chain();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = put(dir.path(), Some(&format!("{leaf}{mid}")), Some(&key));
    let store = open(files.clone()).expect("open");
    let served = store.current.load();
    let on_disk = Keypair::load(&files.cert, &files.key).expect("load");
    assert_eq!(served.certified.cert, on_disk.chain);
    assert_eq!(served.certified.cert.len(), 2);
    let text = describe(&files).expect("describe");
    assert!(text.contains("leaf + 1 intermediate"), "{text}");
    assert!(!text.contains("Warning"), "{text}");

    put(dir.path(), Some(&format!("{leaf}{mid}{mid}")), None);
    let text = describe(&files).expect("describe");
    assert!(text.contains("was not issued by certificate #3"), "{text}");
}

#[test]
fn describe_reports_what_would_be_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = TlsFiles::in_dir(dir.path());
    let text = describe(&files).expect("fresh");
    assert!(text.starts_with("No keypair yet"), "{text}");
    assert!(!files.cert.exists(), "describe never writes");

    let (cert, key, info) = generate_into(dir.path()).expect("generate");
    assert_eq!(
        (cert.as_path(), key.as_path()),
        (files.cert.as_path(), files.key.as_path())
    );
    let text = describe(&files).expect("describe");
    for want in [
        "Subject       CN=localhost",
        "Issuer        (self-signed)",
        "SANs          localhost, 127.0.0.1, ::1",
        "days left)",
        "Chain         1 certificate (leaf only)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        text.contains(&format!("SHA-256       {}", info.fingerprint)),
        "{text}"
    );

    fs::write(&files.key, Pem::new("other.test").key).expect("write");
    let err = describe(&files).expect_err("mismatch").to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn generate_into_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("new");
    let (cert, key, first) = generate_into(&out).expect("generate");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(first.sans, ["localhost", "127.0.0.1", "::1"]);
    let err = generate_into(&out).expect_err("exists").to_string();
    assert!(
        err.contains(&cert.display().to_string()) && err.contains("--force"),
        "{err}"
    );
    let (_, _, second) = generate_into_with(&out, true).expect("forced");
    assert_ne!(first.fingerprint, second.fingerprint);
    let loaded = Keypair::load(&cert, &key).expect("load");
    assert_eq!(
        common::tls::fingerprint(&loaded.chain[0]),
        second.fingerprint
    );
}
