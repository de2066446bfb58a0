//! Reload triggers for [`CertStore`] besides SIGHUP (which `signals` owns): a debounced watch on
//! the keypair's folder(s) and a daily expiry check. Each reload re-reads through the configured
//! paths; a refused pair is logged and the previous one keeps serving.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use common::tls::CertInfo;

use super::store::{CertStore, EXPIRY_WARNING_DAYS, Reloaded, fmt_time};
use crate::config::TlsFiles;

/// Quiet time after the last change to a file before the pair is re-read.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(200);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Symlinks followed when collecting folders to watch (`..data` swaps, certbot `live/`).
const MAX_LINKS: usize = 8;

impl CertStore {
    /// Reload on changes in the keypair's folder(s), and warn daily about an upcoming expiry,
    /// until `shutdown` is cancelled. Call from within a Tokio runtime.
    pub fn spawn_watcher(self: &Arc<Self>, shutdown: CancellationToken) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                "TLS keypair watcher not started (no Tokio runtime); a new pair needs SIGHUP or a restart"
            );
            return;
        };
        let _entered = rt.enter();
        let (tx, rx) = mpsc::unbounded_channel();
        let watch = match FolderWatch::new(tx) {
            Ok(mut w) => {
                w.sync(self.files());
                Some(w)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot watch the TLS keypair folder ({e}); reload with SIGHUP or restart"
                );
                None
            }
        };
        rt.spawn(Arc::clone(self).watch_loop(watch, rx, shutdown));
    }

    async fn watch_loop(
        self: Arc<Self>,
        mut watch: Option<FolderWatch>,
        mut rx: mpsc::UnboundedReceiver<DebounceEventResult>,
        shutdown: CancellationToken,
    ) {
        let mut daily = tokio::time::interval_at(tokio::time::Instant::now() + DAY, DAY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(first) = rx.recv() => {
                    // Take everything already queued, so one change to both files is one reload.
                    let mut relevant = false;
                    let mut next = Some(first);
                    while let Some(batch) = next.take().or_else(|| rx.try_recv().ok()) {
                        match batch {
                            Ok(events) => relevant |= events.iter().any(|e| is_change(&e.kind)),
                            Err(errors) => {
                                for e in errors {
                                    tracing::warn!("TLS keypair folder watch: {e}");
                                }
                            }
                        }
                    }
                    if relevant {
                        self.reload_logged("folder change");
                        if let Some(w) = watch.as_mut() {
                            w.sync(self.files());
                        }
                    }
                }
                _ = daily.tick() => self.check_expiry(),
            }
        }
        tracing::debug!("TLS keypair watcher stopped");
    }

    /// Reload and log the outcome; `trigger` says what caused it (`SIGHUP`, `folder change`).
    pub fn reload_logged(&self, trigger: &str) {
        let was_refused = self.last_reload_error().is_some();
        match self.reload() {
            Ok(Reloaded::Changed {
                previous_fingerprint,
                info,
                warnings,
            }) => {
                tracing::info!(
                    "TLS keypair reloaded ({trigger}): subject {}, SANs [{}], valid until {}, \
                     SHA-256 fingerprint {} (was {previous_fingerprint})",
                    info.subject,
                    info.sans.join(", "),
                    fmt_time(info.not_after),
                    info.fingerprint,
                );
                for w in warnings {
                    tracing::warn!("{w}");
                }
            }
            Ok(Reloaded::Unchanged) if was_refused => tracing::info!(
                "TLS keypair files are valid again ({trigger}), still the pair served: SHA-256 \
                 fingerprint {}",
                self.fingerprint()
            ),
            Ok(Reloaded::Unchanged) => tracing::debug!("TLS keypair unchanged ({trigger})"),
            Err(e) => tracing::error!(
                "new TLS keypair refused ({trigger}), still serving SHA-256 fingerprint {}: {e}",
                self.fingerprint()
            ),
        }
    }

    /// Warn when the served certificate expires within [`EXPIRY_WARNING_DAYS`].
    fn check_expiry(&self) {
        match expiry_notice(&self.info(), self.files(), OffsetDateTime::now_utc()) {
            Some((true, text)) => tracing::error!("{text}"),
            Some((false, text)) => tracing::warn!("{text}"),
            None => {}
        }
    }
}

/// The daily notice for the served leaf, if any: `(expired, text)`.
fn expiry_notice(info: &CertInfo, files: &TlsFiles, now: OffsetDateTime) -> Option<(bool, String)> {
    let cert = files.cert.display();
    let days_left = (info.not_after - now).whole_days();
    if info.expired_at(now) {
        Some((
            true,
            format!(
                "the served TLS certificate ({cert}) expired on {}; replace the pair",
                fmt_time(info.not_after)
            ),
        ))
    } else if days_left < EXPIRY_WARNING_DAYS {
        Some((
            false,
            format!(
                "the served TLS certificate ({cert}) expires in {days_left} days (on {}); \
                 replace the pair soon",
                fmt_time(info.not_after)
            ),
        ))
    } else {
        None
    }
}

/// Whether an event can mean new content: anything but opening, reading or closing unwritten
/// (our own reads show up as those).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The folders being watched, kept in step with the configured paths and their symlink targets.
struct FolderWatch {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    dirs: BTreeSet<PathBuf>,
}

impl FolderWatch {
    fn new(
        tx: mpsc::UnboundedSender<DebounceEventResult>,
    ) -> Result<Self, notify_debouncer_full::notify::Error> {
        let debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
            let _ = tx.send(res);
        })?;
        Ok(FolderWatch {
            debouncer,
            dirs: BTreeSet::new(),
        })
    }

    /// Watch the folders the pair now lives in, and stop watching ones it left.
    fn sync(&mut self, files: &TlsFiles) {
        let want = folders(files);
        for gone in self.dirs.difference(&want) {
            let _ = self.debouncer.unwatch(gone);
        }
        let mut watched = BTreeSet::new();
        for dir in want {
            if self.dirs.contains(&dir) {
                watched.insert(dir);
                continue;
            }
            match self.debouncer.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!("watching {} for TLS keypair changes", dir.display());
                    watched.insert(dir);
                }
                Err(e) => tracing::warn!(
                    "cannot watch {} for TLS keypair changes: {e}; reload with SIGHUP",
                    dir.display()
                ),
            }
        }
        self.dirs = watched;
    }
}

/// The folders holding each configured path and every symlink on the way to the real file.
fn folders(files: &TlsFiles) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for start in [&files.cert, &files.key] {
        let mut path = start.clone();
        for _ in 0..=MAX_LINKS {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
                _ => PathBuf::from("."),
            };
            dirs.insert(fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone()));
            match fs::read_link(&path) {
                Ok(target) => path = dir.join(target),
                Err(_) => break,
            }
        }
    }
    dirs.retain(|d| Path::is_dir(d));
    dirs
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    use testkit::Pair;

    fn open(files: TlsFiles) -> Arc<CertStore> {
        CertStore::open(files, common::tls::provider()).expect("open")
    }

    /// A store on pair `a` in a fresh folder, with its watcher running.
    fn watched(dir: &Path, a: &Pair) -> (Arc<CertStore>, CancellationToken) {
        fs::write(dir.join("localhost.crt"), &a.cert).expect("write cert");
        fs::write(dir.join("localhost.key"), &a.key).expect("write key");
        let store = open(TlsFiles::in_dir(dir));
        let stop = CancellationToken::new();
        store.spawn_watcher(stop.clone());
        (store, stop)
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_fingerprint(store: &CertStore, want: &str) {
        wait_for("the new fingerprint", || store.fingerprint() == want).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_place_write_is_picked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (Pair::new("a.test"), Pair::new("b.test"));
        let (store, stop) = watched(dir.path(), &a);
        fs::write(dir.path().join("localhost.crt"), &b.cert).expect("write");
        fs::write(dir.path().join("localhost.key"), &b.key).expect("write");
        wait_fingerprint(&store, &b.fingerprint).await;
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rename_over_is_picked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (Pair::new("a.test"), Pair::new("b.test"));
        let (store, stop) = watched(dir.path(), &a);
        for (name, text) in [("localhost.key", &b.key), ("localhost.crt", &b.cert)] {
            let tmp = dir.path().join(format!("{name}.new"));
            fs::write(&tmp, text).expect("write");
            fs::rename(&tmp, dir.path().join(name)).expect("rename");
        }
        wait_fingerprint(&store, &b.fingerprint).await;
        stop.cancel();
    }

    /// Kubernetes secret volumes: `name -> ..data/name`, `..data -> ..<timestamp>`, and an update
    /// renames a new `..data` symlink over the old one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kubernetes_symlink_swap_is_picked_up_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let publish = |version: &str, p: &Pair| {
            let v = root.join(version);
            fs::create_dir(&v).expect("mkdir");
            fs::write(v.join("localhost.crt"), &p.cert).expect("write");
            fs::write(v.join("localhost.key"), &p.key).expect("write");
            std::os::unix::fs::symlink(version, root.join("..data_tmp")).expect("symlink");
            fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        };
        let (a, b, c) = (
            Pair::new("a.test"),
            Pair::new("b.test"),
            Pair::new("c.test"),
        );
        publish("..v1", &a);
        for name in ["localhost.crt", "localhost.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("link");
        }
        let store = open(TlsFiles::in_dir(root));
        assert_eq!(store.fingerprint(), a.fingerprint);
        let stop = CancellationToken::new();
        store.spawn_watcher(stop.clone());
        publish("..v2", &b);
        fs::remove_dir_all(root.join("..v1")).expect("rm old");
        wait_fingerprint(&store, &b.fingerprint).await;
        publish("..v3", &c);
        fs::remove_dir_all(root.join("..v2")).expect("rm old");
        wait_fingerprint(&store, &c.fingerprint).await;
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broken_pair_is_refused_then_a_good_one_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (
            Pair::new("a.test"),
            Pair::new("b.test"),
            Pair::new("c.test"),
        );
        let (store, stop) = watched(dir.path(), &a);
        // Mismatched: b's certificate with c's key.
        fs::write(dir.path().join("localhost.crt"), &b.cert).expect("write");
        fs::write(dir.path().join("localhost.key"), &c.key).expect("write");
        wait_for("the refusal", || store.last_reload_error().is_some()).await;
        let err = store.last_reload_error().unwrap_or_default();
        assert!(
            err.contains("PROXY_TLS_KEY=") && err.contains("does not match"),
            "{err}"
        );
        assert_eq!(store.fingerprint(), a.fingerprint);
        fs::write(dir.path().join("localhost.crt"), &c.cert).expect("write");
        wait_fingerprint(&store, &c.fingerprint).await;
        assert_eq!(store.last_reload_error(), None);
        stop.cancel();
    }

    #[test]
    fn daily_check_warns_within_14_days_and_errors_once_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(TlsFiles::in_dir(dir.path()));
        let (info, files) = (store.info(), store.files());
        let at = |days_before_end: i64| info.not_after - time::Duration::days(days_before_end);
        assert_eq!(expiry_notice(&info, files, at(30)), None);
        let (expired, text) = expiry_notice(&info, files, at(10)).expect("warning");
        assert!(!expired && text.contains("expires in 10 days"), "{text}");
        let (expired, text) = expiry_notice(&info, files, at(-1)).expect("error");
        assert!(expired && text.contains("expired on"), "{text}");
    }

    #[test]
    fn own_reads_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Any));
    }

    #[test]
    fn symlinked_files_watch_every_folder_on_the_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(dir.path()).expect("canon");
        let (tls, live, archive) = (root.join("tls"), root.join("live"), root.join("archive"));
        for d in [&tls, &live, &archive] {
            fs::create_dir(d).expect("mkdir");
        }
        fs::write(archive.join("cert1.pem"), "x").expect("write");
        std::os::unix::fs::symlink("../archive/cert1.pem", live.join("cert.pem")).expect("ln");
        std::os::unix::fs::symlink(live.join("cert.pem"), tls.join("localhost.crt")).expect("ln");
        let got = folders(&TlsFiles::in_dir(&tls));
        let want: BTreeSet<PathBuf> = [tls, live, archive].into_iter().collect();
        assert_eq!(got, want);
    }
}
