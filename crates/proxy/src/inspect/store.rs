//! The kept exchanges: a ring of at most `PROXY_INSPECT_ENTRIES` finished entries, the memory
//! budget (`PROXY_INSPECT_MEMORY`) every kept head and body byte is drawn from, and the channel
//! that announces each new entry (by id) to the live page.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderMap, Method};
use tokio::sync::broadcast;

/// New entries announced at once to the live page; a page that falls further behind misses
/// some and reloads the list.
const NEWS_BACKLOG: usize = 256;

/// The bytes every kept head and body draws from. A body that does not fit is counted, not
/// kept; heads always fit (they are bounded by the header limit) and push old entries out.
#[derive(Debug)]
pub struct Budget {
    used: AtomicU64,
    cap: u64,
}

impl Budget {
    pub fn new(cap: u64) -> Self {
        Budget {
            used: AtomicU64::new(0),
            cap,
        }
    }

    /// Take `n` bytes if they fit under the cap.
    pub fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= self.cap)
            })
            .is_ok()
    }

    /// Take `n` bytes even above the cap (a head; the ring then sheds old entries).
    pub fn force(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }
}

/// Bytes of a body: the first part kept (up to the body limit, while the budget allows), all
/// of it counted. Its kept bytes go back to the budget when it is dropped.
#[derive(Debug)]
pub struct BodyBuf {
    pub kept: Vec<u8>,
    /// Every byte that passed, kept or not.
    pub total: u64,
    /// Bytes were dropped because the memory budget was spent (not the body limit).
    pub over_budget: bool,
    budget: Arc<Budget>,
}

impl BodyBuf {
    pub fn new(budget: Arc<Budget>) -> Self {
        BodyBuf {
            kept: Vec::new(),
            total: 0,
            over_budget: false,
            budget,
        }
    }

    /// Count `data`, keeping what fits under `limit` and the budget.
    pub fn push(&mut self, data: &[u8], limit: u64) {
        self.total += data.len() as u64;
        let room = limit.saturating_sub(self.kept.len() as u64);
        let n = (data.len() as u64).min(room);
        if n == 0 || self.over_budget {
            return;
        }
        if self.budget.try_take(n) {
            let n = usize::try_from(n).unwrap_or(data.len());
            self.kept.extend_from_slice(&data[..n]);
        } else {
            self.over_budget = true;
        }
    }

    /// Everything that passed was kept.
    pub fn whole(&self) -> bool {
        self.kept.len() as u64 == self.total
    }
}

impl Drop for BodyBuf {
    fn drop(&mut self) {
        self.budget.release(self.kept.len() as u64);
    }
}

/// A body filled in once its stream ends (the request body may end after the entry is kept).
#[derive(Debug, Default)]
pub struct Slot(Mutex<Option<BodyBuf>>);

impl Slot {
    pub fn set(&self, body: BodyBuf) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(body);
    }

    /// Read the body (none yet: empty).
    pub fn with<T>(&self, f: impl FnOnce(Option<&BodyBuf>) -> T) -> T {
        f(self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref())
    }
}

/// A header block copied out of the request or answer into one buffer (two allocations,
/// whatever the count of fields; nothing shared with the connection's read buffer).
#[derive(Debug, Default)]
pub struct Fields {
    buf: Vec<u8>,
    /// Each field's name and value lengths, in order.
    lens: Vec<(u16, u32)>,
}

impl Fields {
    pub fn copy(h: &HeaderMap) -> Self {
        let mut f = Fields {
            buf: Vec::with_capacity(h.iter().map(|(n, v)| n.as_str().len() + v.len()).sum()),
            lens: Vec::with_capacity(h.len()),
        };
        for (name, value) in h {
            f.buf.extend_from_slice(name.as_str().as_bytes());
            f.buf.extend_from_slice(value.as_bytes());
            let n = u16::try_from(name.as_str().len()).unwrap_or(u16::MAX);
            f.lens
                .push((n, u32::try_from(value.len()).unwrap_or(u32::MAX)));
        }
        f
    }

    /// `(name, value)` in order; names are lower case.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut at = 0usize;
        self.lens.iter().map(move |(n, v)| {
            let (n, v) = (usize::from(*n), *v as usize);
            let name = std::str::from_utf8(&self.buf[at..at + n]).unwrap_or("");
            let value = &self.buf[at + n..at + n + v];
            at += n + v;
            (name, value)
        })
    }

    /// The first value of `name` (lower case), as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Bytes taken, for the budget.
    pub fn size(&self) -> u64 {
        (self.buf.capacity() + self.lens.capacity() * 8) as u64
    }
}

/// Time spent in each part of an exchange.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Arrival until the request left for the upstream (checks, rewriting, a free connection).
    pub queued: Option<Duration>,
    /// Sent until the upstream's answer head arrived (includes any connect).
    pub ttfb: Option<Duration>,
    /// Arrival until the last byte of the answer was handed to the client.
    pub total: Duration,
}

/// One finished exchange.
#[derive(Debug)]
pub struct Entry {
    pub id: u64,
    /// The entry this one replays.
    pub replay_of: Option<u64>,
    pub time: time::OffsetDateTime,
    pub client: SocketAddr,
    pub method: Method,
    pub host: String,
    /// Path and query as the client sent them.
    pub target: String,
    pub protocol: &'static str,
    pub request_id: String,
    /// Where it went: the upstream (`PROXY_UPSTREAM`) or `static`.
    pub route: Arc<str>,
    pub upstream_addr: Option<SocketAddr>,
    pub status: u16,
    pub timing: Timing,
    pub request_headers: Fields,
    pub response_headers: Fields,
    pub request_body: Arc<Slot>,
    pub response_body: BodyBuf,
    /// A WebSocket tunnel's frames (they keep coming after the entry is kept).
    pub frames: Option<Arc<super::frames::Frames>>,
    pub head_bytes: u64,
    pub budget: Arc<Budget>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.budget.release(self.head_bytes);
    }
}

/// The ring, its budget and its announcements.
pub struct Store {
    ring: Mutex<VecDeque<Arc<Entry>>>,
    max: usize,
    pub budget: Arc<Budget>,
    news: broadcast::Sender<u64>,
    next_id: AtomicU64,
}

impl Store {
    pub fn new(max: usize, memory: u64) -> Self {
        Store {
            ring: Mutex::new(VecDeque::with_capacity(max.min(4096))),
            max,
            budget: Arc::new(Budget::new(memory)),
            news: broadcast::channel(NEWS_BACKLOG).0,
            next_id: AtomicU64::new(1),
        }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Entry>>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keep `entry`, shedding the oldest while the ring is over its count or the budget is
    /// over 7/8 of its cap (the last eighth stays free for exchanges in flight); announce it.
    pub fn publish(&self, entry: Entry) {
        let id = entry.id;
        let low_water = self.budget.cap() / 8 * 7;
        {
            let mut ring = self.ring();
            ring.push_back(Arc::new(entry));
            let mut freed = 0u64;
            while ring.len() > self.max
                || (ring.len() > 1 && self.budget.used().saturating_sub(freed) > low_water)
            {
                let Some(old) = ring.pop_front() else { break };
                freed += old.head_bytes + old.response_body.kept.len() as u64;
                freed += old
                    .request_body
                    .with(|b| b.map_or(0, |b| b.kept.len() as u64));
            }
        }
        if self.news.receiver_count() > 0 {
            let _ = self.news.send(id);
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        self.ring().iter().rev().find(|e| e.id == id).cloned()
    }

    /// Every kept entry, newest first.
    pub fn newest_first(&self) -> Vec<Arc<Entry>> {
        self.ring().iter().rev().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.ring().len()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<u64> {
        self.news.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_order_and_repeats_in_one_buffer() {
        let mut h = HeaderMap::new();
        h.append("set-cookie", "a=1".parse().expect("value"));
        h.append("x-custom", "v".parse().expect("value"));
        h.append("set-cookie", "b=2".parse().expect("value"));
        let f = Fields::copy(&h);
        let all: Vec<(&str, &[u8])> = f.iter().collect();
        assert_eq!(
            all,
            [
                ("set-cookie", &b"a=1"[..]),
                ("set-cookie", b"b=2"),
                ("x-custom", b"v")
            ]
        );
        assert_eq!(f.get("x-custom"), Some("v"));
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn a_body_keeps_its_first_part_and_counts_the_rest() {
        let budget = Arc::new(Budget::new(1 << 20));
        let mut b = BodyBuf::new(budget.clone());
        b.push(&[1; 600], 1000);
        b.push(&[2; 600], 1000);
        assert_eq!((b.kept.len(), b.total, b.whole()), (1000, 1200, false));
        assert_eq!(budget.used(), 1000);
        drop(b);
        assert_eq!(budget.used(), 0, "given back when dropped");
        let small = Arc::new(Budget::new(100));
        let mut b = BodyBuf::new(small);
        b.push(&[3; 500], 1000);
        assert!(b.over_budget && b.kept.is_empty() && b.total == 500);
    }
}
