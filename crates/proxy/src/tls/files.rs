//! The keypair's two files: the settings that name them, which of them exist, and the one error
//! type of the TLS side, each variant naming the setting and the path it is about.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use common::tls::TlsError;
use time::OffsetDateTime;

use crate::config::{TlsFiles, settings};

/// Setting naming the certificate chain file (PEM, leaf first, then intermediates).
pub const CERT_SETTING: &str = settings::TLS_CERT.name();
/// Setting naming the private key file (PEM).
pub const KEY_SETTING: &str = settings::TLS_KEY.name();
/// Setting allowing a self-signed pair to be generated when both files are absent.
pub const GENERATE_SETTING: &str = settings::TLS_GENERATE.name();
/// Setting listing the names a generated leaf is for.
pub const NAMES_SETTING: &str = settings::TLS_NAMES.name();
/// A file an error is about: the setting that names it (when it came from one) and its path.
#[derive(Debug, Clone)]
pub struct FileRef {
    pub setting: Option<&'static str>,
    pub path: PathBuf,
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.setting {
            Some(s) => write!(f, "{s}={}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// A keypair problem. Every variant names the setting and the path it is about.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Unreadable or unparsable file, unsupported key, or a key that doesn't match the certificate.
    #[error("{setting}={source}")]
    Invalid {
        setting: &'static str,
        #[source]
        source: Box<TlsError>,
    },
    #[error(
        "{CERT_SETTING}={}: the certificate expired on {not_after} ({days_ago} days ago); \
         replace the pair",
        path.display()
    )]
    Expired {
        path: PathBuf,
        not_after: String,
        days_ago: i64,
    },
    #[error("{present} exists but {missing} does not; {hint}")]
    HalfPair {
        present: FileRef,
        missing: FileRef,
        hint: &'static str,
    },
    #[error(
        "no TLS keypair: {CERT_SETTING}={} and {KEY_SETTING}={} do not exist and \
         {GENERATE_SETTING}=false; provide both files or allow generation",
        cert.display(),
        key.display()
    )]
    Missing { cert: PathBuf, key: PathBuf },
    #[error("{file}: cannot check the file: {source}")]
    Stat {
        file: FileRef,
        #[source]
        source: io::Error,
    },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: FileRef,
        #[source]
        source: io::Error,
    },
    #[error("{file}: already exists; refusing to overwrite it (use --force)")]
    Exists { file: FileRef },
    #[error("{file}: cannot generate: {source}")]
    Generate {
        file: FileRef,
        #[source]
        source: Box<TlsError>,
    },
    /// `ca.crt` or `ca.key` is there but unusable (the reason names the file).
    #[error(
        "cannot use the development CA: {reason}; restore {}, or delete ca.crt, ca.key and the \
         leaf pair in its folder to have a new CA created (and trust that one instead)",
        path.display()
    )]
    Ca { path: PathBuf, reason: String },
    /// A name of `PROXY_TLS_NAMES` lies outside what the existing CA may sign for.
    #[error(
        "{NAMES_SETTING}: {name} is not a name the development CA {} may sign for ({reason}). \
         Its name constraints are fixed when it is created: remove {name} from \
         {NAMES_SETTING}, or delete ca.crt, ca.key and the leaf pair in its folder to create a \
         new CA for the new names (and trust that one instead)",
        ca.display()
    )]
    NameOutsideCa {
        name: String,
        ca: PathBuf,
        reason: String,
    },
    #[error(
        "{}: no development CA here yet. Start the proxy once with an empty folder and \
         {GENERATE_SETTING}=true: it creates the CA and a leaf signed by it",
        path.display()
    )]
    NoCa { path: PathBuf },
}

/// Which of the two files exist.
pub(super) fn presence(files: &TlsFiles) -> Result<(bool, bool), CertError> {
    let exists = |setting, path: &Path| match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CertError::Stat {
            file: file_ref(setting, path, true),
            source,
        }),
    };
    Ok((
        exists(CERT_SETTING, &files.cert)?,
        exists(KEY_SETTING, &files.key)?,
    ))
}

pub(super) fn half_pair(files: &TlsFiles, cert_present: bool) -> CertError {
    let cert = file_ref(CERT_SETTING, &files.cert, true);
    let key = file_ref(KEY_SETTING, &files.key, true);
    let hint = if files.generate {
        "provide the matching file, or remove both to have a new pair issued by the development CA"
    } else {
        "provide the matching file"
    };
    let (present, missing) = if cert_present {
        (cert, key)
    } else {
        (key, cert)
    };
    CertError::HalfPair {
        present,
        missing,
        hint,
    }
}

pub(super) fn file_ref(setting: &'static str, path: &Path, named: bool) -> FileRef {
    FileRef {
        setting: named.then_some(setting),
        path: path.to_owned(),
    }
}

/// `2026-11-29T14:18:30Z`.
pub(super) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
