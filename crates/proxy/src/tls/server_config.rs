//! The proxy's TLS server configuration: the original nginx's protocols and cipher list, in
//! rustls terms, with the certificate coming from the reloadable store.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::server::ResolvesServerCert;
use rustls::{CipherSuite, ServerConfig, version};

/// TLS 1.2 suites: nginx's list minus its two DHE suites, which rustls does not implement.
pub const TLS12_SUITES: [CipherSuite; 6] = [
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.3 suites: all three.
pub const TLS13_SUITES: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// aws-lc-rs restricted to the suites above and to X25519MLKEM768 (hybrid post-quantum),
/// X25519, P-256 and P-384 key exchange.
pub fn provider() -> CryptoProvider {
    let base = aws_lc_rs::default_provider();
    let wanted: Vec<CipherSuite> = TLS13_SUITES
        .iter()
        .chain(TLS12_SUITES.iter())
        .copied()
        .collect();
    let cipher_suites = wanted
        .iter()
        .filter_map(|w| base.cipher_suites.iter().find(|s| s.suite() == *w).copied())
        .collect();
    let kx_groups = vec![
        aws_lc_rs::kx_group::X25519MLKEM768,
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ];
    CryptoProvider {
        cipher_suites,
        kx_groups,
        ..base
    }
}

/// TLS sessions remembered for resumption by session id (nginx `ssl_session_cache`; its
/// `shared:SSL:10m` holds about 40,000).
pub const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

/// TLS 1.2 + 1.3, ALPN h2 then http/1.1, stateless tickets and a session cache for resumption.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(provider());
    let mut cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption is mostly by stateless tickets; the cache serves clients without ticket
    // support. Its table is allocated up front: 16k entries is 1.6 MB (64k was 6.4 MB of RSS).
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    cfg.ticketer = aws_lc_rs::Ticketer::new()?;
    cfg.send_tls13_tickets = 2;
    Ok(cfg)
}

/// The crypto provider certificates are loaded with (same as the server's).
pub fn shared_provider() -> Arc<CryptoProvider> {
    Arc::new(provider())
}
