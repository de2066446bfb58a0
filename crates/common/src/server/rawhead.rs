//! HTTP/1 request heads as the client sent them. hyper's parser resolves what RFC 9112 lets it
//! resolve before a service sees the request: a `Content-Length` beside `Transfer-Encoding` is
//! dropped (§6.3), identical repeated `Content-Length` fields become one. A proxy that refuses
//! such requests outright (nginx ≥ 1.21.1, Envoy) cannot tell from the request, so the
//! [`HeadScanner`] follows the bytes hyper reads — each head, then its body by its framing, the
//! way hyper frames it — and queues the [`RawHead`] of every head; the connection's service
//! attaches it to the matching request ([`Heads::take`]). Whatever it cannot follow exactly as
//! hyper does (a head hyper refuses, an upgrade, HTTP/2, a mismatch with the request hyper
//! parsed) turns it off for the rest of the connection: later requests then carry no
//! `RawHead`, and hyper's own resolution applies.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Uri};

use super::activity::ReadObserver;

/// What the head of an HTTP/1 request held, as sent: in the request's extensions when it held
/// more than one framing field (so the parsed request alone may not show it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawHead {
    /// `Content-Length` fields.
    pub content_length_fields: usize,
    /// `Transfer-Encoding` fields.
    pub transfer_encoding_fields: usize,
}

/// Heads scanned ahead of hyper (pipelining) that may wait for their request.
const MAX_QUEUED: usize = 16;
/// Head buffer capacity kept between requests.
const KEPT_HEAD_CAPACITY: usize = 8 * 1024;
/// Header fields per head: hyper's own default limit.
const MAX_FIELDS: usize = 100;

/// One scanned head waiting for the request hyper makes of it.
struct Queued {
    raw: RawHead,
    method: Method,
    /// The request target up to a `#` (which the URI parser drops).
    target: Vec<u8>,
}

/// The queue between the scanner (reading side) and the service (request side).
#[derive(Clone, Default)]
pub(super) struct Heads(Arc<Shared>);

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Queued>>,
    off: AtomicBool,
}

impl Heads {
    /// The [`RawHead`] of the request hyper made of the oldest scanned head; `None` once the
    /// scanner is off, or if the request does not match (then it turns off).
    pub(super) fn take(&self, method: &Method, uri: &Uri) -> Option<RawHead> {
        let mut queue = self.0.queue.lock().ok()?;
        let next = queue.pop_front()?;
        if next.method == *method && same_target(&next.target, uri) {
            return Some(next.raw);
        }
        tracing::debug!("request head scanner out of step with the parser; off");
        queue.clear();
        self.0.off.store(true, Ordering::Release);
        None
    }

    fn push(&self, queued: Queued) -> bool {
        let Ok(mut queue) = self.0.queue.lock() else {
            return false;
        };
        if queue.len() >= MAX_QUEUED {
            return false;
        }
        if queue.capacity() == 0 {
            // Room for one: a connection that does not pipeline keeps 1 slot, not
            // `VecDeque`'s first growth of 4, for its life.
            queue.reserve_exact(1);
        }
        queue.push_back(queued);
        true
    }

    fn is_off(&self) -> bool {
        self.0.off.load(Ordering::Acquire)
    }
}

/// Does the target as sent name the URI hyper parsed from it?
fn same_target(raw: &[u8], uri: &Uri) -> bool {
    match uri.path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => raw.ends_with(pq.as_str().as_bytes()),
        _ => uri
            .authority()
            .is_some_and(|a| raw.ends_with(a.as_str().as_bytes())),
    }
}

/// Follows an HTTP/1 request stream: heads, then bodies by their framing.
pub(super) struct HeadScanner {
    heads: Heads,
    state: State,
    /// The head being received.
    head: Vec<u8>,
    /// Longest head followed (beyond it hyper refuses the request anyway).
    max_head: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// `left` bytes of a `Content-Length` body, then `then`.
    Length {
        left: u64,
        then: Next,
    },
    /// A chunked body, then `then`.
    Chunked {
        at: Chunk,
        then: Next,
    },
    Off,
}

/// What follows a body: the next head, or nothing the scanner can follow (an upgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Head,
    Off,
}

impl From<Next> for State {
    fn from(next: Next) -> State {
        match next {
            Next::Head => State::Head,
            Next::Off => State::Off,
        }
    }
}

/// Where in a chunked body (hyper's `ChunkedState`, byte for byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

impl HeadScanner {
    pub(super) fn new(heads: Heads, max_head: usize) -> Self {
        HeadScanner {
            heads,
            state: State::Head,
            head: Vec::new(),
            max_head,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.heads.is_off() {
                self.state = State::Off;
            }
            bytes = match self.state {
                State::Off => return,
                State::Head => self.head_bytes(bytes),
                State::Length { left, then } => {
                    let n = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        then.into()
                    } else {
                        State::Length { left, then }
                    };
                    &bytes[n..]
                }
                State::Chunked { at, then } => self.chunk_bytes(at, then, bytes),
            };
        }
    }

    /// Collect a head; once complete, queue its facts and move on to its body.
    fn head_bytes<'a>(&mut self, mut bytes: &'a [u8]) -> &'a [u8] {
        if self.head.is_empty() {
            // Empty lines before a request line are skipped (httparse does).
            let skip = bytes
                .iter()
                .position(|b| !matches!(b, b'\r' | b'\n'))
                .unwrap_or(bytes.len());
            bytes = &bytes[skip..];
        }
        let start = self.head.len();
        self.head.extend_from_slice(bytes);
        let Some(end) = head_end(&self.head, start.saturating_sub(2)) else {
            if self.head.len() > self.max_head {
                self.state = State::Off;
                self.head = Vec::new();
            }
            return &[];
        };
        self.head.truncate(end);
        self.state = self.finish_head();
        self.head.clear();
        if self.head.capacity() > KEPT_HEAD_CAPACITY || self.state == State::Off {
            // A large head once is no reason to hold its buffer for the connection's life.
            self.head = Vec::new();
        }
        &bytes[end - start..]
    }

    /// Parse the complete head, queue its facts; the state its body starts in.
    fn finish_head(&mut self) -> State {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut fields);
        let (Ok(httparse::Status::Complete(len)), Some(method), Some(target), Some(version)) =
            (req.parse(&self.head), req.method, req.path, req.version)
        else {
            return State::Off;
        };
        let (Ok(method), true) = (
            Method::from_bytes(method.as_bytes()),
            len == self.head.len(),
        ) else {
            return State::Off;
        };
        let Some(framing) = Framing::of(req.headers, version == 1) else {
            return State::Off;
        };
        let target = target.split('#').next().unwrap_or_default();
        let queued = Queued {
            raw: framing.raw,
            method: method.clone(),
            target: target.as_bytes().to_vec(),
        };
        if !self.heads.push(queued) {
            return State::Off;
        }
        let then = if framing.upgrade || method == Method::CONNECT {
            Next::Off
        } else {
            Next::Head
        };
        match framing.body {
            Body::Chunked => State::Chunked {
                at: Chunk::Start,
                then,
            },
            Body::Length(0) => then.into(),
            Body::Length(left) => State::Length { left, then },
        }
    }

    /// Follow a chunked body through `bytes`; what is left after it.
    fn chunk_bytes<'a>(&mut self, mut at: Chunk, then: Next, bytes: &'a [u8]) -> &'a [u8] {
        let mut i = 0;
        while i < bytes.len() {
            if let Chunk::Data(left) = at {
                let n = usize::try_from(left).map_or(bytes.len() - i, |l| l.min(bytes.len() - i));
                i += n;
                let left = left - n as u64;
                at = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            let next = chunk_step(at, bytes[i]);
            i += 1;
            match next {
                None => {
                    self.state = State::Off;
                    return &[];
                }
                Some(Step::More(next)) => at = next,
                Some(Step::Done) => {
                    self.state = then.into();
                    return &bytes[i..];
                }
            }
        }
        self.state = State::Chunked { at, then };
        &[]
    }
}

impl ReadObserver for HeadScanner {
    fn observe(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.feed(bytes);
        Ok(())
    }
}

/// Where the head in `buf` ends (just past its empty line), looking from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1..i + 3) {
                Some([b'\r', b'\n']) => return Some(i + 3),
                _ if buf.get(i + 1) == Some(&b'\n') => return Some(i + 2),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// How a request's body is framed, and what its head said about it.
struct Framing {
    raw: RawHead,
    body: Body,
    /// An `Upgrade` field (HTTP/1.1): after this request the stream may stop being HTTP.
    upgrade: bool,
}

enum Body {
    Length(u64),
    Chunked,
}

impl Framing {
    /// hyper's rules (`role.rs`, `Server::parse`); `None` where hyper refuses the request.
    fn of(fields: &[httparse::Header<'_>], http11: bool) -> Option<Framing> {
        let mut raw = RawHead::default();
        let (mut length, mut chunked, mut upgrade) = (None, false, false);
        for field in fields {
            let name = field.name;
            if name.eq_ignore_ascii_case("transfer-encoding") {
                if !http11 {
                    return None;
                }
                raw.transfer_encoding_fields += 1;
                chunked = last_coding_is_chunked(field.value);
            } else if name.eq_ignore_ascii_case("content-length") {
                raw.content_length_fields += 1;
                if raw.transfer_encoding_fields > 0 {
                    continue; // hyper ignores it after Transfer-Encoding
                }
                let n = digits(field.value)?;
                if length.is_some_and(|prev| prev != n) {
                    return None;
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("upgrade") {
                upgrade = http11;
            }
        }
        let body = match (raw.transfer_encoding_fields > 0, chunked) {
            (true, false) => return None,
            (true, true) => Body::Chunked,
            (false, _) => Body::Length(length.unwrap_or(0)),
        };
        Some(Framing { raw, body, upgrade })
    }
}

/// hyper's `is_chunked_`: the last coding of this field is `chunked`.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|v| {
        v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            && v.rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// A `Content-Length` value as hyper reads it: digits only, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

enum Step {
    More(Chunk),
    Done,
}

/// One byte of a chunked body outside chunk data; `None` where hyper fails the body.
fn chunk_step(at: Chunk, b: u8) -> Option<Step> {
    let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
    let grow = |size: u64, d: u64| size.checked_mul(16)?.checked_add(d);
    let next = match (at, b) {
        (Chunk::Start, b) => Chunk::Size(hex(b)?),
        (Chunk::Size(n), b) if hex(b).is_some() => Chunk::Size(grow(n, hex(b)?)?),
        (Chunk::Size(n) | Chunk::SizeLws(n), b'\t' | b' ') => Chunk::SizeLws(n),
        (Chunk::Size(n) | Chunk::SizeLws(n), b';') => Chunk::Extension(n),
        (Chunk::Size(n) | Chunk::SizeLws(n) | Chunk::Extension(n), b'\r') => Chunk::SizeLf(n),
        (Chunk::Extension(_), b'\n') => return None,
        (Chunk::Extension(n), _) => Chunk::Extension(n),
        (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
        (Chunk::SizeLf(n), b'\n') => Chunk::Data(n),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataLf, b'\n') => Chunk::Start,
        (Chunk::EndCr, b'\r') => Chunk::EndLf,
        (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
        (Chunk::EndCr | Chunk::Trailer, _) => Chunk::Trailer,
        (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
        (Chunk::EndLf, b'\n') => return Some(Step::Done),
        _ => return None,
    };
    Some(Step::More(next))
}

#[cfg(test)]
mod tests;
