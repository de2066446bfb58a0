//! Writing keys and certificates atomically (key first with mode 0600; each file to a temporary
//! name, synced, renamed into place), and the self-signed pair of `proxy cert generate`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::tls::CertInfo;

use super::files::{CERT_SETTING, CertError, FileRef, KEY_SETTING, file_ref};

/// Names a generated self-signed certificate is valid for.
pub const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// Lifetime of a generated self-signed certificate.
pub const SELF_SIGNED_DAYS: i64 = 90;
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
pub(super) fn write_atomic(file: FileRef, bytes: &[u8], mode: u32) -> Result<(), CertError> {
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
