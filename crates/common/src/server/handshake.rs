//! The TLS side of accept: a friendly 400 for plain HTTP sent to the TLS port, else the
//! handshake (with the ClientHello shown to a hook first, when the transport has one).

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use super::{BeforeHandshake, Transport};

const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 54\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS only; use https:// in the URL.\n";

/// Answer plain HTTP on a TLS port with a clear 400, else complete the handshake.
pub(super) async fn handshake(
    transport: Transport,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    if !looks_like_tls(&stream).await {
        let mut stream = stream;
        let _ = stream.write_all(PLAIN_HTTP_ON_TLS).await;
        let _ = stream.shutdown().await;
        return None;
    }
    let done = match transport {
        Transport::Plain => return None,
        Transport::Tls(acceptor) => acceptor.accept(stream).await,
        Transport::TlsWithHello(acceptor, hook) => with_hello(acceptor, &*hook, stream).await,
    };
    match done {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
    }
}

/// Read the ClientHello, let `hook` see its server name (and await what it asks to), then go
/// on with the acceptor's config: its certificate resolver sees whatever the hook prepared.
async fn with_hello(
    acceptor: TlsAcceptor,
    hook: &dyn BeforeHandshake,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    if let Some(pending) = hook.before(start.client_hello().server_name()) {
        pending.await;
    }
    start.into_stream(acceptor.config().clone()).await
}

/// Peek at the first byte: a TLS record starts with 0x16 (handshake). Anything else on a TLS
/// port is most likely plain HTTP.
async fn looks_like_tls(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => first[0] == 0x16,
        _ => true, // let the TLS layer report the error
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_http_answer_declares_its_real_length() {
        let text = std::str::from_utf8(super::PLAIN_HTTP_ON_TLS).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }
}
