//! The access log: nginx `combined` lines byte for byte (or one JSON object per line), queued to
//! the log writer thread so that logging never blocks or slows the request path.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::TrySendError;
use std::time::Duration;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::log_dir::{Msg, Sink};

/// `PROXY_ACCESS_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// nginx `combined`, byte for byte.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    /// `combined` or `json` (any case), for `PROXY_ACCESS_LOG_FORMAT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "combined" => Ok(Format::Combined),
            "json" => Ok(Format::Json),
            _ => Err("expected combined or json".to_owned()),
        }
    }
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
pub struct AccessLog {
    sink: Option<Sink>,
}

impl AccessLog {
    /// A log that drops every entry.
    pub fn disabled() -> Self {
        AccessLog { sink: None }
    }

    pub(crate) fn new(sink: Sink) -> Self {
        AccessLog { sink: Some(sink) }
    }

    /// Queue one entry for writing. When the queue is full the entry is dropped and counted (the
    /// count is reported in error.log); this never waits.
    pub fn log(&self, entry: AccessEntry) {
        let Some(sink) = &self.sink else { return };
        match sink.tx.try_send(Msg::Access(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => sink.count_drop(),
            // The writer has shut down (after the final flush): nothing more can be written.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

const TIME_LOCAL: &[BorrowedFormatItem<'static>] = format_description!(
    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
);

/// nginx `$time_local`: `29/Nov/2026:13:47:02 +0000`.
pub fn time_local(t: time::OffsetDateTime) -> String {
    t.format(TIME_LOCAL).unwrap_or_else(|_| "-".to_owned())
}

/// The `$request` line: `GET /path?q HTTP/1.1`.
fn request_line(e: &AccessEntry) -> String {
    format!("{} {} {}", e.method, e.target, e.protocol)
}

/// Append `value` as nginx writes a variable into a log: `-` when empty; `"`, `\`, bytes below
/// 0x20 and bytes from 0x7f up as `\xHH` (upper-case hex).
fn push_escaped(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('-');
        return;
    }
    for &b in value.as_bytes() {
        if !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\' {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// One nginx `combined` line, without the trailing newline:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`.
pub fn format_combined(e: &AccessEntry) -> String {
    let mut out = String::with_capacity(160 + e.target.len());
    push_escaped(&mut out, &e.remote_addr.to_canonical().to_string());
    out.push_str(" - ");
    push_escaped(&mut out, e.remote_user.as_deref().unwrap_or(""));
    out.push_str(" [");
    out.push_str(&time_local(e.time));
    out.push_str("] \"");
    push_escaped(&mut out, &request_line(e));
    let _ = write!(out, "\" {} {} \"", e.status, e.body_bytes_sent);
    push_escaped(&mut out, e.referer.as_deref().unwrap_or(""));
    out.push_str("\" \"");
    push_escaped(&mut out, e.user_agent.as_deref().unwrap_or(""));
    out.push('"');
    out
}

/// Seconds with millisecond precision, as nginx prints `$request_time`: `0.012`.
pub fn seconds(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

fn json_str(out: &mut String, value: Option<&str>) {
    match value.filter(|v| !v.is_empty()) {
        // Serialising a &str cannot fail.
        Some(v) => out.push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".into())),
        None => out.push_str("null"),
    }
}

/// One JSON object, without the trailing newline. Keys are nginx's variable names; absent
/// values are `null`; times are numbers of seconds with millisecond precision.
pub fn format_json(e: &AccessEntry) -> String {
    let mut out = String::with_capacity(320 + e.target.len());
    out.push_str("{\"time_local\":");
    json_str(&mut out, Some(&time_local(e.time)));
    let iso = e
        .time
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .ok();
    out.push_str(",\"time_iso8601\":");
    json_str(&mut out, iso.as_deref());
    out.push_str(",\"remote_addr\":");
    json_str(&mut out, Some(&e.remote_addr.to_canonical().to_string()));
    out.push_str(",\"remote_user\":");
    json_str(&mut out, e.remote_user.as_deref());
    out.push_str(",\"request\":");
    json_str(&mut out, Some(&request_line(e)));
    let _ = write!(
        out,
        ",\"status\":{},\"body_bytes_sent\":{}",
        e.status, e.body_bytes_sent
    );
    out.push_str(",\"http_referer\":");
    json_str(&mut out, e.referer.as_deref());
    out.push_str(",\"http_user_agent\":");
    json_str(&mut out, e.user_agent.as_deref());
    out.push_str(",\"request_id\":");
    json_str(&mut out, Some(&e.request_id));
    out.push_str(",\"upstream_addr\":");
    json_str(&mut out, e.upstream_addr.map(|a| a.to_string()).as_deref());
    let _ = write!(out, ",\"request_time\":{}", seconds(e.request_time));
    out.push_str(",\"upstream_response_time\":");
    match e.upstream_time {
        Some(d) => out.push_str(&seconds(d)),
        None => out.push_str("null"),
    }
    out.push('}');
    out
}

/// The line for `format`, without the trailing newline.
pub fn format_line(format: Format, e: &AccessEntry) -> String {
    match format {
        Format::Combined => format_combined(e),
        Format::Json => format_json(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry() -> AccessEntry {
        AccessEntry {
            remote_addr: "203.0.113.7".parse().expect("ip"),
            remote_user: None,
            time: datetime!(2026-11-29 13:47:02.345 UTC),
            method: "GET".into(),
            target: "/quote?lang=en".into(),
            protocol: "HTTP/1.1",
            status: 200,
            body_bytes_sent: 612,
            referer: Some("https://example.com/".into()),
            user_agent: Some("curl/8.5.0".into()),
            request_id: "4f2a9c".into(),
            upstream_addr: Some("172.18.0.3:8000".parse().expect("addr")),
            request_time: Duration::from_micros(12_987),
            upstream_time: Some(Duration::from_millis(10)),
        }
    }

    #[test]
    fn combined_line_matches_nginx() {
        assert_eq!(
            format_combined(&entry()),
            "203.0.113.7 - - [29/Nov/2026:13:47:02 +0000] \"GET /quote?lang=en HTTP/1.1\" 200 612 \
             \"https://example.com/\" \"curl/8.5.0\""
        );
    }

    #[test]
    fn empty_values_are_dashes_and_offsets_kept() {
        let mut e = entry();
        e.referer = None;
        e.user_agent = Some(String::new());
        e.remote_addr = "::ffff:10.0.0.1".parse().expect("ip");
        e.time = datetime!(2026-01-05 08:00:00 +05:30);
        e.status = 502;
        e.body_bytes_sent = 0;
        e.protocol = "HTTP/2.0";
        assert_eq!(
            format_combined(&e),
            "10.0.0.1 - - [05/Jan/2026:08:00:00 +0530] \"GET /quote?lang=en HTTP/2.0\" 502 0 \"-\" \"-\""
        );
    }

    #[test]
    fn escapes_like_nginx() {
        let mut e = entry();
        e.user_agent = Some("a\"b\\c\td\u{7f}é".into());
        e.target = "/x\"y".into();
        let line = format_combined(&e);
        assert!(line.contains("\"GET /x\\x22y HTTP/1.1\""), "{line}");
        assert!(
            line.ends_with("\"a\\x22b\\x5Cc\\x09d\\x7F\\xC3\\xA9\""),
            "{line}"
        );
    }

    #[test]
    fn json_line_has_all_fields() {
        let line = format_json(&entry());
        assert!(line.contains("\"request_time\":0.012,"), "{line}");
        assert!(
            line.ends_with("\"upstream_response_time\":0.010}"),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid json");
        assert_eq!(v["remote_addr"], "203.0.113.7");
        assert_eq!(v["remote_user"], serde_json::Value::Null);
        assert_eq!(v["time_local"], "29/Nov/2026:13:47:02 +0000");
        assert_eq!(v["time_iso8601"], "2026-11-29T13:47:02.345Z");
        assert_eq!(v["request"], "GET /quote?lang=en HTTP/1.1");
        assert_eq!(v["status"], 200);
        assert_eq!(v["body_bytes_sent"], 612);
        assert_eq!(v["http_referer"], "https://example.com/");
        assert_eq!(v["http_user_agent"], "curl/8.5.0");
        assert_eq!(v["request_id"], "4f2a9c");
        assert_eq!(v["upstream_addr"], "172.18.0.3:8000");

        let mut e = entry();
        e.upstream_addr = None;
        e.upstream_time = None;
        e.user_agent = Some("q\"\n".into());
        let v: serde_json::Value = serde_json::from_str(&format_json(&e)).expect("valid json");
        assert_eq!(v["upstream_addr"], serde_json::Value::Null);
        assert_eq!(v["upstream_response_time"], serde_json::Value::Null);
        assert_eq!(v["http_user_agent"], "q\"\n");
    }

    #[test]
    fn seconds_have_millisecond_precision() {
        assert_eq!(seconds(Duration::from_secs(1)), "1.000");
        assert_eq!(seconds(Duration::from_micros(1_999)), "0.001");
        assert_eq!(seconds(Duration::ZERO), "0.000");
    }

    #[test]
    fn format_parses_from_settings() {
        assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
        assert_eq!("combined".parse::<Format>(), Ok(Format::Combined));
        assert!("xml".parse::<Format>().is_err());
    }
}
