//! The log folder: `access.log` and `error.log` directly in `PROXY_LOG_DIR` (truncated at start)
//! or, with `LOG_RETENTION`, in a new dated folder per start behind a `latest` symlink; one writer
//! thread with a bounded queue, reopen on demand and a flush that loses no line at shutdown.
//!
//! Inside: `entry` (the access record) and `queue` (the sender) are the leaves; `access`
//! formats lines, `error_layer` turns tracing events into error.log lines, `writer` is the
//! thread that writes both files.

mod access;
mod entry;
mod error_layer;
mod queue;
mod throttle;
mod writer;

use crate::config::settings::LOG_DIR;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

pub use access::{AccessLog, format_combined, format_json};
pub use entry::AccessEntry;
use queue::{Msg, Sink};
use writer::{LogFile, Writer, open_file};

use crate::config::LogConfig;

/// Entries (access lines and error lines together) that may wait for the writer; beyond this
/// they are dropped and counted rather than blocking a request.
pub const QUEUE_CAPACITY: usize = 4096;

/// The log folder cannot be used; the proxy does not start.
#[derive(Debug, thiserror::Error)]
pub enum LogDirError {
    #[error(
        "{LOG_DIR}={}: the folder does not exist. Create it and make it writable for uid \
         {uid}, gid {gid} (the user the proxy runs as), e.g. on the host: \
         `mkdir -p ./logs && sudo chown {uid}:{gid} ./logs`", path.display()
    )]
    Missing { path: PathBuf, uid: u32, gid: u32 },
    #[error("{LOG_DIR}={}: not a folder", path.display())]
    NotADirectory { path: PathBuf },
    #[error(
        "{LOG_DIR}={}: cannot write {} as uid {uid}, gid {gid}: {source}. The folder must \
         be writable by the user the proxy runs as (the image's UID/GID build args): on the \
         host run e.g. `sudo chown {uid}:{gid} ./logs`, or rebuild for your own user with \
         `CONTAINER_UID=$(id -u) CONTAINER_GID=$(id -g) docker compose up --build`",
        dir.display(), path.display()
    )]
    NotWritable {
        dir: PathBuf,
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: io::Error,
    },
    #[error("{LOG_DIR}={}: cannot point the `latest` symlink at the new folder: {source}", path.display())]
    Latest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the log writer thread: {source}")]
    Thread {
        #[source]
        source: io::Error,
    },
}

/// The open log files. Cheap to clone; the writer stops when [`Logs::shutdown`] runs or the last
/// clone is dropped (both flush first).
#[derive(Debug, Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    access: Sink,
    error: Sink,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    /// Stop the writer (it flushes first) and wait for it.
    fn stop(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // Sent only while the writer runs; joining a finished thread returns at once.
            let _ = self.access.stop();
            let _ = handle.join();
        }
    }
}

fn ids() -> (u32, u32) {
    (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    )
}

fn not_writable(dir: &Path, path: &Path, source: io::Error) -> LogDirError {
    let (uid, gid) = ids();
    LogDirError::NotWritable {
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
        uid,
        gid,
        source,
    }
}

const FOLDER_NAME: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]-[minute]-[second]Z");

/// The folder name for a start at `now`: `2026-11-29T13-47-02Z` (UTC).
pub fn folder_name(now: time::OffsetDateTime) -> String {
    now.to_offset(time::UtcOffset::UTC)
        .format(FOLDER_NAME)
        .unwrap_or_else(|_| "start".to_owned())
}

/// Create `<dir>/<name>`, or `<name>-1`, `<name>-2`, … if an earlier start took it.
fn create_dated(dir: &Path, now: time::OffsetDateTime) -> Result<PathBuf, LogDirError> {
    let base = folder_name(now);
    let mut n = 0u32;
    loop {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let path = dir.join(&name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
            Err(e) => return Err(not_writable(dir, &path, e)),
        }
    }
}

/// Point `<dir>/latest` at `target` (a relative name) atomically: a new symlink renamed over it.
fn point_latest(dir: &Path, target: &Path) -> Result<(), LogDirError> {
    let latest = dir.join("latest");
    let tmp = dir.join(format!(".latest.{}.tmp", std::process::id()));
    let err = |source| LogDirError::Latest {
        path: latest.clone(),
        source,
    };
    let name = target.file_name().map(PathBuf::from).unwrap_or_default();
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).map_err(err)?;
    std::fs::rename(&tmp, &latest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

impl Logs {
    /// Prepare the folder, open both files and start the writer thread.
    pub fn open(cfg: &LogConfig) -> Result<Logs, LogDirError> {
        Self::open_at(cfg, time::OffsetDateTime::now_utc(), QUEUE_CAPACITY)
    }

    /// [`Logs::open`] with a fixed start time (names the dated folder) and queue capacity.
    pub fn open_at(
        cfg: &LogConfig,
        now: time::OffsetDateTime,
        capacity: usize,
    ) -> Result<Logs, LogDirError> {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let (logs, writer) = Self::prepare(cfg, now, tx)?;
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| LogDirError::Thread { source })?;
        *logs
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(logs)
    }

    /// Everything but the thread: folder, files, senders.
    fn prepare(
        cfg: &LogConfig,
        now: time::OffsetDateTime,
        tx: SyncSender<Msg>,
    ) -> Result<(Logs, Writer), LogDirError> {
        match std::fs::metadata(&cfg.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (uid, gid) = ids();
                return Err(LogDirError::Missing {
                    path: cfg.dir.clone(),
                    uid,
                    gid,
                });
            }
            Err(e) => return Err(not_writable(&cfg.dir, &cfg.dir, e)),
            Ok(m) if !m.is_dir() => {
                return Err(LogDirError::NotADirectory {
                    path: cfg.dir.clone(),
                });
            }
            Ok(_) => {}
        }
        let dir = if cfg.retention {
            create_dated(&cfg.dir, now)?
        } else {
            cfg.dir.clone()
        };
        let access_path = dir.join("access.log");
        let error_path = dir.join("error.log");
        let access_file = open_file(&access_path, !cfg.retention)
            .map_err(|e| not_writable(&cfg.dir, &access_path, e))?;
        let error_file = open_file(&error_path, !cfg.retention)
            .map_err(|e| not_writable(&cfg.dir, &error_path, e))?;
        if cfg.retention {
            point_latest(&cfg.dir, &dir)?;
        }
        let access = Sink::new(tx.clone());
        let error = Sink::new(tx);
        let writer = Writer::new(
            cfg.format,
            LogFile {
                path: access_path,
                file: access_file,
            },
            LogFile {
                path: error_path,
                file: error_file,
            },
            (&access, &error),
        );
        let inner = Inner {
            dir,
            access,
            error,
            thread: Mutex::new(None),
        };
        Ok((
            Logs {
                inner: Arc::new(inner),
            },
            writer,
        ))
    }

    /// The handle the request handler logs through.
    pub fn access(&self) -> AccessLog {
        AccessLog::new(self.inner.access.clone())
    }

    /// The folder actually written: `PROXY_LOG_DIR` itself, or this start's dated folder.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// `<dir>/access.log`.
    pub fn access_path(&self) -> PathBuf {
        self.inner.dir.join("access.log")
    }

    /// `<dir>/error.log`.
    pub fn error_path(&self) -> PathBuf {
        self.inner.dir.join("error.log")
    }

    /// A tracing layer writing WARN and ERROR events to error.log (add it to a
    /// `tracing_subscriber::registry()` next to the stdout fmt layer).
    pub fn error_layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        error_layer::layer(self.inner.error.clone())
    }

    /// Install the global subscriber: compact lines on stdout filtered by `filter` (a
    /// directive read from the setting `var`, see `common::logging::filter`), plus error.log
    /// for WARN and above.
    pub fn init_tracing(&self, var: &str, filter: &str) -> Result<(), String> {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let env_filter = common::logging::filter(var, filter)?;
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(common::logging::color())
                    .with_filter(env_filter),
            )
            .with(self.error_layer())
            .try_init()
            .map_err(|e| format!("cannot install the logger: {e}"))
    }

    /// Reopen both files by path (logrotate's `postrotate kill -USR1`). Blocks until done; on
    /// failure the old files stay in use.
    pub fn reopen(&self) -> io::Result<()> {
        self.inner.access.request(Msg::Reopen)
    }

    /// Write every line queued so far to disk (flushed and synced). Blocks until done.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.access.request(Msg::Flush)
    }

    /// Flush everything and stop the writer; lines logged afterwards go to stdout only. Call it
    /// once the servers have drained.
    pub async fn shutdown(&self) -> io::Result<()> {
        let logs = self.clone();
        tokio::task::spawn_blocking(move || {
            let res = logs.flush();
            logs.inner.stop();
            res
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;
    use time::macros::datetime;

    fn entry(n: u32) -> AccessEntry {
        AccessEntry {
            remote_addr: "127.0.0.1".parse().expect("ip"),
            remote_user: None,
            time: datetime!(2026-11-29 13:47:02 UTC),
            method: "GET".into(),
            target: format!("/{n}").into(),
            protocol: "HTTP/1.1",
            status: 200,
            body_bytes_sent: 1,
            referer: None,
            user_agent: None,
            request_id: format!("r{n}").into(),
            upstream_addr: None,
            request_time: std::time::Duration::ZERO,
            upstream_time: None,
        }
    }

    #[test]
    fn a_full_queue_drops_counts_and_reports() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig {
            dir: tmp.path().to_path_buf(),
            retention: false,
            format: LogFormat::Combined,
        };
        // No writer yet: the queue (capacity 2) fills deterministically.
        let (tx, rx) = mpsc::sync_channel(2);
        let (logs, writer) =
            Logs::prepare(&cfg, time::OffsetDateTime::now_utc(), tx).expect("prepare");
        let access = logs.access();
        for n in 0..5 {
            access.log(entry(n));
        }
        let handle = std::thread::spawn(move || writer.run(rx));
        *logs.inner.thread.lock().expect("lock") = Some(handle);
        logs.flush().expect("flush");
        let written = std::fs::read_to_string(logs.access_path()).expect("read");
        assert_eq!(written.lines().count(), 2, "{written}");
        assert!(written.contains("\"GET /0 HTTP/1.1\""), "{written}");
        let errors = std::fs::read_to_string(logs.error_path()).expect("read");
        assert!(
            errors.contains("[warn]")
                && errors.contains("dropped 3 access log lines and 0 error log lines"),
            "{errors}"
        );
    }

    #[test]
    fn folder_names_are_utc_and_sortable() {
        assert_eq!(
            folder_name(datetime!(2026-11-29 14:47:02 +01:00)),
            "2026-11-29T13-47-02Z"
        );
    }
}
