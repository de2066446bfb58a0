//! How an entry is shown: its summary (the list and the live stream), its detail (heads with
//! credentials masked, bodies decoded: gzip and zstd inflated, JSON pretty-printed, text as it
//! is, anything else as hex), and the query filters of the list.

use std::io::Read;

use serde_json::{Value, json};

use super::store::{BodyBuf, Entry, Fields};

/// Header fields whose values are shown as [`MASK`] unless `PROXY_INSPECT_MASK=false`.
pub const MASKED: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
/// What a masked value is shown as.
pub const MASK: &str = "***";
/// Binary bodies: at most this many bytes shown as hex.
const HEX_SHOWN: usize = 4096;

/// The fields the list shows.
pub fn summary(e: &Entry) -> Value {
    let req_size = e.request_body.with(|b| b.map_or(0, |b| b.total));
    json!({
        "id": e.id,
        "replay_of": e.replay_of,
        "time": rfc3339(e.time),
        "method": e.method.as_str(),
        "host": e.host,
        "path": e.target,
        "protocol": e.protocol,
        "status": e.status,
        "duration_ms": ms(e.timing.total),
        "route": &*e.route,
        "upstream_addr": e.upstream_addr.map(|a| a.to_string()),
        "request_id": e.request_id,
        "request_size": req_size,
        "response_size": e.response_body.total,
        "client": e.client.to_string(),
    })
}

/// Everything about one entry.
pub fn detail(e: &Entry, mask: bool, limit: u64) -> Value {
    let mut v = summary(e);
    if let (Some(frames), Value::Object(m)) = (&e.frames, &mut v) {
        let (kept, total) = frames.snapshot();
        let list: Vec<Value> = kept.iter().map(frame).collect();
        m.insert("frames".into(), json!({"total": total, "kept": list}));
    }
    if let Value::Object(m) = &mut v {
        m.insert(
            "timing".into(),
            json!({
                "queued_ms": e.timing.queued.map(ms),
                "connect_ms": Value::Null,
                "ttfb_ms": e.timing.ttfb.map(ms),
                "total_ms": ms(e.timing.total),
            }),
        );
        let req_body = e.request_body.with(|b| body(b, &e.request_headers, limit));
        m.insert(
            "request".into(),
            json!({"headers": headers(&e.request_headers, mask), "body": req_body}),
        );
        m.insert(
            "response".into(),
            json!({"headers": headers(&e.response_headers, mask),
                   "body": body(Some(&e.response_body), &e.response_headers, limit)}),
        );
    }
    v
}

/// One WebSocket frame as the page shows it.
fn frame(f: &super::frames::Frame) -> Value {
    let kind = match f.opcode {
        0 => "continuation",
        1 => "text",
        2 => "binary",
        8 => "close",
        9 => "ping",
        10 => "pong",
        _ => "other",
    };
    let first = match std::str::from_utf8(&f.first) {
        Ok(text) if f.opcode != 2 => text.to_owned(),
        _ => f
            .first
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    };
    json!({"direction": if f.outgoing { "client → upstream" } else { "upstream → client" },
           "opcode": kind, "size": f.size, "first": first, "at_ms": f.at_ms})
}

/// Header fields in order as `[name, value]` pairs, credentials masked.
pub fn headers(h: &Fields, mask: bool) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            let value = if mask && MASKED.contains(&n) {
                MASK.to_owned()
            } else {
                String::from_utf8_lossy(v).into_owned()
            };
            (n.to_owned(), value)
        })
        .collect()
}

/// A body as the page shows it.
fn body(b: Option<&BodyBuf>, h: &Fields, limit: u64) -> Value {
    let Some(b) = b else {
        return json!({"size": 0, "kept": 0, "complete": true, "kind": "empty", "text": ""});
    };
    let encoding = h.get("content-encoding").unwrap_or("").to_ascii_lowercase();
    let (bytes, note) = decode(&b.kept, &encoding, limit);
    let ctype = h.get("content-type").unwrap_or("").to_owned();
    let (kind, text) = render(&bytes, &ctype);
    json!({
        "size": b.total,
        "kept": b.kept.len(),
        "complete": b.whole(),
        "over_budget": b.over_budget,
        "content_type": ctype,
        "encoding": encoding,
        "decoded": note,
        "kind": kind,
        "text": text,
    })
}

/// Inflate a gzip or zstd body (as far as it was kept, at most `limit` bytes out).
pub fn decode(kept: &[u8], encoding: &str, limit: u64) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    let result = match encoding {
        "" | "identity" => return (kept.to_vec(), None),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(kept)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(kept)
            .take(limit)
            .read_to_end(&mut out),
        "zstd" => match zstd::stream::read::Decoder::new(kept) {
            Ok(d) => d.take(limit).read_to_end(&mut out),
            Err(e) => Err(e),
        },
        other => return (kept.to_vec(), Some(format!("{other}: not decoded"))),
    };
    match result {
        Ok(_) => (out, Some(format!("{encoding}: decoded"))),
        // A body kept in part inflates in part.
        Err(_) if !out.is_empty() => (out, Some(format!("{encoding}: decoded in part"))),
        Err(e) => (
            kept.to_vec(),
            Some(format!("{encoding}: cannot decode ({e})")),
        ),
    }
}

/// `json` (pretty-printed), `text`, `binary` (hex) or `empty`.
fn render(bytes: &[u8], ctype: &str) -> (&'static str, String) {
    if bytes.is_empty() {
        return ("empty", String::new());
    }
    if ctype.contains("json")
        && let Ok(v) = serde_json::from_slice::<Value>(bytes)
    {
        return ("json", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => ("text", text.to_owned()),
        Err(e) if e.valid_up_to() + 4 > bytes.len() && e.error_len().is_none() => {
            // Cut inside a character at the body limit: still text.
            ("text", String::from_utf8_lossy(bytes).into_owned())
        }
        Err(_) => ("binary", hex(bytes)),
    }
}

/// A hex dump: offset, 16 bytes, their printable form.
fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, row) in bytes[..bytes.len().min(HEX_SHOWN)].chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", i * 16));
        for b in row {
            out.push_str(&format!("{b:02x} "));
        }
        out.push_str(&"   ".repeat(16 - row.len()));
        out.push(' ');
        out.extend(row.iter().map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    if bytes.len() > HEX_SHOWN {
        out.push_str(&format!("… {} more bytes\n", bytes.len() - HEX_SHOWN));
    }
    out
}

/// The list's filters: `q` (text in method, host, path, request id), `status` (`2`, `2xx`, or
/// a code), `host`.
#[derive(Debug, Default)]
pub struct Filter {
    pub text: Option<String>,
    pub status: Option<String>,
    pub host: Option<String>,
    pub limit: Option<usize>,
}

impl Filter {
    pub fn from_query(query: Option<&str>) -> Self {
        let mut f = Filter::default();
        for pair in query.unwrap_or_default().split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .trim()
                .to_owned();
            if v.is_empty() {
                continue;
            }
            match k {
                "q" => f.text = Some(v.to_lowercase()),
                "status" => f.status = Some(v.to_lowercase().trim_end_matches("xx").to_owned()),
                "host" => f.host = Some(v.to_lowercase()),
                "limit" => f.limit = v.parse().ok(),
                _ => {}
            }
        }
        f
    }

    pub fn matches(&self, e: &Entry) -> bool {
        let status = e.status.to_string();
        self.status
            .as_ref()
            .is_none_or(|s| status.starts_with(s.as_str()))
            && self
                .host
                .as_ref()
                .is_none_or(|h| e.host.to_lowercase().contains(h.as_str()))
            && self.text.as_ref().is_none_or(|t| {
                [
                    e.method.as_str(),
                    &e.host,
                    &e.target,
                    &e.request_id,
                    &status,
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(t.as_str()))
            })
    }
}

pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_and_zstd_bodies_are_decoded_even_when_cut() {
        let text = "hello inspector ".repeat(500);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert_eq!(decode(&gz, "gzip", 1 << 20).0, text.as_bytes());
        // Kept in part (the body limit): the part inflates.
        let (part, note) = decode(&gz[..gz.len() / 2], "gzip", 1 << 20);
        assert!(!part.is_empty() && text.as_bytes().starts_with(&part));
        assert_eq!(note.as_deref(), Some("gzip: decoded in part"));
        let zst = zstd::encode_all(text.as_bytes(), 3).expect("zstd");
        assert_eq!(decode(&zst, "zstd", 1 << 20).0, text.as_bytes());
        // Inflated output is bounded by the limit.
        assert_eq!(decode(&zst, "zstd", 100).0.len(), 100);
        let (_, note) = decode(b"\x1b\x00", "br", 100);
        assert_eq!(note.as_deref(), Some("br: not decoded"));
    }

    #[test]
    fn bodies_render_as_json_text_or_hex() {
        assert_eq!(
            render(br#"{"a":1}"#, "application/json").1,
            "{\n  \"a\": 1\n}"
        );
        assert_eq!(render(b"plain", "text/plain"), ("text", "plain".into()));
        let (kind, hex) = render(&[0, 159, 146, 150], "");
        assert_eq!(kind, "binary");
        assert!(hex.starts_with("00000000  00 9f 92 96"), "{hex}");
    }

    #[test]
    fn filters_by_status_class_and_text() {
        let f = Filter::from_query(Some("status=4xx&q=%2Fapi"));
        assert_eq!(f.status.as_deref(), Some("4"));
        assert_eq!(f.text.as_deref(), Some("/api"));
    }
}
