//! The cleartext side of accept: HTTP/1.1 only. A stream that opens with the HTTP/2 connection
//! preface (prior knowledge, h2c) fails its first read, so the connection is closed before any
//! HTTP/2 is spoken. (An IO wrapper rather than an HTTP/1-only hyper connection: the connection
//! type stays the one the TLS side uses, so hyper's state machines are compiled once.)

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How the HTTP/2 preface starts (`PRI * HTTP/2.0`); no HTTP/1 method is called `PRI`.
const PREFACE_START: &[u8] = b"PRI ";

/// A cleartext stream that refuses HTTP/2 prior knowledge.
pub(super) struct Cleartext<IO> {
    inner: IO,
    /// The first bytes read, until there are enough to tell.
    first: Vec<u8>,
    decided: bool,
}

impl<IO> Cleartext<IO> {
    pub(super) fn new(inner: IO) -> Self {
        Cleartext {
            inner,
            first: Vec::new(),
            decided: false,
        }
    }

    /// Look at newly read bytes; an error when they open the HTTP/2 preface.
    fn check(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.decided {
            return Ok(());
        }
        let want = PREFACE_START.len() - self.first.len();
        self.first
            .extend_from_slice(&bytes[..want.min(bytes.len())]);
        if !PREFACE_START.starts_with(&self.first) {
            self.decided = true;
            self.first = Vec::new();
        } else if self.first.len() == PREFACE_START.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "HTTP/2 prior knowledge on a cleartext port (HTTP/1.1 only)",
            ));
        }
        Ok(())
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Cleartext<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.decided && matches!(r, Poll::Ready(Ok(()))) {
            if let Err(e) = this.check(&buf.filled()[before..]) {
                return Poll::Ready(Err(e));
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Cleartext<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::Cleartext;

    fn verdict(pieces: &[&[u8]]) -> Result<(), ()> {
        let mut c = Cleartext::new(());
        for p in pieces {
            c.check(p).map_err(|_| ())?;
        }
        Ok(())
    }

    #[test]
    fn the_http2_preface_is_refused_however_it_arrives() {
        assert!(verdict(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).is_err());
        assert!(verdict(&[b"P", b"R", b"I", b" *"]).is_err());
        assert!(verdict(&[b"GET / HTTP/1.1\r\n"]).is_ok());
        assert!(verdict(&[b"P", b"OST / HTTP/1.1\r\n", b"PRI "]).is_ok());
        assert!(verdict(&[b"PR", b"IX"]).is_ok());
    }
}
