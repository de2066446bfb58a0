//! The cleartext side of accept: HTTP/1.1 only. A stream that opens with the HTTP/2 connection
//! preface (prior knowledge, h2c) fails its first read, so the connection is closed before any
//! HTTP/2 is spoken, and before hyper's HTTP/1.1 parser answers it with anything.

use super::activity::ReadObserver;

/// How the HTTP/2 preface starts (`PRI * HTTP/2.0`); no HTTP/1 method is called `PRI`.
const PREFACE_START: &[u8] = b"PRI ";

/// Refuses a stream that opens with the HTTP/2 preface.
#[derive(Default)]
pub(super) struct NoPriorKnowledge {
    /// The first bytes read, until there are enough to tell.
    first: Vec<u8>,
    decided: bool,
}

impl ReadObserver for NoPriorKnowledge {
    fn observe(&mut self, bytes: &[u8]) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::{NoPriorKnowledge, ReadObserver};

    fn verdict(pieces: &[&[u8]]) -> Result<(), ()> {
        let mut c = NoPriorKnowledge::default();
        for p in pieces {
            c.observe(p).map_err(|_| ())?;
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
