//! Bounds and file names that are no setting (every setting's default is in its declaration in
//! [`super::settings`]).

use std::time::Duration;

/// File name of the certificate in the keypair folder.
pub const CERT_NAME: &str = "localhost.crt";
/// File name of the private key in the keypair folder.
pub const KEY_NAME: &str = "localhost.key";
/// File name of the development CA's certificate, in the folder of `PROXY_TLS_CERT`.
pub const CA_CERT_NAME: &str = "ca.crt";
/// File name of the development CA's private key, in the folder of `PROXY_TLS_CERT`.
pub const CA_KEY_NAME: &str = "ca.key";
/// Most names `PROXY_TLS_NAMES` may list.
pub const MAX_TLS_NAMES: usize = 64;
/// Accepted `PROXY_TLS_RENEW_INTERVAL` values: 1 s to 24 h.
pub const TLS_RENEW_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 60 * 60));
/// Largest accepted `PROXY_TLS_ISSUE_RATE` and `PROXY_TLS_ISSUE_CACHE`.
pub const MAX_TLS_ISSUE: usize = 10_000;
/// The folder, beside the CA, holding certificates issued on demand (`api.localhost.crt`,
/// `api.localhost.key`).
pub const NAMES_DIR: &str = "names";
/// Largest accepted `PROXY_WORKERS`.
pub const MAX_WORKERS: usize = 256;
/// Smallest accepted `PROXY_MAX_HEADER_SIZE`.
pub const MIN_HEADER_SIZE: u64 = 1024;
/// Smallest accepted `PROXY_INSPECT_MEMORY`.
pub const INSPECT_MIN_MEMORY: u64 = 1024 * 1024;
