//! The development CA: created once per folder (ECDSA P-256, 10 years, `CA:true` with path
//! length 0, name-constrained to `PROXY_TLS_NAMES`), loaded from `ca.crt`/`ca.key`, issuing the
//! proxy's leaf, and checking a leaf with the same verifier (webpki) a rustls client uses.

use std::path::Path;
use std::sync::Arc;

use common::tls::{CertInfo, Keypair, TlsError, rcgen};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;

use super::files::CertError;
use crate::config::{TlsFiles, TlsName, TlsNames};

/// Lifetime of a development CA.
pub const CA_DAYS: i64 = 3650;
/// Lifetime of a leaf the development CA issues.
pub const LEAF_DAYS: i64 = 90;
/// The organisation in a leaf's subject: it marks the leaves the proxy issued (and may renew).
pub const LEAF_ORG: &str = "containerize development leaf";
/// The organisation in the CA's subject.
const CA_ORG: &str = "containerize";
/// Backdating of `notBefore`, for clocks a little behind.
const BACKDATE: time::Duration = time::Duration::minutes(5);

/// A PEM certificate and its PEM private key, as written to disk.
pub(super) struct Pem {
    pub(super) cert: String,
    pub(super) key: String,
}

/// The development CA, ready to issue.
pub(super) struct DevCa {
    pub(super) der: CertificateDer<'static>,
    pub(super) info: CertInfo,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").field("info", &self.info).finish()
    }
}

impl DevCa {
    /// A new CA for `names` (its name constraints), valid [`CA_DAYS`] from `now`.
    pub(super) fn create(names: &TlsNames, now: OffsetDateTime) -> Result<(DevCa, Pem), TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!(
                "containerize development CA ({}, {})",
                machine_name(),
                now.date()
            ),
        );
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, CA_ORG);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.name_constraints = Some(constraints(names));
        params.serial_number = Some(serial());
        params.not_before = now - BACKDATE;
        params.not_after = now + time::Duration::days(CA_DAYS);
        let cert = params.self_signed(&key)?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        let der = cert.der().clone();
        let info = CertInfo::parse(&der, Path::new("ca.crt"))?;
        let issuer = rcgen::Issuer::new(params, key);
        Ok((DevCa { der, info, issuer }, pem))
    }

    /// `ca.crt` and `ca.key` from `files`: parsable, matching, usable for signing. Every error
    /// names the file.
    pub(super) fn load(files: &TlsFiles) -> Result<DevCa, CertError> {
        let (crt, key) = (&files.ca_cert, &files.ca_key);
        let bad = |path: &Path, reason: String| CertError::Ca {
            path: path.to_owned(),
            reason,
        };
        let pair = Keypair::load(crt, key).map_err(|e| match &e {
            TlsError::Read { path, .. } => bad(path, e.to_string()),
            TlsError::BadKey { .. } | TlsError::UnsupportedKey { .. } => bad(key, e.to_string()),
            _ => bad(crt, e.to_string()),
        })?;
        pair.certified(&common::tls::provider(), crt, key)
            .map_err(|e| bad(key, e.to_string()))?;
        let der = pair.chain[0].clone();
        let info = CertInfo::parse(&der, crt).map_err(|e| bad(crt, e.to_string()))?;
        let signing = rcgen::KeyPair::try_from(&pair.key).map_err(|e| {
            bad(
                key,
                format!("{}: not a usable signing key: {e}", key.display()),
            )
        })?;
        let issuer = rcgen::Issuer::from_ca_cert_der(&der, signing).map_err(|e| {
            bad(
                crt,
                format!("{}: not a usable CA certificate: {e}", crt.display()),
            )
        })?;
        Ok(DevCa { der, info, issuer })
    }

    /// A new leaf for `names` (SANs; serverAuth; [`LEAF_DAYS`], never past the CA's own end).
    pub(super) fn issue(
        &self,
        names: &TlsNames,
        now: OffsetDateTime,
    ) -> Result<(Pem, CertificateDer<'static>), TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(names.strings())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let common_name = names
            .0
            .iter()
            .find_map(|n| match n {
                TlsName::Dns(d) => Some(d.clone()),
                TlsName::Ip(_) => None,
            })
            .unwrap_or_else(|| "localhost".to_owned());
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, LEAF_ORG);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial());
        params.not_before = now - BACKDATE;
        params.not_after = (now + time::Duration::days(LEAF_DAYS)).min(self.info.not_after);
        let cert = params.signed_by(&key, &self.issuer)?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok((pem, cert.der().clone()))
    }

    /// Verify `leaf` (served alone, as the proxy does) for `name` at `at`, with this CA as the
    /// only root, exactly as a rustls client would.
    pub(super) fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        name: &TlsName,
        at: OffsetDateTime,
    ) -> Result<(), rustls::Error> {
        verify_against(&self.der, leaf, name, at)
    }
}

/// Verify `leaf` alone for `name` at `at` with `ca` as the only root (webpki, as rustls
/// clients do: the name constraints included).
pub(super) fn verify_against(
    ca: &CertificateDer<'_>,
    leaf: &CertificateDer<'_>,
    name: &TlsName,
    at: OffsetDateTime,
) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone().into_owned())?;
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), common::tls::provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    verifier
        .verify_server_cert(leaf, &[], &server_name(name)?, &[], now)
        .map(|_| ())
}

/// The name a client would ask for; for a wildcard, a name it covers.
fn server_name(name: &TlsName) -> Result<ServerName<'static>, rustls::Error> {
    match name {
        TlsName::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        TlsName::Dns(d) => {
            let concrete = match d.strip_prefix("*.") {
                Some(base) => format!("wildcard-check.{base}"),
                None => d.clone(),
            };
            ServerName::try_from(concrete).map_err(|e| rustls::Error::General(format!("{d}: {e}")))
        }
    }
}

/// The CA's name constraints: the DNS subtrees of `names` (a wildcard's base name; RFC 5280
/// subtrees cover every name below) and each IP address as a /32 or /128. Without any IP name,
/// every IP address is excluded, so the CA can sign for none.
pub(super) fn constraints(names: &TlsNames) -> rcgen::NameConstraints {
    let mut permitted: Vec<rcgen::GeneralSubtree> = Vec::new();
    for name in &names.0 {
        let subtree = match name {
            TlsName::Dns(_) => {
                rcgen::GeneralSubtree::DnsName(name.dns_subtree().unwrap_or_default().to_owned())
            }
            TlsName::Ip(ip) => rcgen::GeneralSubtree::IpAddress(
                rcgen::CidrSubnet::from_addr_prefix(*ip, if ip.is_ipv4() { 32 } else { 128 }),
            ),
        };
        if !permitted.contains(&subtree) {
            permitted.push(subtree);
        }
    }
    let any_ip = names.0.iter().any(|n| matches!(n, TlsName::Ip(_)));
    let excluded = if any_ip {
        Vec::new()
    } else {
        vec![
            rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::V4([0; 4], [0; 4])),
            rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::V6([0; 16], [0; 16])),
        ]
    };
    rcgen::NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: excluded,
    }
}

/// A random positive 128-bit serial number.
fn serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    if common::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .is_err()
    {
        fastrand::fill(&mut bytes);
    }
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// The machine's host name (inside a container: the container's), for the CA's subject.
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown host".to_owned())
}
