//! Every default of every proxy setting, in one place (the two enum settings, `PROXY_UPSTREAM_HTTP2`
//! and `PROXY_ACCESS_LOG_FORMAT`, say theirs with `#[default]`); README's tables mirror them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// `PROXY_HTTP_LISTEN`
pub const HTTP_LISTEN: SocketAddr = SocketAddr::new(ANY, 80);
/// `PROXY_HTTPS_LISTEN`
pub const HTTPS_LISTEN: SocketAddr = SocketAddr::new(ANY, 443);
/// `PROXY_HTTPS_PORT`: the port redirects point at.
pub const HTTPS_PORT: u16 = 443;
/// File name of the certificate in the keypair folder.
pub const CERT_NAME: &str = "localhost.crt";
/// File name of the private key in the keypair folder.
pub const KEY_NAME: &str = "localhost.key";
/// `PROXY_TLS_CERT`
pub const TLS_CERT: &str = "/etc/proxy/tls/localhost.crt";
/// `PROXY_TLS_KEY`
pub const TLS_KEY: &str = "/etc/proxy/tls/localhost.key";
/// `PROXY_TLS_GENERATE`
pub const TLS_GENERATE: bool = true;
/// File name of the development CA's certificate, in the folder of `PROXY_TLS_CERT`.
pub const CA_CERT_NAME: &str = "ca.crt";
/// File name of the development CA's private key, in the folder of `PROXY_TLS_CERT`.
pub const CA_KEY_NAME: &str = "ca.key";
/// `PROXY_TLS_NAMES`: what a generated leaf is for, and all the development CA may sign (the
/// DNS constraint `localhost` covers every name under it too, e.g. `app.localhost`).
pub const TLS_NAMES: &str = "localhost, 127.0.0.1, ::1";
/// Most names `PROXY_TLS_NAMES` may list.
pub const MAX_TLS_NAMES: usize = 64;
/// `PROXY_TLS_RENEW_INTERVAL`: how often the CA-issued leaf is checked for renewal.
pub const TLS_RENEW_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Accepted `PROXY_TLS_RENEW_INTERVAL` values: 1 s to 24 h.
pub const TLS_RENEW_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 60 * 60));
/// `PROXY_UPSTREAM`
pub const UPSTREAM: &str = "app:8000";
/// `PROXY_UPSTREAM_TIMEOUT` (nginx `proxy_read_timeout`)
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// `PROXY_UPSTREAM_CONNECT_TIMEOUT` (nginx `proxy_connect_timeout`, 60 s there): 5 s. The
/// upstream is a container on the same host or overlay network, where a connect takes well
/// under a millisecond; a dropped SYN (a stale VIP, a task gone from an overlay network) would
/// otherwise hold the request for a minute. 5 s still covers two SYN retransmissions (1 s, 3 s).
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `PROXY_UPSTREAM_FAIL_TIMEOUT` (nginx `fail_timeout`, with `max_fails=1`)
pub const UPSTREAM_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// `PROXY_UPSTREAM_H2_CONNECTIONS`: HTTP/2 connections per upstream address and worker.
pub const UPSTREAM_H2_CONNECTIONS: usize = 2;
/// `PROXY_UPSTREAM_H2_MAX_REQUESTS`: requests one upstream HTTP/2 connection carries, then it is
/// replaced (a TLS handshake per 10,000 requests costs nothing measurable).
pub const UPSTREAM_H2_MAX_REQUESTS: usize = 10_000;
/// `PROXY_UPSTREAM_H2_LIFETIME`: age at which an upstream HTTP/2 connection is replaced, so a
/// replica added behind a per-connection balancer gets traffic within this long.
pub const UPSTREAM_H2_LIFETIME: Duration = Duration::from_secs(60);
/// `PROXY_UPSTREAM_KEEPALIVE`: idle pooled upstream connections kept per address.
/// 1024: above the usual concurrency, so a burst does not churn (re-handshake) upstream
/// connections; measured 7.7k → 10–12k req/s with 1,000 client connections vs 256.
pub const UPSTREAM_KEEPALIVE: usize = 1024;
/// `PROXY_WORKERS`: event-loop threads; 0 means one per CPU (nginx `worker_processes auto`).
pub const WORKERS: usize = 0;
/// Largest accepted `PROXY_WORKERS`.
pub const MAX_WORKERS: usize = 256;
/// `PROXY_HSTS`
pub const HSTS: &str = "max-age=63072000";
/// `PROXY_LOG_DIR`
pub const LOG_DIR: &str = "/var/log/proxy";
/// `LOG_RETENTION`
pub const LOG_RETENTION: bool = true;
/// `PROXY_ACCESS_LOG`: write access.log (nginx `access_log off` when false).
pub const ACCESS_LOG: bool = true;
/// `PROXY_INTERCEPT_ERRORS`
pub const INTERCEPT_ERRORS: bool = true;
/// `PROXY_LOG`
pub const LOG: &str = "info";
/// `PROXY_HANDSHAKE_TIMEOUT`
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `PROXY_HEADER_TIMEOUT` (nginx `client_header_timeout`)
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// `PROXY_KEEPALIVE_TIMEOUT` (nginx `keepalive_timeout`)
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// `PROXY_BODY_TIMEOUT` (nginx `client_body_timeout`): longest gap between body reads.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// `PROXY_MAX_HEADER_SIZE` (nginx `large_client_header_buffers` 4 × 8k)
pub const MAX_HEADER_SIZE: u64 = 32 * 1024;
/// Smallest accepted `PROXY_MAX_HEADER_SIZE`.
pub const MIN_HEADER_SIZE: u64 = 1024;
/// `PROXY_MAX_URI_LENGTH`
pub const MAX_URI_LENGTH: usize = 8 * 1024;
/// `PROXY_MAX_BODY_SIZE` (nginx `client_max_body_size`); 0 means unlimited.
pub const MAX_BODY_SIZE: u64 = 1024 * 1024;
/// `PROXY_MAX_CONNECTIONS` (nginx `worker_connections`-ish)
pub const MAX_CONNECTIONS: usize = 10_000;
/// `PROXY_H2_MAX_STREAMS` (nginx `http2_max_concurrent_streams`)
pub const H2_MAX_STREAMS: u32 = 128;
/// `PROXY_DRAIN_TIMEOUT`
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// `PROXY_KEEPALIVE_REQUESTS` (nginx `keepalive_requests`)
pub const KEEPALIVE_REQUESTS: usize = 1000;
/// `PROXY_KEEPALIVE_LIFETIME` (nginx `keepalive_time`)
pub const KEEPALIVE_LIFETIME: Duration = Duration::from_secs(3600);
/// `PROXY_UPGRADE_PROTOCOLS`: the `Upgrade` tokens tunnelled.
pub const UPGRADE_PROTOCOLS: &[&str] = &["websocket"];
/// `PROXY_TUNNEL_IDLE_TIMEOUT` (nginx `proxy_read_timeout` on a WebSocket)
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `PROXY_UNDERSCORES_IN_HEADERS` (nginx `underscores_in_headers off`)
pub const UNDERSCORES_IN_HEADERS: bool = false;
/// `PROXY_STATIC_CACHE_CONTROL`: browsers revalidate every time (a cheap 304), so an edit shows
/// at once.
pub const STATIC_CACHE_CONTROL: &str = "no-cache";
/// `PROXY_COMPRESSION`: server preference (br only as precompressed `.br` siblings).
pub const COMPRESSION: &str = "zstd,br,gzip";
/// `PROXY_COMPRESSION_MIN_SIZE` (nginx `gzip_min_length` is 20; 1 KiB saves the CPU on tiny
/// bodies).
pub const COMPRESSION_MIN_SIZE: u64 = 1024;
/// `PROXY_COMPRESSION_UPSTREAM`: off, because of BREACH.
pub const COMPRESSION_UPSTREAM: bool = false;
/// `PROXY_INSPECT_ENTRIES`: exchanges the inspector keeps.
pub const INSPECT_ENTRIES: usize = 1000;
/// `PROXY_INSPECT_BODY_LIMIT`: bytes of each body the inspector keeps.
pub const INSPECT_BODY_LIMIT: u64 = 1024 * 1024;
/// `PROXY_INSPECT_MEMORY`: bytes the inspector's kept heads and bodies may take together.
pub const INSPECT_MEMORY: u64 = 64 * 1024 * 1024;
/// Smallest accepted `PROXY_INSPECT_MEMORY`.
pub const INSPECT_MIN_MEMORY: u64 = 1024 * 1024;
/// `PROXY_INSPECT_MASK`: credentials shown as `***`.
pub const INSPECT_MASK: bool = true;
