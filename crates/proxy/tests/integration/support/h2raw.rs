//! HTTP/2 for tests: just enough raw framing to break the protocol's rules on purpose
//! ([`Conn`], [`request`], [`frame`]), and an `h2`-crate client ([`h2_client`], [`h2_ask`])
//! where a test needs to read answers.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::raw::{SOON, Tls, fill, tls_connect};

// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const CONTINUATION: u8 = 9;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;

/// One frame as read off the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn end_stream(&self) -> bool {
        self.flags & 0x1 != 0
    }

    fn u32_at(&self, i: usize) -> u32 {
        let b = &self.payload[i..i + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn goaway_code(&self) -> u32 {
        self.u32_at(4)
    }

    pub fn rst_code(&self) -> u32 {
        self.u32_at(0)
    }

    pub fn settings(&self) -> Vec<(u16, u32)> {
        self.payload
            .chunks_exact(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect()
    }
}

/// One frame: 9-byte head, then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("len");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn int7(out: &mut Vec<u8>, n: usize) {
    if n < 127 {
        out.push(u8::try_from(n).expect("small"));
        return;
    }
    out.push(127);
    let mut n = n - 127;
    while n >= 128 {
        out.push(u8::try_from(n % 128).expect("byte") | 0x80);
        n /= 128;
    }
    out.push(u8::try_from(n).expect("byte"));
}

/// A HEADERS frame (END_HEADERS, optionally END_STREAM) for `method path`, HPACK without
/// Huffman or indexing; `extra` are plain literal fields.
pub fn request(
    stream: u32,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    end: bool,
) -> Vec<u8> {
    let mut block = Vec::new();
    match method {
        "GET" => block.push(0x82),
        "POST" => block.push(0x83),
        m => {
            block.push(0x02); // :method, literal value
            int7(&mut block, m.len());
            block.extend_from_slice(m.as_bytes());
        }
    }
    block.push(0x87); // :scheme https
    block.push(0x04); // :path
    int7(&mut block, path.len());
    block.extend_from_slice(path.as_bytes());
    block.push(0x01); // :authority
    int7(&mut block, "localhost".len());
    block.extend_from_slice(b"localhost");
    for (k, v) in extra {
        block.push(0x00);
        int7(&mut block, k.len());
        block.extend_from_slice(k.as_bytes());
        int7(&mut block, v.len());
        block.extend_from_slice(v.as_bytes());
    }
    frame(HEADERS, 0x4 | u8::from(end), stream, &block)
}

/// A GET for `path` on `stream`, ending the stream.
pub fn get(stream: u32, path: &str) -> Vec<u8> {
    request(stream, "GET", path, &[], true)
}

/// RST_STREAM with this error code.
pub fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A raw HTTP/2 connection over TLS (ALPN h2), settings exchanged.
pub struct Conn {
    pub io: Tls,
    buf: Vec<u8>,
    /// The server's first SETTINGS.
    pub settings: Vec<(u16, u32)>,
}

impl Conn {
    /// Preface, empty SETTINGS, wait for the server's SETTINGS and acknowledge it.
    pub async fn open(addr: SocketAddr) -> Conn {
        let io = tls_connect(addr, &[b"h2"]).await;
        assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut c = Conn {
            io,
            buf: Vec::new(),
            settings: Vec::new(),
        };
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        c.send(&hello).await;
        let frames = c.until(|f| f.kind == SETTINGS && f.flags & 1 == 0).await;
        c.settings = frames.last().expect("settings").settings();
        c.send(&frame(SETTINGS, 1, 0, &[])).await;
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// The next frame, `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes([
                            self.buf[5],
                            self.buf[6],
                            self.buf[7],
                            self.buf[8],
                        ]) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Some(f);
                }
            }
            if !fill(&mut self.io, &mut self.buf).await {
                return None;
            }
        }
    }

    /// Frames up to and including the first that satisfies `done` (within [`SOON`]).
    pub async fn until(&mut self, mut done: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let mut seen = Vec::new();
        let finished = tokio::time::timeout(SOON, async {
            while let Some(f) = self.next().await {
                let stop = done(&f);
                seen.push(f);
                if stop {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(finished, Ok(true)),
            "expected frame not seen: {seen:?}"
        );
        seen
    }

    /// Every frame until the server closes.
    pub async fn until_closed(&mut self) -> Vec<Frame> {
        let mut seen = Vec::new();
        while let Some(f) = self.next().await {
            seen.push(f);
        }
        seen
    }
}

/// An HTTP/2 connection made with the `h2` crate (its driver runs on a spawned task).
pub async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let io = tls_connect(addr, &[b"h2"]).await;
    let (send, conn) = h2::client::Builder::new()
        .max_header_list_size(1 << 20)
        .handshake(io)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Status, headers and body of one h2 request (or the stream error).
pub async fn h2_ask(
    send: &mut h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
) -> Result<(http::StatusCode, http::HeaderMap, Vec<u8>), h2::Error> {
    let mut ready = send.clone().ready().await?;
    let (resp, _) = ready.send_request(req, true)?;
    let resp = tokio::time::timeout(SOON, resp)
        .await
        .expect("h2 answer in time")?;
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok((parts.status, parts.headers, data))
}
