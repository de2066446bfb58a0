//! The bounds the connection loop puts on every connection.

use std::time::Duration;

/// Bounds on every connection. Defaults follow nginx where nginx has one.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed for the TLS handshake (nginx: `ssl_handshake_timeout` 60 s; we use 10 s).
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's header block (nginx `client_header_timeout`).
    pub header_read_timeout: Duration,
    /// Largest accepted HTTP/1 header block in bytes (hyper's read buffer).
    pub max_header_bytes: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 header list size.
    pub h2_max_header_list_size: u32,
    /// Connections served at once; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// A connection without a request for this long (HTTP/2 PINGs do not count), or that moved
    /// no byte for this long while a request is open, is closed gracefully (nginx
    /// `keepalive_timeout`); an in-flight request still completes.
    pub idle_timeout: Duration,
    /// Requests served on one connection, then it is closed gracefully: HTTP/1.1 `Connection:
    /// close` on the last answer, HTTP/2 GOAWAY (nginx `keepalive_requests`). `None`: no limit.
    pub max_requests: Option<usize>,
    /// Age of a connection after which it is closed gracefully, after the answer in flight
    /// (nginx `keepalive_time`). `None`: no limit.
    pub max_lifetime: Option<Duration>,
    /// An answer the client takes no byte of for this long is given up (nginx `send_timeout`):
    /// its HTTP/2 stream is reset, its HTTP/1.1 connection closed.
    pub send_timeout: Duration,
}

impl Limits {
    /// hyper's HTTP/1 read buffer: headroom above `max_header_bytes`, so the service can answer
    /// 431 with a proper page (hyper itself answers a bare 431 beyond it).
    pub fn read_buffer(&self) -> usize {
        self.max_header_bytes.saturating_mul(2).max(16 * 1024) + 8192
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(60),
            max_header_bytes: 32 * 1024,
            h2_max_concurrent_streams: 128,
            h2_max_header_list_size: 32 * 1024,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            // Unbounded by default: the app's one client is the proxy, whose multiplexed
            // upstream connection should not be recycled every few thousand requests. The
            // proxy sets nginx's 1000 requests and 1 h for its own clients.
            max_requests: None,
            max_lifetime: None,
            send_timeout: Duration::from_secs(60),
        }
    }
}
