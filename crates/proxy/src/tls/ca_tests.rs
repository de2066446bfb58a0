//! Unit tests for the development CA and its leaf: the certificates' contents (read back with
//! x509-parser), verification by webpki with only the CA as root (the name constraints enforced,
//! not just present), when a leaf is due, start-up in each folder state, `describe` and `trust`.

use std::fs;
use std::path::Path;

use common::tls::{CertInfo, rcgen};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ca::{CA_DAYS, DevCa, LEAF_DAYS, LEAF_ORG, constraints};
use super::command::describe;
use super::leaf::{Due, Provisioned, due, is_ours, provision};
use super::trust::trust;
use crate::config::{TlsFiles, TlsName, TlsNames};

fn names(text: &str) -> TlsNames {
    text.parse().expect("names")
}

fn der(pem: &str) -> CertificateDer<'static> {
    common::tls::parse_certs(pem.as_bytes(), Path::new("pem"))
        .expect("pem")
        .swap_remove(0)
}

/// A leaf the test signs itself with the CA's key (read back from its PEM, as anyone holding
/// `ca.key` could), for `sans`, valid from yesterday for 30 days.
fn sign_with(ca_crt: &str, ca_key: &str, sans: &[&str]) -> CertificateDer<'static> {
    der(&testkit::Pair::signed_by(ca_crt, ca_key, sans, "test", -1, 30).cert)
}

#[test]
fn wildcards_constrain_by_their_base_name_and_addresses_exactly() {
    let c = constraints(&TlsNames::default());
    assert_eq!(
        c.permitted_subtrees,
        [
            rcgen::GeneralSubtree::DnsName("localhost".into()),
            rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::V4([127, 0, 0, 1], [255; 4])),
            rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::from_addr_prefix(
                "::1".parse().expect("ip"),
                128
            )),
        ]
    );
    assert!(c.excluded_subtrees.is_empty());
    let dns_only = constraints(&names("myhost.lan, *.myhost.lan"));
    assert_eq!(
        dns_only.permitted_subtrees,
        [rcgen::GeneralSubtree::DnsName("myhost.lan".into())]
    );
    assert_eq!(
        dns_only.excluded_subtrees.len(),
        2,
        "no IP name: every address excluded"
    );
}

#[test]
fn the_ca_is_a_name_constrained_p256_root_for_ten_years() {
    let now = OffsetDateTime::now_utc();
    let (ca, pem) = DevCa::create(&TlsNames::default(), now).expect("create");
    let der = der(&pem.cert);
    let (_, x) = X509Certificate::from_der(&der).expect("parse");
    let bc = x.basic_constraints().expect("bc").expect("present");
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = x.key_usage().expect("ku").expect("present").value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    let nc = x.name_constraints().expect("nc").expect("present");
    assert!(nc.critical, "name constraints must be critical (RFC 5280)");
    assert_eq!(
        ca.info.name_constraints,
        ["DNS:localhost", "IP:127.0.0.1/32", "IP:::1/128"]
    );
    assert_eq!(
        x.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let ski =
        x.get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER);
    assert!(ski.expect("ski").is_some());
    let days = (ca.info.not_after - ca.info.not_before).whole_days();
    assert_eq!(days, CA_DAYS);
    let cn = &ca.info.common_name;
    assert!(
        cn.starts_with("containerize development CA (") && cn.contains(&now.date().to_string()),
        "{cn}"
    );
    assert_eq!(ca.info.subject, ca.info.issuer, "self-signed root");
}

#[test]
fn the_leaf_verifies_for_every_configured_name_and_for_no_other() {
    let now = OffsetDateTime::now_utc();
    let all = TlsNames::default();
    let (ca, _) = DevCa::create(&all, now).expect("create");
    let (pem, leaf) = ca.issue(&all, now).expect("issue");
    for name in &all.0 {
        ca.verify(&leaf, name, now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for other in [
        "example.com",
        "a.b.localhost",
        "10.0.0.1",
        "localhost.example",
    ] {
        let name: TlsName = other.parse().expect("name");
        let err = ca.verify(&leaf, &name, now).expect_err(other).to_string();
        assert!(err.contains("not valid for"), "{other}: {err}");
    }
    let (_, x) = X509Certificate::from_der(&leaf).expect("parse");
    let eku = x.extended_key_usage().expect("eku").expect("present").value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!x.is_ca());
    let aki =
        x.get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER);
    assert!(aki.expect("aki").is_some(), "clients find the issuer by it");
    let info = CertInfo::parse(&leaf, Path::new("leaf")).expect("info");
    assert_eq!((info.not_after - info.not_before).whole_days(), LEAF_DAYS);
    assert!(info.subject.contains(&format!("O={LEAF_ORG}")), "{info:?}");
    assert_eq!(pem.cert.matches("BEGIN CERTIFICATE").count(), 1);
}

#[test]
fn a_leaf_the_ca_key_signs_outside_its_names_is_rejected() {
    let now = OffsetDateTime::now_utc();
    let (ca, pem) = DevCa::create(&TlsNames::default(), now).expect("create");
    let sign = |sans: &[&str]| sign_with(&pem.cert, &pem.key, sans);
    // Control: the same signing code inside the constraints is accepted.
    let inside = sign(&["other.localhost"]);
    ca.verify(&inside, &names("other.localhost").0[0], now)
        .expect("inside the constraints");
    for sans in [
        &["evil.example.com"][..],
        &["localhost", "evil.example.com"][..],
        &["localhost", "10.1.2.3"][..],
    ] {
        let leaf = sign(sans);
        for asked in sans {
            let name: TlsName = asked.parse().expect("name");
            let err = ca.verify(&leaf, &name, now).expect_err(asked).to_string();
            assert!(
                err.contains("NameConstraintViolation"),
                "{sans:?} as {asked}: {err}"
            );
        }
    }
    // Without an IP name the CA can sign for no address at all.
    let (dns_ca, dns_pem) = DevCa::create(&names("localhost"), now).expect("create");
    let with_ip = sign_with(&dns_pem.cert, &dns_pem.key, &["localhost", "127.0.0.1"]);
    let err = dns_ca
        .verify(&with_ip, &names("localhost").0[0], now)
        .expect_err("excluded");
    assert!(err.to_string().contains("NameConstraintViolation"), "{err}");
}

/// A fresh folder provisioned (CA and leaf created) at `now`.
fn provisioned(dir: &Path) -> (TlsFiles, DevCa) {
    let files = TlsFiles::in_dir(dir);
    let got = provision(&files, OffsetDateTime::now_utc()).expect("provision");
    assert!(matches!(got, Provisioned::CreatedCa(_)), "{got:?}");
    let ca = DevCa::load(&files).expect("load");
    (files, ca)
}

#[test]
fn the_leaf_is_due_with_a_third_of_its_life_left_other_names_or_a_foreign_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut files, ca) = provisioned(dir.path());
    let now = OffsetDateTime::now_utc();
    assert!(is_ours(&files));
    assert_eq!(due(&ca, &files, now), None);
    assert_eq!(due(&ca, &files, now + time::Duration::days(59)), None);
    let late = due(&ca, &files, now + time::Duration::days(61));
    assert!(
        matches!(late, Some(Due::Expiring { days_left: 28..=29 })),
        "{late:?}"
    );
    let expired = due(&ca, &files, now + time::Duration::days(91));
    assert!(matches!(expired, Some(Due::NotVerified(_))), "{expired:?}");
    files.names = names("localhost, 127.0.0.1");
    assert!(matches!(due(&ca, &files, now), Some(Due::Names { .. })));
    files.names = TlsNames::default();
    fs::write(&files.key, testkit::Pair::new("x.test").key).expect("write");
    assert!(matches!(due(&ca, &files, now), Some(Due::Key(_))));
}

#[test]
fn start_up_renews_a_due_leaf_and_keeps_a_fine_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (files, _ca) = provisioned(dir.path());
    let first = fs::read(&files.cert).expect("read");
    let again = provision(&files, OffsetDateTime::now_utc()).expect("again");
    assert!(matches!(again, Provisioned::Managed), "{again:?}");
    assert_eq!(fs::read(&files.cert).expect("read"), first);
    let later = OffsetDateTime::now_utc() + time::Duration::days(70);
    let renewed = provision(&files, later).expect("renew");
    assert!(
        matches!(renewed, Provisioned::Issued(Some(Due::Expiring { .. }))),
        "{renewed:?}"
    );
    assert_ne!(fs::read(&files.cert).expect("read"), first);
}

#[test]
fn names_outside_the_ca_refuse_start_up_naming_the_setting_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut files, _ca) = provisioned(dir.path());
    let before = fs::read(&files.cert).expect("read");
    files.names = names("localhost, 127.0.0.1, ::1, myhost.lan");
    let err = provision(&files, OffsetDateTime::now_utc())
        .expect_err("outside")
        .to_string();
    assert!(
        err.starts_with("PROXY_TLS_NAMES: myhost.lan is not a name the development CA"),
        "{err}"
    );
    assert_eq!(fs::read(&files.cert).expect("read"), before);
}

#[test]
fn a_pair_the_user_brought_beside_the_ca_is_used_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (files, ca) = provisioned(dir.path());
    let user = testkit::Pair::between("user.test", -80, 5);
    user.write_into(dir.path());
    assert!(!is_ours(&files));
    let got = provision(&files, OffsetDateTime::now_utc()).expect("provision");
    assert!(
        matches!(got, Provisioned::AsFound { ca_beside: true }),
        "{got:?}"
    );
    assert_eq!(fs::read_to_string(&files.cert).expect("read"), user.cert);
    // Signed by the CA but not issued by the proxy: still the user's.
    let pem = (
        fs::read_to_string(&files.ca_cert),
        fs::read_to_string(&files.ca_key),
    );
    let (crt, key) = (pem.0.expect("ca"), pem.1.expect("key"));
    let mine = testkit::Pair::signed_by(&crt, &key, &["localhost"], "mine", -80, 5);
    mine.write_into(dir.path());
    let got = provision(&files, OffsetDateTime::now_utc()).expect("provision");
    assert!(matches!(got, Provisioned::AsFound { .. }), "{got:?}");
    assert_eq!(fs::read_to_string(&files.cert).expect("read"), mine.cert);
    drop(ca);
}

#[test]
fn half_a_ca_or_a_corrupt_one_refuses_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (files, _ca) = provisioned(dir.path());
    let key = fs::read(&files.ca_key).expect("read");
    fs::write(&files.ca_key, "-----BEGIN PRIVATE KEY-----\ngarbage\n").expect("write");
    let err = provision(&files, OffsetDateTime::now_utc())
        .expect_err("corrupt")
        .to_string();
    assert!(
        err.starts_with("cannot use the development CA: ")
            && err.contains(&files.ca_key.display().to_string()),
        "{err}"
    );
    fs::write(&files.ca_key, testkit::Pair::new("x.test").key).expect("write");
    let err = provision(&files, OffsetDateTime::now_utc())
        .expect_err("foreign key")
        .to_string();
    assert!(err.contains("does not match"), "{err}");
    fs::write(&files.ca_key, key).expect("restore");
    for f in [&files.cert, &files.key, &files.ca_cert] {
        fs::remove_file(f).expect("rm");
    }
    let err = provision(&files, OffsetDateTime::now_utc())
        .expect_err("half")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{} exists but {} does not",
            files.ca_key.display(),
            files.ca_cert.display()
        )),
        "{err}"
    );
}

#[test]
fn describe_and_trust_show_the_ca_its_constraints_and_the_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = describe(&TlsFiles::in_dir(dir.path())).expect("fresh");
    assert!(fresh.contains("creates a development CA"), "{fresh}");
    let err = trust(&TlsFiles::in_dir(dir.path()), None).expect_err("no CA yet");
    assert!(
        err.to_string().contains("no development CA here yet"),
        "{err}"
    );
    let (files, ca) = provisioned(dir.path());
    let text = describe(&files).expect("describe");
    for want in [
        "issued by the development CA below",
        "May sign only DNS:localhost, IP:127.0.0.1/32, IP:::1/128",
        "CA not after  ",
        "Renewal       automatic from ",
        &format!("CA SHA-256    {}", ca.info.fingerprint),
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let text = trust(&files, Some("conf/tls/ca.crt")).expect("trust");
    let cn = format!("delete-certificate -c \"{}\"", ca.info.common_name);
    let missing: Vec<&str> = [
        ca.info.fingerprint.as_str(),
        "sudo update-ca-certificates",
        "trust anchor --store conf/tls/ca.crt",
        "security add-trusted-cert -d -r trustRoot",
        "certutil -user -addstore Root conf\\tls\\ca.crt",
        "certutil -d sql:$HOME/.pki/nssdb -A -t C,,",
        "curl --cacert conf/tls/ca.crt https://localhost/",
        "undo: sudo trust anchor --remove conf/tls/ca.crt",
        cn.as_str(),
    ]
    .into_iter()
    .filter(|want| !text.contains(want))
    .collect();
    assert!(missing.is_empty(), "missing {missing:?} in\n{text}");
    // A leaf signed by hand outside the constraints: described, with the refusal as a warning.
    let (crt, key) = (
        fs::read_to_string(&files.ca_cert),
        fs::read_to_string(&files.ca_key),
    );
    let evil = testkit::Pair::signed_by(
        &crt.expect("ca"),
        &key.expect("key"),
        &["evil.example.com"],
        "test",
        -1,
        30,
    );
    evil.write_into(dir.path());
    let text = describe(&files).expect("describe");
    assert!(
        text.contains("refuses this certificate for evil.example.com")
            && text.contains("NameConstraintViolation"),
        "{text}"
    );
    let shown = trust(&files, None).expect("trust");
    assert!(
        shown.contains(&files.ca_cert.display().to_string()),
        "{shown}"
    );
}
