//! The access log (STUB — owned by the error-page/logs work; keep these signatures).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `PROXY_ACCESS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// nginx `combined`, byte for byte.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub remote_addr: IpAddr,
    pub remote_user: Option<String>,
    pub time: time::OffsetDateTime,
    pub method: String,
    /// The request target as received (path and query).
    pub target: String,
    /// `HTTP/1.1`, `HTTP/2.0`, …
    pub protocol: &'static str,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
    pub upstream_addr: Option<SocketAddr>,
    pub request_time: Duration,
    pub upstream_time: Option<Duration>,
}

/// A cheap, cloneable handle; `log` never blocks the request path.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {}

impl AccessLog {
    /// A log that drops every entry.
    pub fn disabled() -> Self {
        AccessLog {}
    }

    /// Queue one entry for writing.
    pub fn log(&self, _entry: AccessEntry) {}
}
