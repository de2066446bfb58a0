//! The log queue, the leaf of `logs/`: what request threads hand to the writer thread, and the
//! bounded, never-blocking sender they hand it through.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};

use super::entry::AccessEntry;
use super::throttle::Throttle;

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

/// A sender into the writer's queue with its own drop counter (and, for error.log lines, the
/// per call site throttle).
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
    throttle: Arc<Throttle>,
}

impl Sink {
    pub(crate) fn new(tx: SyncSender<Msg>) -> Self {
        Sink {
            tx,
            dropped: Arc::default(),
            throttle: Arc::default(),
        }
    }

    /// Queue a line without waiting: a full queue drops it and counts the drop (reported in
    /// error.log); after the writer stopped (the final flush) it is gone silently.
    pub(crate) fn offer(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Send a control message (waiting for room) and wait for the writer's answer.
    pub(crate) fn request(&self, make: fn(mpsc::Sender<io::Result<()>>) -> Msg) -> io::Result<()> {
        let (ack_tx, ack_rx) = mpsc::channel();
        let gone = || io::Error::other("the log writer has stopped");
        self.tx.send(make(ack_tx)).map_err(|_| gone())?;
        ack_rx.recv().map_err(|_| gone())?
    }

    /// Ask the writer to stop (it flushes first); false when it has stopped already.
    pub(crate) fn stop(&self) -> bool {
        self.tx.send(Msg::Stop).is_ok()
    }

    /// The line throttle, shared by the error layer and the writer that writes its summaries.
    pub(crate) fn throttle(&self) -> Arc<Throttle> {
        self.throttle.clone()
    }

    /// The drop counter, shared with the writer that reports it.
    pub(crate) fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}
