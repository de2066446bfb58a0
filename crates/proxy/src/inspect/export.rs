//! Entries for other tools: HAR 1.2 (one entry or all) and a `curl` command line that sends the
//! same request again. Credentials stay masked unless `PROXY_INSPECT_MASK=false`.

use serde_json::{Value, json};

use super::store::{BodyBuf, Entry, Fields};
use super::view::{self, headers, ms, rfc3339};

/// A HAR 1.2 log of `entries` (oldest first, as HAR viewers expect).
pub fn har<'a>(entries: impl Iterator<Item = &'a Entry>, mask: bool, limit: u64) -> Value {
    let entries: Vec<Value> = entries.map(|e| har_entry(e, mask, limit)).collect();
    json!({"log": {
        "version": "1.2",
        "creator": {"name": "containerize proxy", "version": env!("CARGO_PKG_VERSION")},
        "entries": entries,
    }})
}

fn har_entry(e: &Entry, mask: bool, limit: u64) -> Value {
    let url = format!("https://{}{}", e.host, e.target);
    let queued = e.timing.queued.map_or(0.0, ms);
    let wait = e.timing.ttfb.map_or(0.0, ms);
    let total = ms(e.timing.total);
    let post = e
        .request_body
        .with(|b| b.map(|b| content(b, &e.request_headers, limit)));
    let mut request = json!({
        "method": e.method.as_str(),
        "url": url,
        "httpVersion": e.protocol,
        "cookies": [],
        "headers": pairs(&e.request_headers, mask),
        "queryString": query(&e.target),
        "headersSize": -1,
        "bodySize": e.request_body.with(|b| b.map_or(0, |b| b.total)),
    });
    if let (Some(post), Value::Object(r)) = (post, &mut request) {
        r.insert("postData".into(), post);
    }
    json!({
        "startedDateTime": rfc3339(e.time),
        "time": total,
        "request": request,
        "response": {
            "status": e.status,
            "statusText": http::StatusCode::from_u16(e.status).ok().and_then(|s| s.canonical_reason()).unwrap_or(""),
            "httpVersion": e.protocol,
            "cookies": [],
            "headers": pairs(&e.response_headers, mask),
            "content": content(&e.response_body, &e.response_headers, limit),
            "redirectURL": e.response_headers.get("location").unwrap_or(""),
            "headersSize": -1,
            "bodySize": e.response_body.total,
        },
        "cache": {},
        "timings": {"blocked": queued, "send": 0, "wait": wait, "receive": (total - queued - wait).max(0.0)},
        "serverIPAddress": e.upstream_addr.map(|a| a.ip().to_string()),
        "_id": e.id,
        "_replayOf": e.replay_of,
        "_requestId": e.request_id,
        "_route": &*e.route,
    })
}

/// HAR `content`/`postData`: decoded text, or base64 for binary; `_kept` < `size` when only the
/// first part was kept.
fn content(b: &BodyBuf, h: &Fields, limit: u64) -> Value {
    let mime = h.get("content-type").unwrap_or("");
    let encoding = h.get("content-encoding").unwrap_or("").to_ascii_lowercase();
    let (bytes, _) = view::decode(&b.kept, &encoding, limit);
    let mut c = json!({"size": b.total, "mimeType": mime, "_kept": b.kept.len()});
    if let Value::Object(m) = &mut c {
        match String::from_utf8(bytes) {
            Ok(text) => m.insert("text".into(), text.into()),
            Err(e) => {
                m.insert("encoding".into(), "base64".into());
                m.insert("text".into(), base64(e.as_bytes()).into())
            }
        };
    }
    c
}

fn pairs(h: &Fields, mask: bool) -> Vec<Value> {
    headers(h, mask)
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

fn query(target: &str) -> Vec<Value> {
    let Some((_, q)) = target.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            json!({"name": n, "value": v})
        })
        .collect()
}

/// `curl` sending the same request (`-k`: the development certificate).
pub fn curl(e: &Entry, mask: bool) -> String {
    let mut out = format!(
        "curl -k -X {} {}",
        e.method,
        quote(&format!("https://{}{}", e.host, e.target))
    );
    for (name, value) in headers(&e.request_headers, mask) {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            continue;
        }
        out.push_str(" \\\n  -H ");
        out.push_str(&quote(&format!("{name}: {value}")));
    }
    e.request_body.with(|b| {
        let Some(b) = b.filter(|b| b.total > 0) else {
            return;
        };
        match std::str::from_utf8(&b.kept) {
            Ok(text) if b.whole() => {
                out.push_str(" \\\n  --data-binary ");
                out.push_str(&quote(text));
            }
            _ => out.push_str(&format!(
                " \\\n  --data-binary @body.bin   # {} bytes, binary or not kept whole",
                b.total
            )),
        }
    });
    out.push('\n');
    out
}

/// One shell word in single quotes.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
