//! Certificates issued on demand: a handshake whose server name lies under the development CA's
//! name constraints and that the proxy's leaf does not cover gets a leaf of its own. The
//! ClientHello is read first (`BeforeHandshake`), the issuance runs on a blocking thread, one
//! per name at a time (every handshake asking for that name waits on the same one, no other
//! handshake waits), at most `PROXY_TLS_ISSUE_RATE` a minute and for at most
//! `PROXY_TLS_ISSUE_CACHE` names. A name refused by a bound, outside the constraints or not a DNS
//! name gets the proxy's leaf. Issued leaves are kept in memory and written to
//! `names/NAME.crt` and `names/NAME.key` (0600) beside the CA, loaded again at start (a restart
//! does not reissue), and renewed with the proxy's leaf.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use common::server::{BeforeHandshake, Pending};
use common::tls::{CertInfo, Keypair};
use futures_util::FutureExt;
use futures_util::future::Shared;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use super::ca::{DevCa, Pem};
use super::files::fmt_time;
use super::leaf::ca_presence;
use super::store::{CertStore, Served};
use crate::config::settings::{TLS_ISSUE_CACHE, TLS_ISSUE_RATE};
use crate::config::{TlsFiles, TlsName, TlsNames};

mod kept;

pub(super) use kept::describe_issued;
#[cfg(test)]
mod tests;

/// A refusal (bound reached) is logged at most this often.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// The leaves issued on demand; cheap to clone (one shared state).
#[derive(Clone)]
pub(super) struct OnDemand(Arc<Inner>);

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand")
            .field("dir", &self.0.dir)
            .field("names", &self.names().len())
            .finish()
    }
}

struct Inner {
    /// The CA and what it may sign; `None`: no `ca.key`, nothing is issued.
    signer: ArcSwapOption<Signer>,
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    /// `PROXY_TLS_ISSUE_CACHE`
    max: usize,
    /// `PROXY_TLS_ISSUE_RATE`, per minute.
    rate: u32,
    cache: RwLock<HashMap<String, Arc<Served>>>,
    state: Mutex<State>,
    /// Test hook: each issuance first sleeps this many milliseconds.
    delay_ms: AtomicU64,
}

/// The development CA with its DNS name constraints, as `CertInfo` lists them.
struct Signer {
    ca: DevCa,
    permitted: Vec<String>,
    excluded: Vec<String>,
}

struct State {
    /// Issuances running, by name: every handshake for the name awaits the same one.
    inflight: HashMap<String, Shared<Pending>>,
    /// Token bucket for `PROXY_TLS_ISSUE_RATE`.
    tokens: f64,
    refilled: Instant,
    refused: u64,
    noticed: Option<Instant>,
}

impl Signer {
    fn new(ca: DevCa) -> Signer {
        let dns = |prefix: &str| {
            ca.info
                .name_constraints
                .iter()
                .filter_map(|c| c.strip_prefix(prefix))
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let (permitted, excluded) = (dns("DNS:"), dns("excluded DNS:"));
        Signer {
            ca,
            permitted,
            excluded,
        }
    }

    /// Whether the CA's constraints allow `name` (a subtree covers itself and every name below).
    fn may_sign(&self, name: &str) -> bool {
        let under = |base: &String| name == base || name.ends_with(&format!(".{base}"));
        self.permitted.iter().any(under) && !self.excluded.iter().any(under)
    }
}

/// `name` as a DNS name the proxy may issue for: valid, lower case, no wildcard, no IP.
fn dns_name(name: &str) -> Option<String> {
    match name.parse::<TlsName>() {
        Ok(TlsName::Dns(d)) if !d.starts_with("*.") => Some(d),
        _ => None,
    }
}

/// Whether a certificate SAN `san` covers `name` (exactly, or as a one-label wildcard).
fn covers(san: &str, name: &str) -> bool {
    if san.eq_ignore_ascii_case(name) {
        return true;
    }
    match (san.strip_prefix("*."), name.split_once('.')) {
        (Some(base), Some((label, rest))) => !label.is_empty() && rest.eq_ignore_ascii_case(base),
        _ => false,
    }
}

impl OnDemand {
    /// Ready to issue when generation is on and `ca.crt`/`ca.key` load; the leaves already in
    /// `names/` that are valid and not due are served again (at most the cache size).
    pub(super) fn open(files: &TlsFiles, provider: Arc<CryptoProvider>, leaf: &CertInfo) -> Self {
        let on = OnDemand::new(files, provider);
        if on.0.max == 0 || on.0.rate == 0 || !files.generate {
            return on;
        }
        on.refresh_ca(files);
        on.load(files, leaf);
        on
    }

    /// Nothing issued yet, no CA.
    fn new(files: &TlsFiles, provider: Arc<CryptoProvider>) -> Self {
        OnDemand(Arc::new(Inner {
            signer: ArcSwapOption::empty(),
            dir: files.names_dir(),
            provider,
            max: files.issue_cache,
            rate: files.issue_rate,
            cache: RwLock::new(HashMap::new()),
            state: Mutex::new(State {
                inflight: HashMap::new(),
                tokens: f64::from(files.issue_rate),
                refilled: Instant::now(),
                refused: 0,
                noticed: None,
            }),
            delay_ms: AtomicU64::new(0),
        }))
    }

    #[cfg(test)]
    fn for_tests() -> Self {
        let files = TlsFiles::in_dir(std::path::Path::new("/nonexistent"));
        OnDemand::new(&files, common::tls::provider())
    }

    /// (Re)load the CA; without `ca.key` (or with a broken one) nothing more is issued.
    pub(super) fn refresh_ca(&self, files: &TlsFiles) {
        let signer = match ca_presence(files) {
            Ok((true, true)) => match DevCa::load(files) {
                Ok(ca) => Some(Arc::new(Signer::new(ca))),
                Err(e) => {
                    tracing::warn!("no certificates issued on demand: {e}");
                    None
                }
            },
            _ => None,
        };
        self.0.signer.store(signer);
    }

    /// Whether handshakes may get a certificate issued on demand.
    pub(super) fn enabled(&self) -> bool {
        self.0.max > 0 && self.0.rate > 0 && self.0.signer.load().is_some()
    }

    /// The leaf issued for `name`, if any.
    pub(super) fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let cache = self.0.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(name).map(|s| Arc::clone(&s.certified))
    }

    /// The names with a leaf issued on demand, and their leaves' facts, sorted.
    pub(super) fn names(&self) -> Vec<(String, CertInfo)> {
        let cache = self.0.cache.read().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = cache
            .iter()
            .map(|(n, s)| (n.clone(), s.info.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// What a handshake for `name` (not covered by the proxy's leaf) waits on: `None` when its
    /// leaf is there already, or when none will be issued (it gets the proxy's leaf).
    fn request(&self, name: &str) -> Option<Pending> {
        let signer = self.0.signer.load_full()?;
        if self.get(name).is_some() {
            return None;
        }
        let Some(name) = dns_name(name).filter(|n| signer.may_sign(n)) else {
            tracing::debug!(
                name,
                "TLS server name outside the CA's names: the proxy's leaf"
            );
            return None;
        };
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = state.inflight.get(&name) {
            return Some(Box::pin(running.clone()));
        }
        if self.get(&name).is_some() {
            return None;
        }
        let held = self.0.cache.read().map_or(0, |c| c.len()) + state.inflight.len();
        let refusal = if held >= self.0.max {
            Some(format!(
                "{}={} names hold one",
                TLS_ISSUE_CACHE.name(),
                self.0.max
            ))
        } else if !state.take_token(self.0.rate) {
            Some(format!(
                "{}={} a minute reached",
                TLS_ISSUE_RATE.name(),
                self.0.rate
            ))
        } else {
            None
        };
        if let Some(why) = refusal {
            state.refuse(&name, &why);
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let waiting: Pending = Box::pin(rx.map(drop));
        let shared = waiting.shared();
        state.inflight.insert(name.clone(), shared.clone());
        drop(state);
        let this = self.clone();
        // The issuance logs wherever the handshake's thread logs (a scoped test subscriber too).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        runtime.spawn_blocking(move || {
            tracing::dispatcher::with_default(&dispatch, || this.issue(name, signer, tx));
        });
        Some(Box::pin(shared))
    }

    /// Issue the leaf for `name` (a blocking thread), serve it, release the waiting handshakes,
    /// then write it to disk.
    fn issue(self, name: String, signer: Arc<Signer>, done: tokio::sync::oneshot::Sender<()>) {
        let running = Running(&self, &name);
        let delay = self.0.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let started = Instant::now();
        let minted = self.mint(&signer, &name, OffsetDateTime::now_utc());
        let (pem, served) = match minted {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot issue a TLS certificate for {name}: {e}");
                return;
            }
        };
        let took = started.elapsed();
        tracing::info!(
            "issued a TLS certificate for {name} on demand in {took:?}: valid until {}, SHA-256 \
             fingerprint {}",
            fmt_time(served.info.not_after),
            served.info.fingerprint,
        );
        self.insert(&name, served);
        drop(running);
        let _ = done.send(());
        if let Err(e) = self.write(&name, &pem) {
            tracing::warn!("the TLS certificate for {name} is not kept on disk: {e}");
        }
    }

    /// A new leaf for `name`, checked the way a client trusting only the CA checks it.
    fn mint(
        &self,
        signer: &Signer,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<(Pem, Served), String> {
        let tls_name = TlsName::Dns(name.to_owned());
        let (pem, der) = signer
            .ca
            .issue(&TlsNames(vec![tls_name.clone()]), now)
            .map_err(|e| e.to_string())?;
        signer
            .ca
            .verify(&der, &tls_name, now)
            .map_err(|e| format!("the CA's own check refused it: {e}"))?;
        let (crt, key) = self.paths(name);
        let pair = Keypair::from_pem(pem.cert.as_bytes(), &crt, pem.key.as_bytes(), &key)
            .map_err(|e| e.to_string())?;
        let certified = pair
            .certified(&self.0.provider, &crt, &key)
            .map_err(|e| e.to_string())?;
        let info = CertInfo::parse(&der, &crt).map_err(|e| e.to_string())?;
        let served = Served {
            certified: Arc::new(certified),
            info,
        };
        Ok((pem, served))
    }

    fn insert(&self, name: &str, served: Served) {
        let mut cache = self.0.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.insert(name.to_owned(), Arc::new(served));
    }

    pub(super) fn delay_for_tests(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.0.delay_ms.store(ms, Ordering::Relaxed);
    }
}

impl State {
    fn take_token(&mut self, rate: u32) -> bool {
        let per_second = f64::from(rate) / 60.0;
        let elapsed = self.refilled.elapsed().as_secs_f64();
        self.refilled = Instant::now();
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Count a refusal; say so at most every [`NOTICE_EVERY`].
    fn refuse(&mut self, name: &str, why: &str) {
        self.refused += 1;
        if self.noticed.is_some_and(|t| t.elapsed() < NOTICE_EVERY) {
            return;
        }
        tracing::warn!(
            "no TLS certificate issued for {name}: {why}; it gets the proxy's leaf ({} refused \
             since the last notice)",
            self.refused
        );
        self.refused = 0;
        self.noticed = Some(Instant::now());
    }
}

/// While an issuance runs: its entry in `inflight`, removed however the issuance ends.
struct Running<'a>(&'a OnDemand, &'a str);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = (self.0).0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.inflight.remove(self.1);
    }
}

impl CertStore {
    /// Whether the proxy's leaf covers `name`.
    fn leaf_covers(&self, name: &str) -> bool {
        self.current
            .load()
            .info
            .sans
            .iter()
            .any(|san| covers(san, name))
    }

    /// Whether handshakes may get a certificate issued on demand (the CA is here, generation is
    /// on, `PROXY_TLS_ISSUE_RATE` and `PROXY_TLS_ISSUE_CACHE` are not 0).
    pub fn issues_on_demand(&self) -> bool {
        self.on_demand.enabled()
    }

    /// The names with a certificate issued on demand (and those loaded from `names/`).
    pub fn issued_names(&self) -> Vec<(String, CertInfo)> {
        self.on_demand.names()
    }

    /// Test hook: every issuance first waits `delay` (on its blocking thread).
    #[doc(hidden)]
    pub fn delay_issuance_for_tests(&self, delay: Duration) {
        self.on_demand.delay_for_tests(delay);
    }

    /// The files of the leaf issued for `name`, whether or not it exists.
    pub fn issued_paths(&self, name: &str) -> (PathBuf, PathBuf) {
        self.on_demand.paths(name)
    }
}

impl BeforeHandshake for CertStore {
    fn before(&self, server_name: Option<&str>) -> Option<Pending> {
        let name = server_name?;
        if self.leaf_covers(name) {
            return None;
        }
        self.on_demand.request(name)
    }
}
