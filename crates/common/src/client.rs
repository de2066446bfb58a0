//! Client-side TLS: an opt-in verifier that accepts any certificate (self-signed upstreams, as
//! nginx's `proxy_ssl_verify off`), and the `healthcheck` probe both binaries use in scratch images.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts every server certificate but still checks handshake signatures, so the peer must hold
/// the key of the certificate it shows. Used only where the user asked for no verification.
#[derive(Debug)]
pub struct AcceptAnyCert(Arc<CryptoProvider>);

impl AcceptAnyCert {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        AcceptAnyCert(provider)
    }
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config that accepts any server certificate.
pub fn insecure_client_config(alpn: &[&[u8]]) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = crate::tls::provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert::new(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// Why a health probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS client set-up failed: {0}")]
    Config(#[from] rustls::Error),
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: I/O error: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr}: not an HTTP answer: {line:?}")]
    NotHttp { addr: SocketAddr, line: String },
}

/// Complete a TLS handshake with `addr` (any certificate) and return the SHA-256 fingerprint
/// of the certificate shown. Sends no request, so nothing is forwarded or logged.
pub async fn handshake(addr: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    let chain = peer_chain(addr, timeout).await?;
    Ok(chain
        .first()
        .map(crate::tls::fingerprint)
        .unwrap_or_default())
}

/// Complete a TLS handshake with `addr` (any certificate) and return the chain it was shown,
/// leaf first.
pub async fn peer_chain(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    tokio::time::timeout(timeout, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ProbeError::Connect { addr, source })?;
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(insecure_client_config(&[b"http/1.1"])?));
        let tls = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|source| ProbeError::Tls { addr, source })?;
        Ok(tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .to_vec())
    })
    .await
    .map_err(|_| ProbeError::Timeout { addr, timeout })?
}

/// Send `GET path` over HTTPS (HTTP/1.1, any certificate) and return the status code.
pub async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<u16, ProbeError> {
    tokio::time::timeout(timeout, probe_inner(addr, path))
        .await
        .map_err(|_| ProbeError::Timeout { addr, timeout })?
}

async fn probe_inner(addr: SocketAddr, path: &str) -> Result<u16, ProbeError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })?;
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(insecure_client_config(&[b"http/1.1"])?));
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|source| ProbeError::Tls { addr, source })?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n"
    );
    let io = |source| ProbeError::Io { addr, source };
    tls.write_all(req.as_bytes()).await.map_err(io)?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = tls.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or_default().to_owned();
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    status.ok_or(ProbeError::NotHttp { addr, line })
}
