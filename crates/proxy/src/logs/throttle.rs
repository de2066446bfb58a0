//! error.log under a flood (issue 14 §1): each call site (one kind of line, e.g. h2's
//! "remotely-reset pending-accept streams reached limit", written once per abusive
//! connection) writes at most [`BURST`] lines per [`WINDOW`]; the rest are counted and
//! summarised in one line ("N more like this in the last 10s: <sample>") when the window is over
//! (written by the log writer, which checks every window) or at a flush. Lines about one request
//! (with a `request_id`) are not throttled: each pairs with an access log entry.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;

/// Lines one call site may write per window.
pub const BURST: u32 = 10;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Per call site counts; shared by the error layer and the writer thread.
#[derive(Debug, Default)]
pub struct Throttle {
    sites: Mutex<HashMap<Identifier, Site>>,
}

#[derive(Debug)]
struct Site {
    since: Instant,
    written: u32,
    suppressed: u64,
    level: &'static str,
    /// The first suppressed line's text (without timestamp).
    sample: String,
}

impl Throttle {
    /// Whether a line of `site` may be written now; when not, it is counted (and `text` kept
    /// as the sample for the summary). A window that ended with lines suppressed gives its
    /// summary first (`level`, text), to be written before this line.
    pub fn admit(
        &self,
        site: Identifier,
        level: &'static str,
        text: impl FnOnce() -> String,
        now: Instant,
    ) -> (bool, Option<(&'static str, String)>) {
        let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        let s = sites.entry(site).or_insert_with(|| Site {
            since: now,
            written: 0,
            suppressed: 0,
            level,
            sample: String::new(),
        });
        let mut summary = None;
        if now.duration_since(s.since) >= WINDOW {
            summary = s.summary(now);
            s.since = now;
            s.written = 0;
        }
        if s.written < BURST {
            s.written += 1;
            return (true, summary);
        }
        if s.suppressed == 0 {
            s.sample = text();
        }
        s.suppressed += 1;
        (false, summary)
    }

    /// Summaries of the windows that are over (all of them when `all`, at a flush), each
    /// site's count starting again.
    pub fn due(&self, now: Instant, all: bool) -> Vec<(&'static str, String)> {
        let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for s in sites.values_mut() {
            if s.suppressed > 0 && (all || now.duration_since(s.since) >= WINDOW) {
                out.extend(s.summary(now));
                s.since = now;
                s.written = BURST;
            }
        }
        out
    }
}

impl Site {
    /// The summary of the suppressed lines, resetting the count.
    fn summary(&mut self, now: Instant) -> Option<(&'static str, String)> {
        if self.suppressed == 0 {
            return None;
        }
        let secs = now.duration_since(self.since).as_secs().max(1);
        let text = format!(
            "{} more like this in the last {secs}s (not written one by one): {}",
            self.suppressed, self.sample
        );
        self.suppressed = 0;
        Some((self.level, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SITE: tracing::callsite::DefaultCallsite = tracing::callsite::DefaultCallsite::new({
        static META: tracing::Metadata<'static> = tracing::metadata! {
            name: "flood",
            target: "test",
            level: tracing::Level::WARN,
            fields: &[],
            callsite: &SITE,
            kind: tracing::metadata::Kind::EVENT,
        };
        &META
    });

    #[test]
    fn a_flooding_site_writes_a_burst_then_one_summary_per_window() {
        let t = Throttle::default();
        let id = || tracing::callsite::Identifier(&SITE);
        let start = Instant::now();
        let written = (0..BURST + 5)
            .filter(|i| t.admit(id(), "warn", || format!("line {i}"), start).0)
            .count();
        assert_eq!(written, BURST as usize);
        assert!(t.due(start, false).is_empty(), "the window is not over");
        // The next window's first line brings the summary of the last one.
        let (write, summary) = t.admit(id(), "warn", String::new, start + WINDOW);
        assert!(write);
        let (level, text) = summary.expect("summary");
        assert_eq!(level, "warn");
        assert!(
            text.starts_with("5 more like this in the last 10s"),
            "{text}"
        );
        assert!(text.ends_with(&format!("line {BURST}")), "{text}");
        assert!(t.due(start + WINDOW, true).is_empty(), "nothing left");
    }
}
