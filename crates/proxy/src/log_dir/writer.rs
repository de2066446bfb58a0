//! The log writer thread: one bounded queue in, `access.log` and `error.log` out through
//! buffers flushed once the queue runs empty after a short linger; reopen, flush+sync and drop
//! reports on demand.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};

use crate::access_log::{self, AccessEntry};

/// Messages the writer handles before it flushes its buffers even under constant load.
const BATCH: usize = 4096;

/// After the first line of a burst, wait this long before writing, so that a busy proxy makes
/// one `write` per linger instead of one per request, and its request threads never have to
/// wake the writer (a sleeping writer is not blocked on the queue). nginx's `access_log ...
/// buffer= flush=` does the same. Flush, reopen and stop requests skip it.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// What the writer thread receives.
pub(crate) enum Msg {
    Access(Box<AccessEntry>),
    /// A complete error.log line without its newline.
    Error(String),
    /// Write out everything queued before this message, then answer.
    Flush(mpsc::Sender<io::Result<()>>),
    /// Reopen both files by path (after logrotate moved them), then answer.
    Reopen(mpsc::Sender<io::Result<()>>),
    /// Flush and end the thread.
    Stop,
}

/// A sender into the writer's queue with its own drop counter.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    pub(crate) tx: SyncSender<Msg>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Sink {
    pub(crate) fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Open a log file for appending (truncated first when `truncate`).
pub(super) fn open_file(path: &Path, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) format: access_log::Format,
    pub(super) access_path: PathBuf,
    pub(super) error_path: PathBuf,
    pub(super) access: BufWriter<File>,
    pub(super) error: BufWriter<File>,
    pub(super) access_dropped: Arc<AtomicU64>,
    pub(super) error_dropped: Arc<AtomicU64>,
    /// A write failed and was reported on stderr; report again only after a success.
    pub(super) failing: bool,
    /// `$time_local`, formatted once per second.
    pub(super) times: access_log::TimeCache,
    /// The line being formatted, reused.
    pub(super) line: String,
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let lines = matches!(first, Msg::Access(_) | Msg::Error(_));
            let mut stop = self.handle(first);
            if lines && !stop {
                std::thread::sleep(LINGER);
            }
            let mut handled = 1;
            while !stop && handled < BATCH {
                match rx.try_recv() {
                    Ok(msg) => stop = self.handle(msg),
                    Err(_) => break,
                }
                handled += 1;
            }
            self.report_drops();
            let res = self.flush();
            self.check(res);
            if stop {
                break;
            }
        }
    }

    /// Handle one message; true when the thread should end.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Access(entry) => {
                self.line.clear();
                access_log::write_line(&mut self.line, self.format, &entry, &mut self.times);
                self.line.push('\n');
                let res = self.access.write_all(self.line.as_bytes());
                self.check(res);
            }
            Msg::Error(mut line) => {
                line.push('\n');
                let res = self.error.write_all(line.as_bytes());
                self.check(res);
            }
            Msg::Flush(ack) => {
                self.report_drops();
                let _ = ack.send(self.flush().and_then(|()| self.sync()));
            }
            Msg::Reopen(ack) => {
                self.report_drops();
                let _ = ack.send(self.reopen());
            }
            Msg::Stop => {
                self.report_drops();
                let res = self.flush().and_then(|()| self.sync());
                self.check(res);
                return true;
            }
        }
        false
    }

    fn flush(&mut self) -> io::Result<()> {
        let a = self.access.flush();
        let e = self.error.flush();
        a.and(e)
    }

    fn sync(&mut self) -> io::Result<()> {
        let a = self.access.get_ref().sync_data();
        let e = self.error.get_ref().sync_data();
        a.and(e)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let flushed = self.flush();
        let access = open_file(&self.access_path, false)?;
        let error = open_file(&self.error_path, false)?;
        // Anything the old buffers could not write is lost with the moved files; say so.
        flushed?;
        self.access = BufWriter::with_capacity(64 * 1024, access);
        self.error = BufWriter::new(error);
        Ok(())
    }

    /// Write (and echo to stderr) how many lines the full queue cost since the last report.
    fn report_drops(&mut self) {
        let access = self.access_dropped.swap(0, Ordering::Relaxed);
        let error = self.error_dropped.swap(0, Ordering::Relaxed);
        if access == 0 && error == 0 {
            return;
        }
        let line = crate::error_log::format_line(
            time::OffsetDateTime::now_utc(),
            "warn",
            &format!(
                "log queue full: dropped {access} access log lines and {error} error log lines"
            ),
        );
        eprintln!("{line}");
        let res = self.error.write_all(format!("{line}\n").as_bytes());
        self.check(res);
    }

    fn check(&mut self, res: io::Result<()>) {
        match res {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                eprintln!(
                    "cannot write the log files in {}: {e}",
                    self.access_path
                        .parent()
                        .unwrap_or(Path::new("."))
                        .display()
                );
            }
            Err(_) => {}
        }
    }
}
