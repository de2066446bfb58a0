//! `proxy cert`: describe the pair that would be served, and write a new self-signed pair into
//! a folder.

use std::fs;
use std::path::{Path, PathBuf};

use common::tls::CertInfo;
use time::OffsetDateTime;

use super::files::{CERT_SETTING, CertError, FileRef, KEY_SETTING, half_pair, presence};
use super::generate::{SELF_SIGNED_DAYS, SELF_SIGNED_NAMES, generate_pair};
use super::store::{fmt_time, validate};
use crate::config::TlsFiles;
use crate::config::defaults::{CERT_NAME, KEY_NAME};

/// Human-readable facts about the pair the proxy would serve (for `proxy cert`): subject, SANs,
/// validity, days left, SHA-256 fingerprint, chain length, and any warnings. A pair the proxy
/// would refuse is an error; a fresh folder describes the pair that start-up would generate.
pub fn describe(files: &TlsFiles) -> Result<String, CertError> {
    match presence(files)? {
        (true, true) => {}
        (false, false) if files.generate => {
            return Ok(format!(
                "No keypair yet: {CERT_SETTING}={} and {KEY_SETTING}={} do not exist.\n\
                 On start the proxy generates a self-signed ECDSA P-256 certificate for {} \
                 (valid {SELF_SIGNED_DAYS} days) and writes it there.\n",
                files.cert.display(),
                files.key.display(),
                SELF_SIGNED_NAMES.join(", ")
            ));
        }
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
         Chain         {chain} certificate{} ({})\n",
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
    );
    for w in warnings {
        out.push_str(&format!("Warning       {w}\n"));
    }
    Ok(out)
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
