//! Raw HTTP/1.1 over TLS for tests that need every byte to be theirs: connect with a chosen
//! ALPN, write a request by hand, read answers (Content-Length, chunked or until EOF) and
//! watch for the peer closing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A client-side TLS connection to the proxy.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Upper bound for anything the proxy should do "soon" (a timeout of a few hundred ms firing,
/// an answer arriving). Generous: debug builds on two shared cores.
pub const SOON: Duration = Duration::from_secs(10);

/// TCP connect and TLS handshake (certificate not checked) offering these ALPN ids.
pub async fn tls_connect(addr: SocketAddr, alpn: &[&[u8]]) -> Tls {
    tls_connect_as(addr, "localhost", alpn).await
}

/// [`tls_connect`] asking for `name` (SNI).
pub async fn tls_connect_as(addr: SocketAddr, name: &str, alpn: &[&[u8]]) -> Tls {
    let cfg = common::client::insecure_client_config(alpn).expect("client config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from(name.to_owned()).expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// [`tls_connect`] offering HTTP/1.1 only.
pub async fn h1(addr: SocketAddr) -> Tls {
    tls_connect(addr, &[b"http/1.1"]).await
}

/// One HTTP/1.1 answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The proxy's own error page (rendered by our handler: it carries a request id and
    /// `no-store`), as opposed to hyper's bare answers.
    pub fn is_page(&self) -> bool {
        self.header("x-request-id").is_some() && self.header("cache-control") == Some("no-store")
    }

    /// An answer hyper wrote itself for a request it could not parse: no request id, no body.
    pub fn is_bare(&self) -> bool {
        self.header("x-request-id").is_none() && self.body.is_empty()
    }

    pub fn assert_page(&self, status: u16) {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.text());
        assert!(self.is_page(), "not the error page:\n{}", self.head);
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{}",
            self.head
        );
        assert!(
            self.text().contains(&status.to_string()),
            "page does not name {status}"
        );
    }

    pub fn assert_json_page(&self, status: u16) {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.text());
        assert!(self.is_page(), "not the error page:\n{}", self.head);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&self.body).expect("JSON page");
        assert_eq!(v["status"], status);
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Read more bytes into `buf`; false at EOF or on an error (a reset, a TLS close without
/// close_notify).
pub async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match r.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Read into `buf` until it holds `needle`; where it starts, `None` at EOF or on an error.
async fn fill_until<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    needle: &[u8],
) -> Option<usize> {
    loop {
        if let Some(i) = find(buf, needle) {
            return Some(i);
        }
        if !fill(r, buf).await {
            return None;
        }
    }
}

/// Read one answer (Content-Length, chunked or until EOF); `None` when the connection ended
/// before a complete head, or when a framed body was cut short. `buf` carries bytes between
/// answers on one connection.
pub async fn read_answer<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<Answer> {
    let end = fill_until(r, buf, b"\r\n\r\n").await?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let mut a = Answer {
        status,
        head,
        body: Vec::new(),
    };
    if status < 200 || status == 204 || status == 304 {
        return Some(a);
    }
    if let Some(len) = a.header("content-length") {
        let len: usize = len.parse().ok()?;
        while buf.len() < len {
            if !fill(r, buf).await {
                return None;
            }
        }
        a.body = buf.drain(..len).collect();
    } else if a
        .header("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        loop {
            let line_end = fill_until(r, buf, b"\r\n").await?;
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            while buf.len() < line_end + 2 + size + 2 {
                if !fill(r, buf).await {
                    return None;
                }
            }
            a.body
                .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        while fill(r, buf).await {}
        a.body = std::mem::take(buf);
    }
    Some(a)
}

/// Read until the peer closes; `Some(bytes read)` if it did within `within`.
pub async fn closed_within<R: AsyncRead + Unpin>(r: &mut R, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    tokio::time::timeout(within, async { while fill(r, &mut seen).await {} })
        .await
        .ok()
        .map(|()| seen)
}

/// Send `raw` on a fresh connection, read one answer and whether the proxy then closed the
/// connection (`Connection: close` is not added: the caller decides).
pub async fn ask(addr: SocketAddr, raw: &[u8]) -> (Option<Answer>, bool) {
    let mut s = h1(addr).await;
    s.write_all(raw).await.expect("write");
    let mut buf = Vec::new();
    let answer = tokio::time::timeout(SOON, read_answer(&mut s, &mut buf))
        .await
        .expect("an answer or a close in time");
    let closed = closed_within(&mut s, Duration::from_secs(3))
        .await
        .is_some();
    (answer, closed)
}

/// Send `raw` on a fresh connection and read one answer (the connection is then dropped).
pub async fn answer(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut s = h1(addr).await;
    s.write_all(raw).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(SOON, read_answer(&mut s, &mut buf))
        .await
        .expect("an answer or a close in time")
        .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(raw)))
}
