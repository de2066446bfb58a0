//! `proxy cert` helpers and keypair generation: describe the pair that would be served, and
//! write a new self-signed pair atomically (key mode 0600).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::tls::CertInfo;
use time::OffsetDateTime;

use super::{
    CERT_SETTING, CertError, FileRef, KEY_SETTING, SELF_SIGNED_DAYS, SELF_SIGNED_NAMES, TlsFiles,
    file_ref, fmt_time, half_pair, presence, validate,
};
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

/// Generate a self-signed pair and write it to `cert` and `key` (key first, mode 0600; both
/// atomically). `named` says whether the paths came from the settings (for error messages).
pub(super) fn generate_pair(cert: &Path, key: &Path, named: bool) -> Result<CertInfo, CertError> {
    let cert_ref = file_ref(CERT_SETTING, cert, named);
    let key_ref = file_ref(KEY_SETTING, key, named);
    let failed = |source| CertError::Generate {
        file: cert_ref.clone(),
        source: Box::new(source),
    };
    let ss = common::tls::self_signed(&SELF_SIGNED_NAMES, SELF_SIGNED_DAYS).map_err(failed)?;
    let info = ss.keypair.leaf_info(cert).map_err(failed)?;
    write_atomic(key_ref, ss.key_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_atomic(cert_ref, ss.cert_pem.as_bytes(), 0o644) {
        let _ = fs::remove_file(key);
        return Err(e);
    }
    Ok(info)
}

/// Write `bytes` to a temporary file next to `file` (created with `mode`), fsync, rename over.
fn write_atomic(file: FileRef, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    let path = &file.path;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let attempt = || -> io::Result<PathBuf> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("not a file path"))?;
        fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{:08x}",
            name.to_string_lossy(),
            std::process::id(),
            fastrand::u32(..)
        ));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    };
    attempt().map_err(|source| CertError::Write {
        file: file.clone(),
        source,
    })?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
