//! The access log: nginx `combined` lines byte for byte (or one JSON object per line), queued to
//! the log writer thread so that logging never blocks or slows the request path.

use std::fmt::Write as _;
use std::time::Duration;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use super::entry::{AccessEntry, LogText};
use super::queue::{Msg, Sink};
use crate::config::LogFormat;

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
        self.log_boxed(Box::new(entry));
    }

    /// As [`AccessLog::log`], for an entry already on the heap.
    pub fn log_boxed(&self, entry: Box<AccessEntry>) {
        if let Some(sink) = &self.sink {
            sink.offer(Msg::Access(entry));
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

/// `$time_local` formatted once per second and offset, as nginx caches its time strings; the
/// writer thread keeps one.
#[derive(Debug, Default)]
pub struct TimeCache {
    key: Option<(i64, time::UtcOffset)>,
    text: String,
}

impl TimeCache {
    /// `$time_local` for `t`.
    pub fn time_local(&mut self, t: time::OffsetDateTime) -> &str {
        let key = (t.unix_timestamp(), t.offset());
        if self.key != Some(key) {
            self.text = time_local(t);
            self.key = Some(key);
        }
        &self.text
    }
}

/// Append `value` as nginx writes a variable into a log: `-` when empty; `"`, `\`, bytes below
/// 0x20 and bytes from 0x7f up as `\xHH` (upper-case hex).
fn push_escaped(out: &mut String, value: &[u8]) {
    if value.is_empty() {
        out.push('-');
        return;
    }
    push_escaped_part(out, value);
}

fn push_escaped_part(out: &mut String, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut rest = value;
    while !rest.is_empty() {
        let plain = rest
            .iter()
            .position(|&b| !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        let (ok, tail) = rest.split_at(plain);
        // Printable ASCII only: valid UTF-8.
        out.push_str(std::str::from_utf8(ok).unwrap_or_default());
        if let Some((&b, tail)) = tail.split_first() {
            out.push_str("\\x");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
            rest = tail;
        } else {
            rest = tail;
        }
    }
}

fn text(v: Option<&LogText>) -> &[u8] {
    v.map_or(&[], LogText::as_bytes)
}

/// One nginx `combined` line, without the trailing newline:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent"`.
pub fn format_combined(e: &AccessEntry) -> String {
    let mut out = String::new();
    write_combined(&mut out, e, &mut TimeCache::default());
    out
}

/// [`format_combined`] appended to `out`, with the time string from `times`.
fn write_combined(out: &mut String, e: &AccessEntry, times: &mut TimeCache) {
    let _ = write!(out, "{}", e.remote_addr.to_canonical());
    out.push_str(" - ");
    push_escaped(out, text(e.remote_user.as_ref()));
    out.push_str(" [");
    out.push_str(times.time_local(e.time));
    out.push_str("] \"");
    push_escaped_part(out, e.method.as_bytes());
    out.push(' ');
    push_escaped_part(out, e.target.as_bytes());
    out.push(' ');
    out.push_str(e.protocol);
    let _ = write!(out, "\" {} {} \"", e.status, e.body_bytes_sent);
    push_escaped(out, text(e.referer.as_ref()));
    out.push_str("\" \"");
    push_escaped(out, text(e.user_agent.as_ref()));
    out.push('"');
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
    let mut out = String::new();
    write_json(&mut out, e, &mut TimeCache::default());
    out
}

/// [`format_json`] appended to `out`, with the time string from `times`.
fn write_json(out: &mut String, e: &AccessEntry, times: &mut TimeCache) {
    out.push_str("{\"time_local\":");
    json_str(out, Some(times.time_local(e.time)));
    let iso = e
        .time
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .ok();
    out.push_str(",\"time_iso8601\":");
    json_str(out, iso.as_deref());
    out.push_str(",\"remote_addr\":");
    json_str(out, Some(&e.remote_addr.to_canonical().to_string()));
    out.push_str(",\"remote_user\":");
    json_str(out, e.remote_user.as_ref().map(LogText::lossy).as_deref());
    let request = format!("{} {} {}", e.method.lossy(), e.target.lossy(), e.protocol);
    out.push_str(",\"request\":");
    json_str(out, Some(&request));
    let _ = write!(
        out,
        ",\"status\":{},\"body_bytes_sent\":{}",
        e.status, e.body_bytes_sent
    );
    out.push_str(",\"http_referer\":");
    json_str(out, e.referer.as_ref().map(LogText::lossy).as_deref());
    out.push_str(",\"http_user_agent\":");
    json_str(out, e.user_agent.as_ref().map(LogText::lossy).as_deref());
    out.push_str(",\"request_id\":");
    json_str(out, Some(&e.request_id.lossy()));
    out.push_str(",\"upstream_addr\":");
    json_str(out, e.upstream_addr.map(|a| a.to_string()).as_deref());
    let _ = write!(out, ",\"request_time\":{}", seconds(e.request_time));
    out.push_str(",\"upstream_response_time\":");
    match e.upstream_time {
        Some(d) => out.push_str(&seconds(d)),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// The line for `format`, without the trailing newline, appended to `out`.
pub fn write_line(out: &mut String, format: LogFormat, e: &AccessEntry, times: &mut TimeCache) {
    match format {
        LogFormat::Combined => write_combined(out, e, times),
        LogFormat::Json => write_json(out, e, times),
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
        e.user_agent = Some("".into());
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
}
