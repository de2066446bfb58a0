//! `proxy cert`: describe the pair that would be served (and the development CA beside it), and
//! write a new self-signed pair into a folder.

use std::fs;
use std::path::{Path, PathBuf};

use common::tls::CertInfo;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::ca::DevCa;
use super::ca::{CA_DAYS, LEAF_DAYS, verify_against};
use super::files::fmt_time;
use super::files::{
    CERT_SETTING, CertError, FileRef, GENERATE_SETTING, KEY_SETTING, half_pair, presence,
};
use super::generate::generate_pair;
use super::leaf::{ca_half, ca_presence, is_ours};
use super::store::validate;
use crate::config::defaults::{CERT_NAME, KEY_NAME};
use crate::config::{TlsFiles, TlsName};

/// Human-readable facts about the pair the proxy would serve (for `proxy cert`): subject, SANs,
/// validity, days left, SHA-256 fingerprint, chain, any warnings, and the development CA beside
/// it (its name constraints and expiry, and whether the leaf is renewed). A pair the proxy would
/// refuse is an error; a fresh folder describes what start-up would create.
pub fn describe(files: &TlsFiles) -> Result<String, CertError> {
    match presence(files)? {
        (true, true) => {}
        (false, false) if files.generate => return Ok(fresh(files)),
        (false, false) => {
            return Err(CertError::Missing {
                cert: files.cert.clone(),
                key: files.key.clone(),
            });
        }
        (cert, _) => return Err(half_pair(files, cert)),
    }
    let now = OffsetDateTime::now_utc();
    let (served, warnings) = validate(files, &common::tls::provider(), now)?;
    let info = &served.info;
    let chain = served.certified.cert.len();
    let ca_der = common::tls::load_certs(&files.ca_cert)
        .ok()
        .map(|mut c| c.swap_remove(0));
    let ca = ca_der
        .as_ref()
        .and_then(|der| CertInfo::parse(der, &files.ca_cert).ok());
    let by_ca = ca.as_ref().is_some_and(|ca| ca.subject == info.issuer);
    let mut warnings = warnings;
    if let (true, Some(ca_der)) = (by_ca, &ca_der) {
        warnings.extend(refusals(ca_der, &served.certified.cert[0], info, now));
    }
    let issuer = if info.issuer == info.subject {
        "(self-signed)".to_owned()
    } else {
        info.issuer.clone()
    };
    let mut out = format!(
        "Certificate   {CERT_SETTING}={}\n\
         Private key   {KEY_SETTING}={} (matches the certificate)\n\
         Subject       {}\n\
         Issuer        {issuer}\n\
         SANs          {}\n\
         Not before    {}\n\
         Not after     {} ({} days left)\n\
         SHA-256       {}\n\
         Chain         {chain} certificate{} ({}){}\n",
        files.cert.display(),
        files.key.display(),
        info.subject,
        info.sans.join(", "),
        fmt_time(info.not_before),
        fmt_time(info.not_after),
        (info.not_after - now).whole_days(),
        info.fingerprint,
        if chain == 1 { "" } else { "s" },
        match chain {
            1 => "leaf only".to_owned(),
            2 => "leaf + 1 intermediate".to_owned(),
            n => format!("leaf + {} intermediates", n - 1),
        },
        if by_ca {
            ", issued by the development CA below, which clients hold as a root"
        } else {
            ""
        },
    );
    out.push_str(&ca_section(files, ca.as_ref(), info, now));
    for w in warnings {
        out.push_str(&format!("Warning       {w}\n"));
    }
    Ok(out)
}

/// The development CA beside the pair, read-only (for `proxy check`): both files usable for
/// signing, or absent; half a CA is an error where start-up would refuse it (no pair yet and
/// generation on). A one-line summary.
pub fn check_ca(files: &TlsFiles) -> Result<String, CertError> {
    let (crt, key) = ca_presence(files)?;
    let (cert, _) = presence(files)?;
    match (crt, key) {
        (true, true) => {
            let ca = DevCa::load(files)?;
            Ok(format!(
                "{}: {}, valid until {}",
                files.ca_cert.display(),
                ca.info.subject,
                fmt_time(ca.info.not_after)
            ))
        }
        (false, false) => Ok(format!("none ({} does not exist)", files.ca_cert.display())),
        (present, _) if files.generate && !cert => Err(ca_half(files, present)),
        (true, false) => Ok(format!(
            "{} without ca.key: the leaf is served as it is, never renewed",
            files.ca_cert.display()
        )),
        (false, true) => Ok(format!(
            "{} without ca.crt: not used",
            files.ca_key.display()
        )),
    }
}

/// For a leaf the development CA signed: each of its names a client trusting only the CA would
/// refuse, and why (a leaf signed by hand outside the CA's name constraints).
fn refusals(
    ca: &CertificateDer<'_>,
    leaf: &CertificateDer<'_>,
    info: &CertInfo,
    now: OffsetDateTime,
) -> Vec<String> {
    info.sans
        .iter()
        .filter_map(|san| {
            let name = san.parse::<TlsName>().ok()?;
            let err = verify_against(ca, leaf, &name, now).err()?;
            Some(format!(
                "a client trusting only the development CA refuses this certificate for {san}: \
                 {err}"
            ))
        })
        .collect()
}

/// What start-up would do in an empty folder.
fn fresh(files: &TlsFiles) -> String {
    let head = format!(
        "No keypair yet: {CERT_SETTING}={} and {KEY_SETTING}={} do not exist.\n",
        files.cert.display(),
        files.key.display()
    );
    let leaf = format!(
        "a leaf for {} (ECDSA P-256, valid {LEAF_DAYS} days, renewed automatically when a third \
         of its lifetime is left)",
        files.names
    );
    if files.ca_cert.exists() && files.ca_key.exists() {
        format!(
            "{head}On start the proxy issues {leaf} from the development CA {}.\n",
            files.ca_cert.display()
        )
    } else {
        format!(
            "{head}On start the proxy creates a development CA, {} and {} (ECDSA P-256, valid \
             {} years, allowed to sign only for {}), and {leaf} signed by it.\n\
             Trust the CA once: `proxy cert trust` prints the command for each OS.\n",
            files.ca_cert.display(),
            files.ca_key.display(),
            CA_DAYS / 365,
            files.names
        )
    }
}

/// The development CA beside the pair, and whether the leaf is renewed.
fn ca_section(
    files: &TlsFiles,
    ca: Option<&CertInfo>,
    leaf: &CertInfo,
    now: OffsetDateTime,
) -> String {
    let Some(ca) = ca else {
        return format!(
            "CA            none ({} does not exist or cannot be read); the pair is served as it \
             is and never renewed\n",
            files.ca_cert.display()
        );
    };
    let constraints = if ca.name_constraints.is_empty() {
        "none: it can sign for any name".to_owned()
    } else {
        ca.name_constraints.join(", ")
    };
    let renewal = if !files.generate {
        format!("off ({GENERATE_SETTING}=false)")
    } else if !files.ca_key.exists() {
        format!("none: {} is absent", files.ca_key.display())
    } else if !is_ours(files) {
        "none: the leaf was not issued by the proxy (served as it is)".to_owned()
    } else {
        let from: OffsetDateTime = leaf.not_before + (leaf.not_after - leaf.not_before) * 2 / 3;
        format!(
            "automatic from {} (a third of the lifetime left), checked every {:?}",
            fmt_time(from.max(now)),
            files.renew_interval
        )
    };
    format!(
        "CA            {}\n\
         CA subject    {}\n\
         CA not after  {} ({} days left)\n\
         CA SHA-256    {}\n\
         May sign only {constraints}\n\
         Renewal       {renewal}\n",
        files.ca_cert.display(),
        ca.subject,
        fmt_time(ca.not_after),
        (ca.not_after - now).whole_days(),
        ca.fingerprint,
    )
}

/// Generate a self-signed pair into `dir` (created if missing) as `localhost.crt` and
/// `localhost.key` (mode 0600), each written atomically. Refuses to overwrite existing files; see
/// [`generate_into_with`] for `--force`.
pub fn generate_into(dir: &Path) -> Result<(PathBuf, PathBuf, CertInfo), CertError> {
    generate_into_with(dir, false)
}

/// [`generate_into`], overwriting existing files when `force` is set (a running proxy watching
/// `dir` picks the new pair up).
pub fn generate_into_with(
    dir: &Path,
    force: bool,
) -> Result<(PathBuf, PathBuf, CertInfo), CertError> {
    let cert = dir.join(CERT_NAME);
    let key = dir.join(KEY_NAME);
    if !force {
        for path in [&cert, &key] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(CertError::Exists {
                    file: FileRef {
                        setting: None,
                        path: path.clone(),
                    },
                });
            }
        }
    }
    let info = generate_pair(&cert, &key, false)?;
    Ok((cert, key, info))
}
