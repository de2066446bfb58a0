//! Test helpers both crates' tests share (a dev-dependency, never in an image): polling for a
//! condition, HTTPS clients that accept the test servers' self-signed certificates, throwaway
//! keypairs (self-signed, or signed with a CA's key), and what a TLS listener serves.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tls::rcgen;
use rustls_pki_types::CertificateDer;

/// Poll `check` until it returns true or `deadline` passes; returns whether it did.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An HTTPS client that accepts any certificate and never follows redirects (20 s timeout).
pub fn client() -> reqwest::Client {
    builder().build().expect("client")
}

/// As [`client`], HTTP/1.1 only.
pub fn client_h1() -> reqwest::Client {
    builder().http1_only().build().expect("client")
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
}

/// A keypair in PEM, with its leaf's SHA-256 fingerprint.
pub struct Pair {
    pub cert: String,
    pub key: String,
    pub fingerprint: String,
}

impl Pair {
    /// A self-signed ECDSA P-256 pair for `name` and `localhost`, valid from yesterday for 60
    /// days.
    pub fn new(name: &str) -> Pair {
        Pair::between(name, -1, 60)
    }

    /// [`Pair::new`], valid from `from` to `until` days from now.
    pub fn between(name: &str, from: i64, until: i64) -> Pair {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned(), "localhost".to_owned()])
                .expect("params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(until);
        let cert = params.self_signed(&key).expect("sign");
        Pair {
            fingerprint: common::tls::fingerprint(cert.der()),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A leaf for `sans` (the first is also the CN) with `org` as its organisation, signed with
    /// a CA's key (both PEM, as on disk), valid from `from` to `until` days from now.
    pub fn signed_by(
        ca_crt: &str,
        ca_key: &str,
        sans: &[&str],
        org: &str,
        from: i64,
        until: i64,
    ) -> Pair {
        let key = rcgen::KeyPair::from_pem(ca_key).expect("CA key");
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca_crt, key).expect("CA certificate");
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            sans.first().copied().unwrap_or("localhost"),
        );
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from);
        params.not_after = now + time::Duration::days(until);
        let cert = params.signed_by(&leaf_key, &issuer).expect("sign");
        Pair {
            fingerprint: common::tls::fingerprint(cert.der()),
            cert: cert.pem(),
            key: leaf_key.serialize_pem(),
        }
    }

    /// Write `localhost.crt` and `localhost.key` into `dir`, in place.
    pub fn write_into(&self, dir: &Path) {
        std::fs::write(dir.join("localhost.crt"), &self.cert).expect("write cert");
        std::fs::write(dir.join("localhost.key"), &self.key).expect("write key");
    }
}

/// The SHA-256 fingerprint of the certificate a fresh TLS connection to `addr` is shown.
pub async fn served_fingerprint(addr: SocketAddr) -> String {
    common::client::handshake(addr, Duration::from_secs(10))
        .await
        .expect("handshake")
}

/// The chain a fresh TLS connection to `addr` is shown, leaf first.
pub async fn served_chain(addr: SocketAddr) -> Vec<CertificateDer<'static>> {
    common::client::peer_chain(addr, Duration::from_secs(10))
        .await
        .expect("handshake")
}
