//! The log writer thread: one bounded queue in, `access.log` and `error.log` out through
//! buffers flushed once the queue runs empty after a short linger; reopen, flush+sync and drop
//! reports on demand.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use super::access::{self, TimeCache};
use super::error_layer;
use super::queue::{Msg, Sink};
use super::throttle::{self, Throttle};
use crate::config::LogFormat;

/// Messages the writer handles before it flushes its buffers even under constant load.
const BATCH: usize = 4096;

/// After the first line of a burst, wait this long before writing, so that a busy proxy makes
/// one `write` per linger instead of one per request, and its request threads never have to
/// wake the writer (a sleeping writer is not blocked on the queue). nginx's `access_log ...
/// buffer= flush=` does the same. Flush, reopen and stop requests skip it.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Open a log file for appending (truncated first when `truncate`).
pub(super) fn open_file(path: &Path, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

/// One open log file and the path it is reopened by.
pub(super) struct LogFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
}

/// The writer thread's state.
pub(super) struct Writer {
    format: LogFormat,
    access_path: PathBuf,
    error_path: PathBuf,
    access: BufWriter<File>,
    error: BufWriter<File>,
    access_dropped: Arc<AtomicU64>,
    error_dropped: Arc<AtomicU64>,
    /// error.log lines counted instead of written; their summaries are written here.
    throttle: Arc<Throttle>,
    /// A write failed and was reported on stderr; report again only after a success.
    failing: bool,
    /// `$time_local`, formatted once per second.
    times: TimeCache,
    /// The line being formatted, reused.
    line: String,
}

impl Writer {
    /// A writer for `access` and `error`, reporting the drops counted by the two sinks.
    pub(super) fn new(
        format: LogFormat,
        access: LogFile,
        error: LogFile,
        sinks: (&Sink, &Sink),
    ) -> Self {
        Writer {
            format,
            access_path: access.path,
            error_path: error.path,
            access: BufWriter::with_capacity(64 * 1024, access.file),
            error: BufWriter::new(error.file),
            access_dropped: sinks.0.dropped(),
            error_dropped: sinks.1.dropped(),
            throttle: sinks.1.throttle(),
            failing: false,
            times: TimeCache::default(),
            line: String::with_capacity(512),
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match rx.recv_timeout(throttle::WINDOW) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => {
                    self.summaries(false);
                    let res = self.flush();
                    self.check(res);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
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
            self.summaries(false);
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
                access::write_line(&mut self.line, self.format, &entry, &mut self.times);
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
                self.summaries(true);
                let _ = ack.send(self.flush().and_then(|()| self.sync()));
            }
            Msg::Reopen(ack) => {
                self.report_drops();
                let _ = ack.send(self.reopen());
            }
            Msg::Stop => {
                self.report_drops();
                self.summaries(true);
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
        let line = error_layer::format_line(
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

    /// Write the throttle's summaries of windows that are over (all of them when `all`).
    fn summaries(&mut self, all: bool) {
        for (level, text) in self.throttle.due(Instant::now(), all) {
            let line = error_layer::format_line(time::OffsetDateTime::now_utc(), level, &text);
            let res = self.error.write_all(format!("{line}\n").as_bytes());
            self.check(res);
        }
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
