//! The proxy's own leaf, issued by the development CA: whether the pair in the folder is one
//! (never touching a pair the user brought), whether it is due, issuing and writing a new one
//! (atomically, key first), and what start-up does in each folder state (`provision`).

use crate::config::settings::TLS_NAMES;
use std::collections::BTreeSet;
use std::fmt;

use common::tls::{CertInfo, Keypair};
use time::OffsetDateTime;

use super::ca::{DevCa, LEAF_ORG, Pem};
use super::files::{CERT_SETTING, CertError, KEY_SETTING, file_ref, fmt_time, half_pair, presence};
use super::generate::write_atomic;
use crate::config::{TlsFiles, TlsName};

/// Why the proxy's leaf is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Due {
    /// Less than a third of its lifetime is left.
    Expiring { days_left: i64 },
    /// Its SANs are not `PROXY_TLS_NAMES`.
    Names { has: Vec<String> },
    /// It does not verify against `ca.crt` (another CA's, or expired).
    NotVerified(String),
    /// Its key is unreadable or belongs to another certificate.
    Key(String),
}

impl fmt::Display for Due {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Due::Expiring { days_left } => {
                write!(
                    f,
                    "less than a third of its lifetime left ({days_left} days)"
                )
            }
            Due::Names { has } => {
                write!(f, "its names [{}] are not {TLS_NAMES}", has.join(", "))
            }
            Due::NotVerified(e) => write!(f, "it does not verify against the CA: {e}"),
            Due::Key(e) => write!(f, "its key cannot be used: {e}"),
        }
    }
}

/// Whether the certificate at `PROXY_TLS_CERT` is a leaf the proxy issued (its subject carries
/// [`LEAF_ORG`]). Anything else is a pair the user brought, never touched.
pub(super) fn is_ours(files: &TlsFiles) -> bool {
    common::tls::load_certs(&files.cert)
        .ok()
        .and_then(|chain| CertInfo::parse(&chain[0], &files.cert).ok())
        .is_some_and(|info| info.subject.contains(&format!("O={LEAF_ORG}")))
}

/// Why the proxy's own leaf in `files` must be replaced at `now`, if it must.
pub(super) fn due(ca: &DevCa, files: &TlsFiles, now: OffsetDateTime) -> Option<Due> {
    let chain = match common::tls::load_certs(&files.cert) {
        Ok(chain) => chain,
        Err(e) => return Some(Due::NotVerified(e.to_string())),
    };
    let info = match CertInfo::parse(&chain[0], &files.cert) {
        Ok(info) => info,
        Err(e) => return Some(Due::NotVerified(e.to_string())),
    };
    let provider = common::tls::provider();
    if let Err(e) = Keypair::load(&files.cert, &files.key)
        .and_then(|p| p.certified(&provider, &files.cert, &files.key).map(drop))
    {
        return Some(Due::Key(e.to_string()));
    }
    let want: BTreeSet<String> = files.names.strings().into_iter().collect();
    let has: BTreeSet<String> = info.sans.iter().cloned().collect();
    if want != has {
        return Some(Due::Names {
            has: info.sans.clone(),
        });
    }
    let own_name = info.sans.first().and_then(|s| s.parse::<TlsName>().ok());
    if let Some(Err(e)) = own_name.map(|n| ca.verify(&chain[0], &n, now)) {
        return Some(Due::NotVerified(e.to_string()));
    }
    let lifetime = info.not_after - info.not_before;
    let left = info.not_after - now;
    (left * 3 < lifetime).then(|| Due::Expiring {
        days_left: left.whole_days(),
    })
}

/// Issue a leaf for `PROXY_TLS_NAMES`, check that a client trusting only the CA accepts it for
/// every one of them, then write it (key first, each file atomically).
pub(super) fn issue_into(
    ca: &DevCa,
    files: &TlsFiles,
    now: OffsetDateTime,
) -> Result<(), CertError> {
    let (pem, der) = ca
        .issue(&files.names, now)
        .map_err(|e| CertError::Generate {
            file: file_ref(CERT_SETTING, &files.cert, true),
            source: Box::new(e),
        })?;
    for name in &files.names.0 {
        if let Err(e) = ca.verify(&der, name, now) {
            return Err(outside(ca, files, name, e, now));
        }
    }
    write_pair(files, &pem, false)
}

/// The error for a leaf the CA's own constraints reject. One name outside them fails the whole
/// certificate, so each name is tried alone to say which one it is.
fn outside(
    ca: &DevCa,
    files: &TlsFiles,
    failed: &TlsName,
    error: rustls::Error,
    now: OffsetDateTime,
) -> CertError {
    let alone_fails = |name: &TlsName| {
        let one = crate::config::TlsNames(vec![name.clone()]);
        ca.issue(&one, now)
            .map_or(true, |(_, der)| ca.verify(&der, name, now).is_err())
    };
    let name = files
        .names
        .0
        .iter()
        .find(|n| alone_fails(n))
        .unwrap_or(failed);
    CertError::NameOutsideCa {
        name: name.to_string(),
        ca: files.ca_cert.clone(),
        reason: error.to_string(),
    }
}

/// Write `pem` to the leaf's files (`ca`: the CA's files), key first (0600).
fn write_pair(files: &TlsFiles, pem: &Pem, ca: bool) -> Result<(), CertError> {
    let (cert, key) = if ca {
        (
            file_ref(CERT_SETTING, &files.ca_cert, false),
            file_ref(KEY_SETTING, &files.ca_key, false),
        )
    } else {
        (
            file_ref(CERT_SETTING, &files.cert, true),
            file_ref(KEY_SETTING, &files.key, true),
        )
    };
    write_atomic(key, pem.key.as_bytes(), 0o600)?;
    write_atomic(cert, pem.cert.as_bytes(), 0o644)
}

/// What start-up found in the keypair folder and did.
#[derive(Debug)]
pub(super) enum Provisioned {
    /// A pair the proxy did not issue (or generation is off): used as it is.
    AsFound { ca_beside: bool },
    /// The proxy's own leaf, fine as it is.
    Managed,
    /// A new development CA (its certificate) and a leaf it signed.
    CreatedCa(Box<CertInfo>),
    /// A leaf issued by the existing CA: the folder had none (`None`), or it was due.
    Issued(Option<Due>),
}

/// Make the folder servable: create the CA and its leaf in a fresh folder, issue a missing
/// leaf, renew a due one. A corrupt CA file stops start-up, naming it.
pub(super) fn provision(files: &TlsFiles, now: OffsetDateTime) -> Result<Provisioned, CertError> {
    let (ca_crt, ca_key) = ca_presence(files)?;
    match presence(files)? {
        (true, true) if !(files.generate && ca_crt && ca_key) => Ok(Provisioned::AsFound {
            ca_beside: ca_crt || ca_key,
        }),
        (true, true) if !is_ours(files) => Ok(Provisioned::AsFound { ca_beside: true }),
        (true, true) => {
            let ca = DevCa::load(files)?;
            match due(&ca, files, now) {
                None => Ok(Provisioned::Managed),
                Some(due) => {
                    issue_into(&ca, files, now)?;
                    Ok(Provisioned::Issued(Some(due)))
                }
            }
        }
        (false, false) if !files.generate => Err(CertError::Missing {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        (false, false) => match (ca_crt, ca_key) {
            (true, true) => {
                let ca = DevCa::load(files)?;
                issue_into(&ca, files, now)?;
                Ok(Provisioned::Issued(None))
            }
            (false, false) => {
                let (ca, pem) =
                    DevCa::create(&files.names, now).map_err(|e| CertError::Generate {
                        file: file_ref(CERT_SETTING, &files.ca_cert, false),
                        source: Box::new(e),
                    })?;
                write_pair(files, &pem, true)?;
                issue_into(&ca, files, now)?;
                Ok(Provisioned::CreatedCa(Box::new(ca.info)))
            }
            (present, _) => Err(ca_half(files, present)),
        },
        (cert, _) => Err(half_pair(files, cert)),
    }
}

/// Which of `ca.crt` and `ca.key` exist.
pub(super) fn ca_presence(files: &TlsFiles) -> Result<(bool, bool), CertError> {
    let mut ca = files.clone();
    (ca.cert, ca.key) = (files.ca_cert.clone(), files.ca_key.clone());
    presence(&ca).map_err(|e| match e {
        CertError::Stat { mut file, source } => {
            file.setting = None;
            CertError::Stat { file, source }
        }
        other => other,
    })
}

pub(super) fn ca_half(files: &TlsFiles, crt_present: bool) -> CertError {
    let crt = file_ref(CERT_SETTING, &files.ca_cert, false);
    let key = file_ref(KEY_SETTING, &files.ca_key, false);
    let (present, missing) = if crt_present { (crt, key) } else { (key, crt) };
    CertError::HalfPair {
        present,
        missing,
        hint: "restore it, or delete the other CA file too (and the leaf pair) to have a new \
               development CA created, which you then trust again",
    }
}

impl Provisioned {
    /// Say what start-up did, with `info` the leaf now served.
    pub(super) fn log(&self, files: &TlsFiles, info: &CertInfo) {
        let leaf = format!(
            "{}: SANs [{}], valid until {}, SHA-256 fingerprint {}",
            files.cert.display(),
            info.sans.join(", "),
            fmt_time(info.not_after),
            info.fingerprint
        );
        match self {
            Provisioned::CreatedCa(ca) => {
                tracing::warn!(
                    "created a development CA: {} ({}; ECDSA P-256, valid until {}; it can sign \
                     only for {}), SHA-256 fingerprint {}",
                    files.ca_cert.display(),
                    ca.subject,
                    fmt_time(ca.not_after),
                    files.names,
                    ca.fingerprint
                );
                tracing::warn!(
                    "trust {} once and every leaf the proxy issues from it is trusted: \
                     `proxy cert trust` prints the command for each OS \
                     (`docker compose run --rm proxy cert trust`)",
                    files.ca_cert.display()
                );
                tracing::info!("issued the TLS leaf {leaf}");
            }
            Provisioned::Issued(None) => tracing::info!("issued a new TLS leaf {leaf}"),
            Provisioned::Issued(Some(due)) => {
                tracing::info!("renewed the TLS leaf ({due}): {leaf}")
            }
            Provisioned::Managed => tracing::info!(
                "TLS leaf {leaf}; issued by the development CA {}, renewed automatically \
                 (checked every {:?})",
                files.ca_cert.display(),
                files.renew_interval
            ),
            Provisioned::AsFound { ca_beside } => {
                tracing::info!(
                    "TLS keypair {}: subject {}, SANs [{}], valid until {}, SHA-256 fingerprint {}",
                    files.cert.display(),
                    info.subject,
                    info.sans.join(", "),
                    fmt_time(info.not_after),
                    info.fingerprint
                );
                self.hint(files, info, *ca_beside);
            }
        }
    }

    /// How to switch a self-signed pair (from an older version) to the development CA.
    fn hint(&self, files: &TlsFiles, info: &CertInfo, ca_beside: bool) {
        if ca_beside && files.generate {
            tracing::info!(
                "{} was not issued by the proxy: it is served as it is and never renewed",
                files.cert.display()
            );
        } else if info.issuer == info.subject && files.generate {
            tracing::info!(
                "{} is self-signed, so every client must be told to accept it. To switch to a \
                 development CA you trust once: delete {} and {} and restart the proxy; it then \
                 creates {} and a leaf signed by it, and renews the leaf by itself",
                files.cert.display(),
                files.cert.display(),
                files.key.display(),
                files.ca_cert.display()
            );
        }
    }
}
