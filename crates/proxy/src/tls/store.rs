//! The keypair store: the pair new handshakes get, loaded (or issued on a fresh checkout),
//! validated, and swapped atomically on reload, keeping the last good pair when a new one is
//! broken. Every error names the setting and the file.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use common::tls::{CertInfo, Keypair, TlsError};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

pub(super) use super::files::fmt_time;
use super::files::{CERT_SETTING, CertError, KEY_SETTING};
use super::leaf::provision;
use super::ondemand::OnDemand;
use crate::config::TlsFiles;

/// A certificate expiring within this many days is warned about at start, on reload and daily.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// What a successful [`CertStore::reload`] did.
#[derive(Debug, Clone)]
pub enum Reloaded {
    /// The files hold the pair already served.
    Unchanged,
    /// A new pair now serves new handshakes.
    Changed {
        previous_fingerprint: String,
        info: Box<CertInfo>,
        warnings: Vec<String>,
    },
}

/// A validated pair, as served.
#[derive(Debug)]
pub(super) struct Served {
    pub(super) certified: Arc<CertifiedKey>,
    pub(super) info: CertInfo,
}

/// The certificate new handshakes get; swapped atomically on reload.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    pub(super) current: ArcSwap<Served>,
    reload_lock: Mutex<()>,
    last_error: Mutex<Option<String>>,
    changes: AtomicU64,
    /// Leaves issued on demand for names the pair does not cover.
    pub(super) on_demand: OnDemand,
}

impl CertStore {
    /// Load and validate the pair. With `generate` on: in a fresh folder (both files absent)
    /// create the development CA (unless `ca.crt`/`ca.key` are there) and a leaf it signs; renew
    /// the proxy's own leaf when it is due (see `renew`); with the CA there, load the leaves
    /// issued on demand (see `ondemand`).
    pub fn open(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, CertError> {
        let provisioned = provision(&files, OffsetDateTime::now_utc())?;
        let (served, warnings) = validate(&files, &provider, OffsetDateTime::now_utc())?;
        provisioned.log(&files, &served.info);
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let on_demand = OnDemand::open(&files, provider.clone(), &served.info);
        Ok(Arc::new(CertStore {
            files,
            provider,
            current: ArcSwap::from_pointee(served),
            reload_lock: Mutex::new(()),
            last_error: Mutex::new(None),
            changes: AtomicU64::new(0),
            on_demand,
        }))
    }

    /// Re-read the files; on any problem the old pair keeps serving and the error is returned
    /// (and remembered, see [`CertStore::last_reload_error`]).
    pub fn reload(&self) -> Result<Reloaded, CertError> {
        let _serial = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = validate(&self.files, &self.provider, OffsetDateTime::now_utc());
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            result.as_ref().err().map(ToString::to_string);
        let (served, warnings) = result?;
        let old = self.current.load();
        if old.certified.cert == served.certified.cert {
            return Ok(Reloaded::Unchanged);
        }
        let previous_fingerprint = old.info.fingerprint.clone();
        let info = Box::new(served.info.clone());
        self.current.store(Arc::new(served));
        self.changes.fetch_add(1, Ordering::Relaxed);
        Ok(Reloaded::Changed {
            previous_fingerprint,
            info,
            warnings,
        })
    }

    /// SHA-256 fingerprint of the leaf now served.
    pub fn fingerprint(&self) -> String {
        self.current.load().info.fingerprint.clone()
    }

    /// Facts about the leaf now served.
    pub fn info(&self) -> CertInfo {
        self.current.load().info.clone()
    }

    /// The files this store reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Why the latest reload was refused, or `None` when it succeeded (or none happened yet).
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times a reload swapped in a different pair.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }
}

impl ResolvesServerCert for CertStore {
    /// The leaf issued on demand for the server name, else the pair's.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let issued = hello.server_name().and_then(|n| self.on_demand.get(n));
        issued.or_else(|| Some(Arc::clone(&self.current.load().certified)))
    }
}

/// Read and check the pair: parsable, key matches, leaf not expired. Returns warnings for an
/// expiry within [`EXPIRY_WARNING_DAYS`], a not-yet-valid leaf, an expired intermediate, or a
/// chain out of order.
pub(super) fn validate(
    files: &TlsFiles,
    provider: &CryptoProvider,
    now: OffsetDateTime,
) -> Result<(Served, Vec<String>), CertError> {
    let classify = |source: TlsError| {
        let setting = match &source {
            TlsError::Read { path, .. } if *path == files.key => KEY_SETTING,
            TlsError::BadKey { .. }
            | TlsError::UnsupportedKey { .. }
            | TlsError::Mismatch { .. } => KEY_SETTING,
            _ => CERT_SETTING,
        };
        CertError::Invalid {
            setting,
            source: Box::new(source),
        }
    };
    let pair = Keypair::load(&files.cert, &files.key).map_err(classify)?;
    let mut infos = pair
        .chain
        .iter()
        .map(|der| CertInfo::parse(der, &files.cert))
        .collect::<Result<Vec<_>, _>>()
        .map_err(classify)?;
    let certified = pair
        .certified(provider, &files.cert, &files.key)
        .map_err(classify)?;
    let leaf = &infos[0];
    if leaf.expired_at(now) {
        return Err(CertError::Expired {
            path: files.cert.clone(),
            not_after: fmt_time(leaf.not_after),
            days_ago: (now - leaf.not_after).whole_days(),
        });
    }
    let warnings = warnings(&infos, &files.cert, now);
    // `Keypair` guarantees a non-empty chain, so `infos[0]` (the leaf) exists.
    let info = infos.swap_remove(0);
    Ok((
        Served {
            certified: Arc::new(certified),
            info,
        },
        warnings,
    ))
}

/// What is served but worth a warning: a leaf expiring within [`EXPIRY_WARNING_DAYS`] or not
/// valid yet, a chain out of order, an expired intermediate. `infos` is leaf first.
fn warnings(infos: &[CertInfo], path: &Path, now: OffsetDateTime) -> Vec<String> {
    let cert = path.display();
    let mut warnings = Vec::new();
    let Some(leaf) = infos.first() else {
        return warnings;
    };
    let days_left = (leaf.not_after - now).whole_days();
    if days_left < EXPIRY_WARNING_DAYS {
        warnings.push(format!(
            "{CERT_SETTING}={cert}: the certificate expires in {days_left} days (on {}); \
             replace the pair soon",
            fmt_time(leaf.not_after)
        ));
    }
    if leaf.not_before > now {
        warnings.push(format!(
            "{CERT_SETTING}={cert}: the certificate is not valid before {}; clients will refuse \
             it until then (check the clock)",
            fmt_time(leaf.not_before)
        ));
    }
    for (i, pair) in infos.windows(2).enumerate() {
        if pair[0].issuer != pair[1].subject {
            warnings.push(format!(
                "{CERT_SETTING}={cert}: certificate #{} ({}) was not issued by certificate #{} \
                 ({}); the file must hold the leaf first, then each intermediate in order",
                i + 1,
                pair[0].subject,
                i + 2,
                pair[1].subject
            ));
        }
    }
    for (i, info) in infos.iter().enumerate().skip(1) {
        if info.expired_at(now) {
            warnings.push(format!(
                "{CERT_SETTING}={cert}: intermediate certificate #{} ({}) expired on {}",
                i + 1,
                info.subject,
                fmt_time(info.not_after)
            ));
        }
    }
    warnings
}
