//! Every live reload (the TLS keypair, the error page): a debounced watch on the folders holding
//! some files and every symlink on the way to them ([`FolderWatch`]), and the one loop that
//! reloads a [`Reload`]able on a change that can mean new content ([`spawn_reloader`]). The rule
//! for every file: a reload re-reads through the configured paths, off the event loop; a file
//! that is deleted, unreadable or broken is refused with the reason logged, and what served
//! before serves on. A leaf: it knows nothing of what is watched.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Quiet time after the last change to a file before its owner is woken.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Symlinks followed when collecting folders to watch (`..data` swaps, certbot `live/`).
const MAX_LINKS: usize = 8;

pub(crate) use notify_debouncer_full::notify::Error as WatchError;

/// The folders being watched, kept in step with the owner's paths and their symlink targets.
pub(crate) struct FolderWatch {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    rx: mpsc::UnboundedReceiver<DebounceEventResult>,
    dirs: BTreeSet<PathBuf>,
    /// What is watched, for the log lines ("TLS keypair", "error page").
    what: &'static str,
}

impl FolderWatch {
    /// A watch on nothing yet; `what` names the files in log lines.
    pub(crate) fn new(what: &'static str) -> Result<Self, WatchError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
            let _ = tx.send(res);
        })?;
        Ok(FolderWatch {
            debouncer,
            rx,
            dirs: BTreeSet::new(),
            what,
        })
    }

    /// Watch the folders `files` now live in, and stop watching ones they left.
    pub(crate) fn sync(&mut self, files: &[&Path]) {
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
                    tracing::debug!("watching {} for {} changes", dir.display(), self.what);
                    watched.insert(dir);
                }
                Err(e) => tracing::warn!(
                    "cannot watch {} for {} changes: {e}; reload with SIGHUP",
                    dir.display(),
                    self.what
                ),
            }
        }
        self.dirs = watched;
    }

    /// Wait for the next change that can mean new content. Everything already queued is taken
    /// with it, so one edit of several files is one wake-up; watch errors are logged.
    pub(crate) async fn changed(&mut self) {
        loop {
            let Some(first) = self.rx.recv().await else {
                // The debouncer is ours, so its sender never goes away; never wake.
                return std::future::pending().await;
            };
            let mut relevant = false;
            let mut next = Some(first);
            while let Some(batch) = next.take().or_else(|| self.rx.try_recv().ok()) {
                match batch {
                    Ok(events) => relevant |= events.iter().any(|e| is_change(&e.kind)),
                    Err(errors) => {
                        for e in errors {
                            tracing::warn!("{} folder watch: {e}", self.what);
                        }
                    }
                }
            }
            if relevant {
                return;
            }
        }
    }
}

/// A periodic check and how often it runs.
pub(crate) type Periodic<T> = Option<(std::time::Duration, fn(&T))>;

/// Something reloaded live from files.
pub(crate) trait Reload: Send + Sync + 'static {
    /// What it is, for log lines ("TLS keypair", "error page").
    const WHAT: &'static str;
    /// The files whose folders are watched (asked again after every reload: a symlink may have
    /// moved). Empty: nothing to watch.
    fn watched(&self) -> Vec<PathBuf>;
    /// Re-read and log the outcome; on a refusal what served before serves on. `trigger` says
    /// what caused it (`folder change`, `SIGHUP`). Blocking file I/O is fine here.
    fn reload_logged(&self, trigger: &str);
    /// A periodic check beside the watch, and how often (the keypair's expiry warning).
    fn every(&self) -> Periodic<Self> {
        None
    }
}

/// Reload `target` on changes in its folders until `shutdown` is cancelled. Call from within a
/// Tokio runtime; without one, only SIGHUP reloads (logged).
pub(crate) fn spawn_reloader<R: Reload>(target: Arc<R>, shutdown: CancellationToken) {
    let files = target.watched();
    if files.is_empty() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::error!(
            "{} watcher not started (no Tokio runtime); reload with SIGHUP",
            R::WHAT
        );
        return;
    };
    let _entered = rt.enter();
    let watch = match FolderWatch::new(R::WHAT) {
        Ok(mut w) => {
            w.sync(&paths(&files));
            Some(w)
        }
        Err(e) => {
            tracing::warn!(
                "cannot watch the {} folder ({e}); reload with SIGHUP",
                R::WHAT
            );
            None
        }
    };
    rt.spawn(reload_loop(target, watch, shutdown));
}

async fn reload_loop<R: Reload>(
    target: Arc<R>,
    mut watch: Option<FolderWatch>,
    shutdown: CancellationToken,
) {
    let every = target.every();
    let period = every.map_or(std::time::Duration::from_secs(24 * 60 * 60), |(d, _)| d);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = next_change(&mut watch) => {
                let t = Arc::clone(&target);
                // File I/O off the event loop, logging where this task logs.
                let dispatch = tracing::dispatcher::get_default(Clone::clone);
                let run = move || {
                    tracing::dispatcher::with_default(&dispatch, || t.reload_logged("folder change"));
                };
                if let Err(e) = tokio::task::spawn_blocking(run).await {
                    tracing::error!(error = %e, "{} reload task failed", R::WHAT);
                }
                if let Some(w) = watch.as_mut() {
                    w.sync(&paths(&target.watched()));
                }
            }
            _ = tick.tick(), if every.is_some() => {
                if let Some((_, check)) = every {
                    check(&target);
                }
            }
        }
    }
    tracing::debug!("{} watcher stopped", R::WHAT);
}

fn paths(files: &[PathBuf]) -> Vec<&Path> {
    files.iter().map(PathBuf::as_path).collect()
}

/// [`FolderWatch::changed`] of a watch that may have failed to start: without one, never.
async fn next_change(watch: &mut Option<FolderWatch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
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

/// The folders holding each path and every symlink on the way to the real file.
fn folders(files: &[&Path]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for start in files {
        let mut path = start.to_path_buf();
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
    use super::*;

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
        let got = folders(&[&tls.join("localhost.crt"), &tls.join("localhost.key")]);
        let want: BTreeSet<PathBuf> = [tls, live, archive].into_iter().collect();
        assert_eq!(got, want);
    }
}
