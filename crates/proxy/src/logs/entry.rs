//! One access-log record: what a finished request leaves behind, its fields shared with the
//! request (no copies on the request path); formatted later, on the writer thread.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method};

/// One finished request.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub remote_addr: IpAddr,
    pub remote_user: Option<LogText>,
    pub time: time::OffsetDateTime,
    pub method: LogText,
    /// The request target as received (path and query).
    pub target: LogText,
    /// `HTTP/1.1`, `HTTP/2.0`, …
    pub protocol: &'static str,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub referer: Option<LogText>,
    pub user_agent: Option<LogText>,
    pub request_id: LogText,
    pub upstream_addr: Option<SocketAddr>,
    pub request_time: Duration,
    pub upstream_time: Option<Duration>,
}

/// The bytes of one log field. Request parts are shared with the request (a reference count,
/// no copy): the line is formatted on the writer thread, off the request path.
#[derive(Debug, Clone)]
pub struct LogText(Text);

#[derive(Debug, Clone)]
enum Text {
    Header(HeaderValue),
    Path(PathAndQuery),
    Method(Method),
    Owned(Box<str>),
}

impl LogText {
    /// The raw bytes, as received (not necessarily UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Text::Header(v) => v.as_bytes(),
            Text::Path(p) => p.as_str().as_bytes(),
            Text::Method(m) => m.as_str().as_bytes(),
            Text::Owned(s) => s.as_bytes(),
        }
    }

    pub(crate) fn lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl From<HeaderValue> for LogText {
    fn from(v: HeaderValue) -> Self {
        LogText(Text::Header(v))
    }
}

impl From<PathAndQuery> for LogText {
    fn from(p: PathAndQuery) -> Self {
        LogText(Text::Path(p))
    }
}

impl From<Method> for LogText {
    fn from(m: Method) -> Self {
        LogText(Text::Method(m))
    }
}

impl From<String> for LogText {
    fn from(s: String) -> Self {
        LogText(Text::Owned(s.into_boxed_str()))
    }
}

impl From<&str> for LogText {
    fn from(s: &str) -> Self {
        LogText(Text::Owned(s.into()))
    }
}
