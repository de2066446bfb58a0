//! TLS material: PEM keypairs from disk, self-signed generation, fingerprints and certificate facts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// rcgen, for callers that need more than [`self_signed`] (custom validity, CA-signed chains).
pub use rcgen;

/// A keypair problem. Each variant names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate file: {source}", path.display())]
    BadCert {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: no certificate found (expected a \"-----BEGIN CERTIFICATE-----\" block)", path.display())]
    NoCert { path: PathBuf },
    #[error("{}: no usable private key found (expected PKCS#8, PKCS#1 or SEC1 PEM): {source}", path.display())]
    BadKey {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{}: unsupported private key: {source}", path.display())]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: cannot parse the certificate: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider both services use (aws-lc-rs: fast handshakes, and the ML-KEM hybrid).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate chain and its private key, as loaded or generated.
#[derive(Debug)]
pub struct Keypair {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Keypair {
    /// Read a PEM chain (leaf first, then intermediates) and a PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        Self::from_pem(&cert_pem, cert, &key_pem, key)
    }

    /// Parse PEM bytes; `cert_path`/`key_path` are used in error messages only.
    pub fn from_pem(
        cert_pem: &[u8],
        cert_path: &Path,
        key_pem: &[u8],
        key_path: &Path,
    ) -> Result<Self, TlsError> {
        let chain = parse_certs(cert_pem, cert_path)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::BadKey {
            path: key_path.to_owned(),
            source,
        })?;
        Ok(Keypair { chain, key })
    }

    /// Turn the pair into a rustls `CertifiedKey`, refusing a key that doesn't match the leaf.
    pub fn certified(
        &self,
        provider: &CryptoProvider,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<CertifiedKey, TlsError> {
        let signing = provider
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|source| TlsError::UnsupportedKey {
                path: key_path.to_owned(),
                source,
            })?;
        let ck = CertifiedKey::new(self.chain.clone(), signing);
        match ck.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(ck)
            }
            Err(_) => Err(TlsError::Mismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            }),
        }
    }

    /// Facts about the leaf certificate.
    pub fn leaf_info(&self, path: &Path) -> Result<CertInfo, TlsError> {
        CertInfo::parse(&self.chain[0], path)
    }
}

/// Every certificate in a PEM file (at least one), in file order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certs(&read(path)?, path)
}

/// Every certificate in PEM bytes (at least one); `path` is used in error messages only.
pub fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCert {
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A freshly generated self-signed certificate, in PEM and DER.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub keypair: Keypair,
}

/// Generate an ECDSA P-256 self-signed certificate for `names` (DNS names or IP addresses),
/// valid from now for `days` days.
pub fn self_signed(names: &[&str], days: i64) -> Result<SelfSigned, TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("localhost"),
    );
    dn.push(rcgen::DnType::OrganizationName, "containerize self-signed");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(days);
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| TlsError::Generate(rcgen::Error::PemError(e.to_owned())))?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        keypair: Keypair {
            chain: vec![cert.der().clone()],
            key: key_der,
        },
    })
}

/// A name constraints extension as text: each permitted subtree (`DNS:localhost`,
/// `IP:127.0.0.1/32`), then each excluded one prefixed `excluded `.
fn name_constraints(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(ext)) = cert.name_constraints() else {
        return Vec::new();
    };
    let subtree = |name: &GeneralName<'_>| match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
            let (addr, mask) = b.split_at(b.len() / 2);
            let prefix: u32 = mask.iter().map(|m| m.count_ones()).sum();
            let ip = match <[u8; 4]>::try_from(addr) {
                Ok(v4) => std::net::IpAddr::from(v4),
                Err(_) => std::net::IpAddr::from(<[u8; 16]>::try_from(addr).unwrap_or_default()),
            };
            format!("IP:{ip}/{prefix}")
        }
        other => other.to_string(),
    };
    let value = ext.value;
    let permitted = value.permitted_subtrees.iter().flatten();
    let excluded = value.excluded_subtrees.iter().flatten();
    permitted
        .map(|s| subtree(&s.base))
        .chain(excluded.map(|s| format!("excluded {}", subtree(&s.base))))
        .collect()
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex (the `openssl x509 -fingerprint`
/// form).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// What a person wants to know about a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub subject: String,
    /// The subject's `CN`, empty when it has none.
    pub common_name: String,
    pub issuer: String,
    pub sans: Vec<String>,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    pub fingerprint: String,
    /// A CA's name constraints, e.g. `DNS:localhost`, `IP:127.0.0.1/32`, `excluded IP:0.0.0.0/0`
    /// (empty: none).
    pub name_constraints: Vec<String>,
}

impl CertInfo {
    /// Parse a DER certificate; `path` is used in error messages only.
    pub fn parse(der: &CertificateDer<'_>, path: &Path) -> Result<Self, TlsError> {
        use x509_parser::prelude::*;
        let parse_err = |reason: String| TlsError::Parse {
            path: path.to_owned(),
            reason,
        };
        let (_, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| parse_err(e.to_string()))?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                    GeneralName::IPAddress(ip) => sans.push(match ip.len() {
                        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                        16 => {
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                                .to_string()
                        }
                        _ => format!("{ip:?}"),
                    }),
                    other => sans.push(other.to_string()),
                }
            }
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            common_name,
            issuer: cert.issuer().to_string(),
            sans,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            fingerprint: fingerprint(der),
            name_constraints: name_constraints(&cert),
        })
    }

    /// True when the certificate's validity ended before `now`.
    pub fn expired_at(&self, now: time::OffsetDateTime) -> bool {
        self.not_after < now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_round_trips_and_matches() {
        let ss = self_signed(&["localhost", "127.0.0.1", "::1"], 90).expect("generate");
        let kp = Keypair::from_pem(
            ss.cert_pem.as_bytes(),
            Path::new("c.pem"),
            ss.key_pem.as_bytes(),
            Path::new("k.pem"),
        )
        .expect("parse");
        kp.certified(&provider(), Path::new("c.pem"), Path::new("k.pem"))
            .expect("keys match");
        let info = kp.leaf_info(Path::new("c.pem")).expect("info");
        assert_eq!(info.sans, vec!["localhost", "127.0.0.1", "::1"]);
        let days = (info.not_after - info.not_before).whole_days();
        assert!((89..=91).contains(&days), "{days}");
        assert_eq!(info.fingerprint.len(), 32 * 3 - 1);
    }

    #[test]
    fn mismatched_key_is_refused_naming_both_files() {
        let a = self_signed(&["a"], 1).expect("a");
        let b = self_signed(&["b"], 1).expect("b");
        let kp = Keypair::from_pem(
            a.cert_pem.as_bytes(),
            Path::new("a.crt"),
            b.key_pem.as_bytes(),
            Path::new("b.key"),
        )
        .expect("parse");
        let err = kp
            .certified(&provider(), Path::new("a.crt"), Path::new("b.key"))
            .expect_err("mismatch");
        let msg = err.to_string();
        assert!(msg.contains("b.key") && msg.contains("a.crt"), "{msg}");
    }

    #[test]
    fn garbage_is_refused() {
        let err = Keypair::from_pem(b"hello", Path::new("x.crt"), b"", Path::new("x.key"))
            .expect_err("no cert");
        assert!(err.to_string().contains("x.crt"), "{err}");
    }
}
