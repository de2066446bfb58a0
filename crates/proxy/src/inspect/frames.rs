//! WebSocket frames seen in an upgrade tunnel: a [`FrameReader`] watches the bytes one side of
//! the tunnel reads (it never changes or holds them back), parses the frame headers (RFC 6455
//! §5.2) and keeps each frame's direction, opcode, size and first bytes (unmasked) in the
//! entry's bounded [`Frames`].

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use common::server::ReadObserver;

/// Frames kept per tunnel (the newest); the rest are counted.
pub const MAX_FRAMES: usize = 200;
/// Payload bytes kept of each frame.
pub const FIRST_BYTES: usize = 64;
/// What [`MAX_FRAMES`] frames may take, counted against the memory budget up front.
pub const FRAMES_BYTES: u64 = (MAX_FRAMES * (FIRST_BYTES + 48)) as u64;

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// `true`: client to upstream.
    pub outgoing: bool,
    pub opcode: u8,
    pub size: u64,
    pub first: Vec<u8>,
    /// Milliseconds since the tunnel opened.
    pub at_ms: u64,
}

/// The frames of one tunnel.
#[derive(Debug)]
pub struct Frames {
    opened: Instant,
    inner: Mutex<(VecDeque<Frame>, u64)>,
}

impl Default for Frames {
    fn default() -> Self {
        Frames {
            opened: Instant::now(),
            inner: Mutex::default(),
        }
    }
}

impl Frames {
    fn push(&self, frame: Frame) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.1 += 1;
        if inner.0.len() == MAX_FRAMES {
            inner.0.pop_front();
        }
        inner.0.push_back(frame);
    }

    /// The frames kept, oldest first, and how many passed in all.
    pub fn snapshot(&self) -> (Vec<Frame>, u64) {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (inner.0.iter().cloned().collect(), inner.1)
    }
}

/// Parses the frames in the bytes one side sends.
pub struct FrameReader {
    frames: std::sync::Arc<Frames>,
    outgoing: bool,
    /// Header bytes so far (at most 14: 2 + 8 length + 4 mask).
    head: Vec<u8>,
    /// The frame whose payload is passing: what is left of it, and its record.
    payload: Option<(u64, Frame, [u8; 4], bool)>,
}

impl FrameReader {
    pub fn new(frames: std::sync::Arc<Frames>, outgoing: bool) -> Self {
        FrameReader {
            frames,
            outgoing,
            head: Vec::with_capacity(14),
            payload: None,
        }
    }

    /// The header's full length once its first two bytes are known.
    fn head_len(&self) -> Option<usize> {
        let b1 = *self.head.get(1)?;
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        Some(2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 })
    }

    /// The header is complete: start the payload.
    fn start(&mut self) {
        let (b0, b1) = (self.head[0], self.head[1]);
        let (size, rest) = match b1 & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                4,
            ),
            127 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            n => (u64::from(n), 2),
        };
        let mut mask = [0u8; 4];
        let masked = b1 & 0x80 != 0;
        if masked {
            mask.copy_from_slice(&self.head[rest..rest + 4]);
        }
        let frame = Frame {
            outgoing: self.outgoing,
            opcode: b0 & 0x0f,
            size,
            first: Vec::new(),
            at_ms: u64::try_from(self.frames.opened.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        self.head.clear();
        if size == 0 {
            self.frames.push(frame);
        } else {
            self.payload = Some((size, frame, mask, masked));
        }
    }
}

impl ReadObserver for FrameReader {
    fn observe(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if let Some((left, frame, mask, masked)) = &mut self.payload {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let offset = frame.size - *left;
                let room = FIRST_BYTES.saturating_sub(frame.first.len()).min(n);
                for (i, b) in bytes[..room].iter().enumerate() {
                    let k = if *masked {
                        mask[(offset as usize + i) % 4]
                    } else {
                        0
                    };
                    frame.first.push(b ^ k);
                }
                *left -= n as u64;
                bytes = &bytes[n..];
                if *left == 0
                    && let Some((_, frame, _, _)) = self.payload.take()
                {
                    self.frames.push(frame);
                }
                continue;
            }
            let want = self.head_len().unwrap_or(2);
            let n = (want - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.head_len().is_some_and(|len| len == self.head.len()) {
                self.start();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A masked client text frame and an unmasked server frame with a 16-bit length, fed a byte
    /// at a time and all at once.
    #[test]
    fn frames_are_parsed_across_any_split() {
        let mask = [1u8, 2, 3, 4];
        let mut client = vec![0x81, 0x80 | 5];
        client.extend_from_slice(&mask);
        client.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let mut server = vec![0x82, 126, 0x01, 0x00];
        server.extend(std::iter::repeat_n(7u8, 256));
        for split in [1, 3, 1000] {
            let frames = Arc::new(Frames::default());
            let mut up = FrameReader::new(frames.clone(), true);
            let mut down = FrameReader::new(frames.clone(), false);
            for chunk in client.chunks(split) {
                up.observe(chunk).expect("observe");
            }
            for chunk in server.chunks(split) {
                down.observe(chunk).expect("observe");
            }
            let (kept, total) = frames.snapshot();
            assert_eq!(total, 2);
            assert_eq!(
                (kept[0].outgoing, kept[0].opcode, kept[0].size),
                (true, 1, 5)
            );
            assert_eq!(kept[0].first, b"hello");
            assert_eq!(
                (kept[1].outgoing, kept[1].opcode, kept[1].size),
                (false, 2, 256)
            );
            assert_eq!(kept[1].first, vec![7u8; FIRST_BYTES]);
        }
    }
}
