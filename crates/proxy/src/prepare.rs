//! `proxy prepare-dirs --for UID:GID`: the one-shot step before the first start that makes the
//! folders the proxy writes (`PROXY_LOG_DIR`, and the keypair's folder while
//! `PROXY_TLS_GENERATE` is on) writable for the user the proxy will run as. Run as root with
//! only CAP_CHOWN and CAP_FOWNER (the compose file's `init` service); the folders keep their
//! owner: only their group becomes the proxy's and gains rwx, and only when needed.

use std::fmt;
use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::config::Config;
use crate::config::settings::{LOG_DIR, TLS_CERT, TLS_KEY};

/// The user the proxy runs as: `UID:GID`, numeric (the compose file's `user:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl FromStr for RunAs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}': expected UID:GID, two numbers (e.g. 1000:1000)");
        let (uid, gid) = s.split_once(':').ok_or_else(bad)?;
        Ok(RunAs {
            uid: uid.trim().parse().map_err(|_| bad())?,
            gid: gid.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for RunAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)
    }
}

/// A folder that could not be prepared; the message names the setting and the folder.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{setting}={}: cannot {action}: {source}{}", path.display(), hint(source))]
    Io {
        setting: &'static str,
        path: PathBuf,
        action: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{setting}={}: still not writable by {who} after the change (owner {uid}, group {gid}, \
         mode {mode:04o}): fix the folder on the host, e.g. `sudo chown {}:{} FOLDER`",
        path.display(), who.uid, who.gid
    )]
    StillNotWritable {
        setting: &'static str,
        path: PathBuf,
        who: RunAs,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

fn hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        " (run this as root with CAP_CHOWN and CAP_FOWNER, as the compose file's `init` service does)"
    } else {
        ""
    }
}

/// The folders the proxy writes, each with the setting that names it.
pub fn folders(config: &Config) -> Vec<(&'static str, PathBuf)> {
    let mut out = vec![(LOG_DIR.name(), config.logs.dir.clone())];
    if config.tls.generate {
        for (setting, file) in [
            (TLS_CERT.name(), &config.tls.cert),
            (TLS_KEY.name(), &config.tls.key),
        ] {
            let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            if !out.iter().any(|(_, d)| *d == dir) {
                out.push((setting, dir));
            }
        }
    }
    out
}

/// Can `who` create files in a folder with this owner, group and mode? (Docker gives the
/// container's process its primary group only, so supplementary groups do not count.)
pub fn writable_by(who: RunAs, uid: u32, gid: u32, mode: u32) -> bool {
    let wx = if who.uid == 0 {
        return true;
    } else if who.uid == uid {
        (mode >> 6) & 0o3
    } else if who.gid == gid {
        (mode >> 3) & 0o3
    } else {
        mode & 0o3
    };
    wx == 0o3
}

/// Make each folder writable for `who`; one line per folder saying what was done.
pub fn prepare_dirs(config: &Config, who: RunAs) -> Result<String, PrepareError> {
    let mut report = String::new();
    for (setting, dir) in folders(config) {
        report += &prepare_one(setting, &dir, who)?;
        report.push('\n');
    }
    Ok(report)
}

fn prepare_one(setting: &'static str, dir: &Path, who: RunAs) -> Result<String, PrepareError> {
    let io_err = |action: &str, source| PrepareError::Io {
        setting,
        path: dir.to_path_buf(),
        action: action.to_string(),
        source,
    };
    let named = format!("{setting}={}", dir.display());
    fs::create_dir_all(dir).map_err(|e| io_err("create the folder", e))?;
    let meta = fs::metadata(dir).map_err(|e| io_err("read the folder's owner and mode", e))?;
    if !meta.is_dir() {
        let e = io::Error::new(io::ErrorKind::NotADirectory, "not a folder");
        return Err(io_err("use it", e));
    }
    let (uid, gid, mode) = (meta.uid(), meta.gid(), meta.mode() & 0o7777);
    if writable_by(who, uid, gid, mode) {
        return Ok(format!(
            "{named}: already writable by {who} (owner {uid}, group {gid}, mode {mode:04o})"
        ));
    }
    let (new_gid, new_mode) = if who.uid == uid {
        (gid, mode | 0o700)
    } else {
        (who.gid, mode | 0o070)
    };
    if new_gid != gid {
        std::os::unix::fs::chown(dir, None, Some(new_gid))
            .map_err(|e| io_err(&format!("change the group to {new_gid}"), e))?;
    }
    // chown(2) may clear set-id bits: the mode is set from what it was, plus the new rights
    fs::set_permissions(dir, Permissions::from_mode(new_mode))
        .map_err(|e| io_err(&format!("set the mode {new_mode:04o}"), e))?;
    let meta = fs::metadata(dir).map_err(|e| io_err("read the folder's owner and mode", e))?;
    let (uid, gid, mode) = (meta.uid(), meta.gid(), meta.mode() & 0o7777);
    if !writable_by(who, uid, gid, mode) {
        return Err(PrepareError::StillNotWritable {
            setting,
            path: dir.to_path_buf(),
            who,
            uid,
            gid,
            mode,
        });
    }
    Ok(format!(
        "{named}: made writable by {who} (owner {uid} kept, group {gid}, mode {mode:04o})"
    ))
}

#[cfg(test)]
mod tests;
