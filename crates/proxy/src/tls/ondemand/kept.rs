//! Issued leaves on disk: `names/NAME.crt` and `names/NAME.key` (0600) beside the CA, written
//! after the handshakes waiting for them went on, loaded again at start (valid, not due, not
//! covered by the proxy's leaf, at most the cache size), and renewed with the proxy's leaf.

use std::path::PathBuf;
use std::sync::Arc;

use common::tls::CertInfo;
use time::OffsetDateTime;

use super::super::ca::Pem;
use super::super::files::{CERT_SETTING, KEY_SETTING, file_ref};
use super::super::generate::write_atomic;
use super::super::store::{Served, validate};
use super::{OnDemand, Signer, covers, dns_name};
use crate::config::settings::TLS_ISSUE_CACHE;
use crate::config::{TlsFiles, TlsName};

impl OnDemand {
    /// `names/NAME.crt` and `names/NAME.key`.
    pub(in crate::tls) fn paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = &self.0.dir;
        (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        )
    }

    /// Write the pair, key first (0600), each file atomically.
    pub(super) fn write(&self, name: &str, pem: &Pem) -> Result<(), String> {
        let (crt, key) = self.paths(name);
        write_atomic(
            file_ref(KEY_SETTING, &key, false),
            pem.key.as_bytes(),
            0o600,
        )
        .and_then(|()| {
            write_atomic(
                file_ref(CERT_SETTING, &crt, false),
                pem.cert.as_bytes(),
                0o644,
            )
        })
        .map_err(|e| e.to_string())
    }

    /// Serve again the leaves in `names/` that are valid for their name, not due, and not
    /// covered by the proxy's `leaf`; at most the cache size, by name.
    pub(super) fn load(&self, files: &TlsFiles, leaf: &CertInfo) {
        let Some(signer) = self.0.signer.load_full() else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&self.0.dir) else {
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".crt").map(str::to_owned))
            .filter(|n| dns_name(n).as_deref() == Some(n.as_str()) && signer.may_sign(n))
            .filter(|n| !leaf.sans.iter().any(|san| covers(san, n)))
            .collect();
        names.sort();
        let now = OffsetDateTime::now_utc();
        for name in names {
            if self.0.cache.read().map_or(0, |c| c.len()) >= self.0.max {
                tracing::warn!(
                    "{}: more certificates than {}={}; {name} and the names \
                     after it are not loaded",
                    self.0.dir.display(),
                    TLS_ISSUE_CACHE.name(),
                    self.0.max
                );
                break;
            }
            match self.load_one(files, &signer, &name, now) {
                Ok(served) => self.insert(&name, served),
                Err(why) => tracing::info!("{name}: {why}; a new one is issued when asked for"),
            }
        }
    }

    fn load_one(
        &self,
        files: &TlsFiles,
        signer: &Signer,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<Served, String> {
        let (cert, key) = self.paths(name);
        let mut one = files.clone();
        (one.cert, one.key) = (cert, key);
        let (served, _warnings) =
            validate(&one, &self.0.provider, now).map_err(|e| e.to_string())?;
        match due(signer, name, &served, now) {
            Some(why) => Err(why),
            None => Ok(served),
        }
    }

    /// Renew every issued leaf that is due (see [`due`]); runs with the proxy leaf's renewal.
    pub(in crate::tls) fn renew_due(&self, files: &TlsFiles) {
        if self.0.max == 0 || self.0.rate == 0 || !files.generate {
            return;
        }
        self.refresh_ca(files);
        let Some(signer) = self.0.signer.load_full() else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        let snapshot: Vec<(String, Arc<Served>)> = {
            let cache = self.0.cache.read().unwrap_or_else(|e| e.into_inner());
            cache
                .iter()
                .map(|(n, s)| (n.clone(), Arc::clone(s)))
                .collect()
        };
        for (name, served) in snapshot {
            let Some(why) = due(&signer, &name, &served, now) else {
                continue;
            };
            match self.mint(&signer, &name, now) {
                Ok((pem, fresh)) => {
                    let fingerprint = fresh.info.fingerprint.clone();
                    self.insert(&name, fresh);
                    tracing::info!(
                        "renewed the TLS certificate for {name} ({why}): SHA-256 fingerprint \
                         {fingerprint}"
                    );
                    if let Err(e) = self.write(&name, &pem) {
                        tracing::warn!("the TLS certificate for {name} is not kept on disk: {e}");
                    }
                }
                Err(e) => tracing::error!("cannot renew the TLS certificate for {name}: {e}"),
            }
        }
    }
}

/// Why an issued leaf must be replaced: a third of its life left, or the CA no longer accepts
/// it for `name` (another CA, expired).
pub(super) fn due(
    signer: &Signer,
    name: &str,
    served: &Served,
    now: OffsetDateTime,
) -> Option<String> {
    let tls_name = TlsName::Dns(name.to_owned());
    if let Err(e) = signer.ca.verify(&served.certified.cert[0], &tls_name, now) {
        return Some(format!("it does not verify against the CA: {e}"));
    }
    let (info, left) = (&served.info, served.info.not_after - now);
    (left * 3 < info.not_after - info.not_before).then(|| {
        format!(
            "less than a third of its lifetime left ({} days)",
            left.whole_days()
        )
    })
}

/// Most issued names `proxy cert` lists one by one.
const LISTED: usize = 20;

/// For `proxy cert`: the certificates issued on demand in `names/`, one line each (read-only).
pub(in crate::tls) fn describe_issued(files: &TlsFiles, now: OffsetDateTime) -> String {
    let dir = files.names_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return String::new();
    };
    let mut crts: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    crts.sort();
    let mut out = String::new();
    for crt in crts.iter().take(LISTED) {
        let info = common::tls::load_certs(crt)
            .ok()
            .and_then(|chain| CertInfo::parse(&chain[0], crt).ok());
        let line = match info {
            Some(i) => format!(
                "{} (until {}, {} days left)",
                i.sans.join(", "),
                super::super::files::fmt_time(i.not_after),
                (i.not_after - now).whole_days()
            ),
            None => format!("{}: unreadable, reissued when asked for", crt.display()),
        };
        out.push_str(&format!("Issued        {line}\n"));
    }
    if crts.len() > LISTED {
        out.push_str(&format!(
            "Issued        ... and {} more in {}\n",
            crts.len() - LISTED,
            dir.display()
        ));
    }
    out
}
