//! Every proxy setting, declared once: variable, type, default (as a user writes it), one line of
//! help. Parsing, `--help`, `proxy check` and the errors that name a variable all come from here;
//! README's tables and the compose, stack and k8s files are tested against [`ALL`]. A new setting
//! is one entry here plus the field it is read into (`config/mod.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::setting::Bytes;

use super::TlsNames;
use super::files::{Codings, Header, StaticRoots};
use super::upstream::{Upstream, UpstreamHttp2};
use super::values::{AtLeastOne, Hsts, LogFormat, Port, TrustedProxies, UpgradeProtocols, Workers};

common::settings! {
    // Listeners and TLS
    HTTP_LISTEN: SocketAddr = "PROXY_HTTP_LISTEN", "0.0.0.0:80",
        "plain-HTTP listener, HTTP/1.1, redirects only";
    HTTPS_LISTEN: SocketAddr = "PROXY_HTTPS_LISTEN", "0.0.0.0:443", "HTTPS listener";
    HTTPS_PORT: Port = "PROXY_HTTPS_PORT", "443", "port written into redirects; omitted when 443";
    TLS_CERT: PathBuf = "PROXY_TLS_CERT", "/etc/proxy/tls/localhost.crt",
        "PEM chain, leaf first";
    TLS_KEY: PathBuf = "PROXY_TLS_KEY", "/etc/proxy/tls/localhost.key", "PEM private key";
    TLS_GENERATE: bool = "PROXY_TLS_GENERATE", "true",
        "both files absent: create a development CA (ca.crt, ca.key beside them) and a leaf it \
         signs; renew that leaf";
    TLS_NAMES: TlsNames = "PROXY_TLS_NAMES", "localhost, 127.0.0.1, ::1",
        "names of a generated leaf, and all the development CA may sign for";
    TLS_RENEW_INTERVAL: Duration = "PROXY_TLS_RENEW_INTERVAL", "1h",
        "how often the CA-issued leaf is checked for renewal (1s to 24h)";
    TLS_ISSUE_RATE: u32 = "PROXY_TLS_ISSUE_RATE", "60",
        "with ca.key: certificates issued on demand for names under the CA's constraints that \
         the leaf does not cover (api.localhost), per minute; 0: none (at most 10000)";
    TLS_ISSUE_CACHE: usize = "PROXY_TLS_ISSUE_CACHE", "256",
        "most names with such a certificate, kept in names/ beside the CA; 0: none (at most \
         10000)";
    HSTS: Hsts = "PROXY_HSTS", "max-age=63072000",
        "Strict-Transport-Security value; empty turns it off";
    // The upstream (one UpstreamConfig)
    UPSTREAM: Upstream = "PROXY_UPSTREAM", "app:8000",
        "host:port of the HTTPS app, re-resolved for new connections";
    ROUTES: String = "PROXY_ROUTES", "",
        "HOST[/PREFIX]=SCHEME://HOST[:PORT] [strip] [max_body=SIZE] [ws=off] entries, by commas \
         or lines; SCHEME https, http or h2c; HOST a name, *.name or *; as a file (_FILE) watched \
         and re-read live; PROXY_UPSTREAM serves what no route claims (when set, or without \
         routes)";
    UPSTREAM_CA: Option<PathBuf> = "PROXY_UPSTREAM_CA", "",
        "PEM CA to verify the upstream with; empty: not verified";
    UPSTREAM_TIMEOUT: Duration = "PROXY_UPSTREAM_TIMEOUT", "60s",
        "longest upstream silence (body not taken, no head after the body: 504; no body byte: cut)";
    UPSTREAM_CONNECT_TIMEOUT: Duration = "PROXY_UPSTREAM_CONNECT_TIMEOUT", "5s",
        "connect to one upstream address, then the next";
    UPSTREAM_FAIL_TIMEOUT: Duration = "PROXY_UPSTREAM_FAIL_TIMEOUT", "10s",
        "skip an address whose connect failed this long";
    UPSTREAM_KEEPALIVE: usize = "PROXY_UPSTREAM_KEEPALIVE", "1024",
        "idle pooled upstream connections kept per worker";
    UPSTREAM_HTTP2: UpstreamHttp2 = "PROXY_UPSTREAM_HTTP2", "auto",
        "auto: HTTP/2 to the upstream when it offers it, else HTTP/1.1; true: HTTP/2 only; \
         false: HTTP/1.1 only";
    UPSTREAM_H2_CONNECTIONS: AtLeastOne = "PROXY_UPSTREAM_H2_CONNECTIONS", "2",
        "HTTP/2 connections per upstream address and worker";
    UPSTREAM_H2_MAX_REQUESTS: AtLeastOne = "PROXY_UPSTREAM_H2_MAX_REQUESTS", "10000",
        "requests one upstream HTTP/2 connection carries, then it is replaced";
    UPSTREAM_H2_LIFETIME: Duration = "PROXY_UPSTREAM_H2_LIFETIME", "60s",
        "age at which an upstream HTTP/2 connection is replaced; 0s is refused";
    // Forwarding
    WORKERS: Workers = "PROXY_WORKERS", "0",
        "event-loop threads, each with its own upstream pool; 0: one per CPU";
    TRUSTED_PROXIES: TrustedProxies = "PROXY_TRUSTED_PROXIES", "",
        "CIDRs whose X-Forwarded-For is kept and appended to, and whose X-Request-Id is kept";
    UPGRADE_PROTOCOLS: UpgradeProtocols = "PROXY_UPGRADE_PROTOCOLS", "websocket",
        "Upgrade protocols tunnelled; others go as plain requests; never h2c";
    UNDERSCORES_IN_HEADERS: bool = "PROXY_UNDERSCORES_IN_HEADERS", "false",
        "forward header names containing _ (nginx underscores_in_headers)";
    ERROR_PAGE: Option<PathBuf> = "PROXY_ERROR_PAGE", "",
        "minijinja HTML template for error answers, re-read when it changes; empty: built-in";
    INTERCEPT_ERRORS: bool = "PROXY_INTERCEPT_ERRORS", "true",
        "replace upstream error bodies (>= 400) with the page";
    // Static files and compression
    STATIC: StaticRoots = "PROXY_STATIC", "",
        "PREFIX=DIR pairs served from folders, never forwarded (nginx alias)";
    STATIC_CACHE_CONTROL: Header = "PROXY_STATIC_CACHE_CONTROL", "no-cache",
        "Cache-Control of static files";
    COMPRESSION: Codings = "PROXY_COMPRESSION", "zstd,br,gzip",
        "codings in server preference, or off; br only as precompressed .br files";
    COMPRESSION_MIN_SIZE: Bytes = "PROXY_COMPRESSION_MIN_SIZE", "1k",
        "smaller bodies are not compressed";
    COMPRESSION_UPSTREAM: bool = "PROXY_COMPRESSION_UPSTREAM", "false",
        "compress the app's answers too (BREACH)";
    // Logs
    LOG_DIR: PathBuf = "PROXY_LOG_DIR", "/var/log/proxy", "folder for access.log and error.log";
    LOG_RETENTION: bool = "LOG_RETENTION", "true",
        "a new dated folder per start and a latest symlink; false: truncate";
    ACCESS_LOG: bool = "PROXY_ACCESS_LOG", "true",
        "write access.log; false is nginx's access_log off";
    ACCESS_LOG_FORMAT: LogFormat = "PROXY_ACCESS_LOG_FORMAT", "combined",
        "combined (nginx) or json";
    LOG: String = "PROXY_LOG", "info", "stdout and error.log filter, e.g. info,proxy=debug";
    // The request inspector
    INSPECT_LISTEN: Option<SocketAddr> = "PROXY_INSPECT_LISTEN", "",
        "the request inspector's page, API and /metrics (plain HTTP; keep it on loopback); \
         empty: off, nothing recorded";
    INSPECT_ENTRIES: AtLeastOne = "PROXY_INSPECT_ENTRIES", "1000", "exchanges the inspector keeps";
    INSPECT_BODY_LIMIT: Bytes = "PROXY_INSPECT_BODY_LIMIT", "1m",
        "bytes of each body kept; the rest is counted";
    INSPECT_MEMORY: Bytes = "PROXY_INSPECT_MEMORY", "64m",
        "bytes all kept heads and bodies may take (at least 1m)";
    INSPECT_MASK: bool = "PROXY_INSPECT_MASK", "true",
        "show Authorization, Proxy-Authorization, Cookie and Set-Cookie values as ***";
    // Limits and timeouts
    HANDSHAKE_TIMEOUT: Duration = "PROXY_HANDSHAKE_TIMEOUT", "10s", "TLS handshake";
    HEADER_TIMEOUT: Duration = "PROXY_HEADER_TIMEOUT", "60s", "receive a request's headers";
    KEEPALIVE_TIMEOUT: Duration = "PROXY_KEEPALIVE_TIMEOUT", "75s",
        "connection without a request (PINGs do not count)";
    KEEPALIVE_REQUESTS: AtLeastOne = "PROXY_KEEPALIVE_REQUESTS", "1000",
        "requests per connection, then closed gracefully";
    KEEPALIVE_LIFETIME: Duration = "PROXY_KEEPALIVE_LIFETIME", "1h",
        "age of a connection, then closed gracefully";
    BODY_TIMEOUT: Duration = "PROXY_BODY_TIMEOUT", "60s",
        "longest gap while reading a request body, then 408";
    SEND_TIMEOUT: Duration = "PROXY_SEND_TIMEOUT", "60s",
        "the client takes no byte of an answer this long: its stream reset (HTTP/1.1: closed)";
    MAX_HEADER_SIZE: Bytes = "PROXY_MAX_HEADER_SIZE", "32k", "request header block (at least 1k)";
    MAX_URI_LENGTH: usize = "PROXY_MAX_URI_LENGTH", "8192", "request target, then 414";
    MAX_BODY_SIZE: Bytes = "PROXY_MAX_BODY_SIZE", "1m", "request body, then 413; 0: unlimited";
    UPSTREAM_MAX_HEADER_SIZE: Bytes = "PROXY_UPSTREAM_MAX_HEADER_SIZE", "32k",
        "the app's answer head, then 502 (nginx proxy_buffer_size)";
    MAX_CONNECTIONS: AtLeastOne = "PROXY_MAX_CONNECTIONS", "10000",
        "connections served at once per listener";
    H2_MAX_STREAMS: u32 = "PROXY_H2_MAX_STREAMS", "128",
        "concurrent HTTP/2 streams per connection";
    TUNNEL_IDLE_TIMEOUT: Duration = "PROXY_TUNNEL_IDLE_TIMEOUT", "60s",
        "WebSocket tunnel silent both ways, then closed";
    DRAIN_TIMEOUT: Duration = "PROXY_DRAIN_TIMEOUT", "10s",
        "SIGTERM waits this long for in-flight requests and tunnels";
}
