//! The proxy's keypair (STUB — owned by the keypair-lifecycle work; keep these signatures).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Where the keypair lives and whether a missing pair may be generated.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generate: bool,
}

/// A keypair problem.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Tls(#[from] common::tls::TlsError),
}

/// The certificate new handshakes get; swapped atomically on reload.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// Load (or generate) and validate the pair.
    pub fn open(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Arc<Self>, CertError> {
        let kp = common::tls::Keypair::load(&files.cert, &files.key)?;
        let ck = kp.certified(&provider, &files.cert, &files.key)?;
        Ok(Arc::new(CertStore {
            files,
            provider,
            current: ArcSwap::from_pointee(ck),
        }))
    }

    /// Re-read the files; on any problem the old pair keeps serving and the error is returned.
    pub fn reload(&self) -> Result<(), CertError> {
        let kp = common::tls::Keypair::load(&self.files.cert, &self.files.key)?;
        let ck = kp.certified(&self.provider, &self.files.cert, &self.files.key)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }

    /// SHA-256 fingerprint of the leaf now served.
    pub fn fingerprint(&self) -> String {
        common::tls::fingerprint(&self.current.load().cert[0])
    }

    /// Watch the folder and SIGHUP until `shutdown` is cancelled.
    pub fn spawn_watcher(self: &Arc<Self>, _shutdown: tokio_util::sync::CancellationToken) {}
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
