//! The request inspector (`PROXY_INSPECT_LISTEN`), end to end: real proxy, real upstreams, real
//! clients through the HTTPS listener, and the inspector's own listener read over plain HTTP:
//! capture (heads, bodies, masking, timing, request id), the bounds (ring, body limit), replay
//! (the upstream really receives it), the live stream, HAR and curl, `/metrics`, the guard
//! against foreign host names.

use std::time::Duration;

use serde_json::Value;

use crate::support::recorder::Recorder;
use crate::support::upstream::TestUpstream;
use crate::support::{TestProxy, client, eventually};

/// A proxy with the inspector on 127.0.0.1:0, in front of `up`.
async fn inspected(up: std::net::SocketAddr, extra: &[(&str, &str)]) -> TestProxy {
    let mut env = vec![("PROXY_INSPECT_LISTEN", "127.0.0.1:0")];
    env.extend_from_slice(extra);
    TestProxy::start(&up.to_string(), &env).await
}

async fn get_json(url: &str) -> Value {
    let text = reqwest::get(url)
        .await
        .expect("inspector answers")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
}

/// The kept entries, newest first (waiting until `n` are kept).
async fn entries(proxy: &TestProxy, n: usize) -> Vec<Value> {
    let url = proxy.inspect_url("/api/entries");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let list = get_json(&url).await["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} entries kept, got {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn detail(proxy: &TestProxy, id: &Value) -> Value {
    get_json(&proxy.inspect_url(&format!("/api/entries/{id}"))).await
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_array()?
        .iter()
        .find(|p| p[0] == name)
        .and_then(|p| p[1].as_str())
}

#[tokio::test]
async fn an_exchange_is_kept_with_heads_bodies_timing_and_its_request_id() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[("PROXY_ACCESS_LOG_FORMAT", "json")]).await;
    let resp = client()
        .post(proxy.url("/echo?x=1"))
        .header("authorization", "Bearer s3cret")
        .header("cookie", "session=abc")
        .header("content-type", "application/json")
        .body(r#"{"hello":"world"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(resp.text().await.expect("body"), r#"{"hello":"world"}"#);

    let list = entries(&proxy, 1).await;
    let e = &list[0];
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], "/echo?x=1");
    assert_eq!(e["status"], 200);
    assert_eq!(
        e["request_id"],
        rid.as_str(),
        "the id the client and access log see"
    );
    // Labelled with its route (here `PROXY_UPSTREAM`'s `*` route), as `proxy check` prints it.
    assert_eq!(e["route"], format!("*=https://{}", up.addr));
    assert_eq!(e["upstream_addr"], up.addr.to_string());
    assert_eq!(e["request_size"], 17);
    assert_eq!(e["response_size"], 17);

    let d = detail(&proxy, &e["id"]).await;
    let req_headers = &d["request"]["headers"];
    assert_eq!(header(req_headers, "authorization"), Some("***"), "masked");
    assert_eq!(header(req_headers, "cookie"), Some("***"), "masked");
    assert_eq!(
        header(req_headers, "content-type"),
        Some("application/json")
    );
    assert_eq!(d["request"]["body"]["kind"], "json");
    assert_eq!(d["request"]["body"]["text"], "{\n  \"hello\": \"world\"\n}");
    assert_eq!(d["response"]["body"]["size"], 17);
    assert_eq!(d["response"]["body"]["complete"], true);
    assert!(d["timing"]["ttfb_ms"].as_f64().is_some_and(|t| t > 0.0));
    assert!(d["timing"]["queued_ms"].as_f64().is_some());
    assert!(d["timing"]["total_ms"].as_f64() >= d["timing"]["ttfb_ms"].as_f64());
    let logged = eventually(Duration::from_secs(5), || async {
        proxy
            .access_log()
            .contains(&format!("\"request_id\":\"{rid}\""))
    })
    .await;
    assert!(logged, "the access log names the same request id");
}

#[tokio::test]
async fn masking_can_be_turned_off() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[("PROXY_INSPECT_MASK", "false")]).await;
    client()
        .get(proxy.url("/id"))
        .header("authorization", "Bearer s3cret")
        .send()
        .await
        .expect("request");
    let e = &entries(&proxy, 1).await[0];
    let d = detail(&proxy, &e["id"]).await;
    assert_eq!(
        header(&d["request"]["headers"], "authorization"),
        Some("Bearer s3cret")
    );
    let curl = reqwest::get(proxy.inspect_url(&format!("/api/entries/{}/curl", e["id"])))
        .await
        .expect("curl")
        .text()
        .await
        .expect("text");
    assert!(curl.contains("-H 'authorization: Bearer s3cret'"), "{curl}");
}

#[tokio::test]
async fn big_bodies_pass_whole_and_only_their_first_part_is_kept() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(
        up.addr,
        &[
            ("PROXY_INSPECT_BODY_LIMIT", "64k"),
            ("PROXY_MAX_BODY_SIZE", "0"),
        ],
    )
    .await;
    let sent = vec![b'x'; 3 << 20];
    let counted = client()
        .post(proxy.url("/count"))
        .body(sent)
        .send()
        .await
        .expect("upload")
        .text()
        .await
        .expect("body");
    assert_eq!(
        counted,
        (3u64 << 20).to_string(),
        "the upstream got every byte"
    );
    let got = client()
        .get(proxy.url("/big?n=2097152"))
        .send()
        .await
        .expect("download")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.len(), 2 << 20, "the client got every byte");

    let list = entries(&proxy, 2).await;
    let (download, upload) = (&list[0], &list[1]);
    assert_eq!(upload["request_size"], 3u64 << 20);
    assert_eq!(download["response_size"], 2u64 << 20);
    let up_detail = detail(&proxy, &upload["id"]).await;
    assert_eq!(up_detail["request"]["body"]["kept"], 64 * 1024);
    assert_eq!(up_detail["request"]["body"]["complete"], false);
    let down_detail = detail(&proxy, &download["id"]).await;
    assert_eq!(down_detail["response"]["body"]["kept"], 64 * 1024);
    assert_eq!(down_detail["response"]["body"]["kind"], "binary");
}

#[tokio::test]
async fn the_ring_keeps_the_newest_entries_only() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[("PROXY_INSPECT_ENTRIES", "5")]).await;
    for i in 0..12 {
        client()
            .get(proxy.url(&format!("/id?n={i}")))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list = entries(&proxy, 5).await;
    let paths: Vec<&str> = list.iter().filter_map(|e| e["path"].as_str()).collect();
    assert_eq!(
        paths,
        ["/id?n=11", "/id?n=10", "/id?n=9", "/id?n=8", "/id?n=7"]
    );
    let filtered = get_json(&proxy.inspect_url("/api/entries?q=n%3D9")).await;
    assert_eq!(filtered["entries"].as_array().map(Vec::len), Some(1));
    let none = get_json(&proxy.inspect_url("/api/entries?status=5xx")).await;
    assert_eq!(none["entries"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_replay_reaches_the_upstream_and_is_linked_to_the_original() {
    let rec = Recorder::start().await;
    let proxy = inspected(rec.addr, &[]).await;
    client()
        .post(proxy.url("/form?a=1"))
        .header("cookie", "session=abc")
        .body("name=value")
        .send()
        .await
        .expect("request");
    let orig = entries(&proxy, 1).await[0].clone();
    let http = reqwest::Client::new();
    let replay_url = proxy.inspect_url(&format!("/api/entries/{}/replay", orig["id"]));
    let as_is = http
        .post(&replay_url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("replay");
    assert_eq!(as_is.status(), 200);
    let new: Value = serde_json::from_str(&as_is.text().await.expect("body")).expect("json");
    assert_eq!(new["replay_of"], orig["id"]);
    assert_ne!(new["id"], orig["id"]);
    let seen = rec.seen();
    assert_eq!(seen.len(), 2, "the upstream received the replay");
    assert_eq!(seen[1].target, "/form?a=1");
    assert_eq!(seen[1].body.as_deref(), Some(&b"name=value"[..]));
    assert_eq!(
        seen[1].headers["cookie"], "session=abc",
        "the real value, not the mask"
    );

    let edit = r#"{"method":"PUT","path":"/edited","headers":[["cookie","***"],["x-edit","1"]],"body":"changed"}"#;
    let edited = http
        .post(&replay_url)
        .header("content-type", "application/json")
        .body(edit)
        .send()
        .await
        .expect("replay");
    assert_eq!(edited.status(), 200, "{:?}", edited.text().await);
    let seen = rec.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        (seen[2].method.as_str(), seen[2].target.as_str()),
        ("PUT", "/edited")
    );
    assert_eq!(seen[2].body.as_deref(), Some(&b"changed"[..]));
    assert_eq!(seen[2].headers["x-edit"], "1");
    assert_eq!(seen[2].headers["cookie"], "session=abc");

    let form = http
        .post(&replay_url)
        .body("a=b")
        .send()
        .await
        .expect("replay");
    assert_eq!(
        form.status(),
        415,
        "a form post (another site's page) cannot replay"
    );
    assert_eq!(rec.seen().len(), 3);
}

#[tokio::test]
async fn the_live_stream_pushes_new_entries() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[]).await;
    let mut stream = reqwest::get(proxy.inspect_url("/api/events"))
        .await
        .expect("stream");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    client()
        .get(proxy.url("/id?live"))
        .send()
        .await
        .expect("request");
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: entry") && seen.contains("/id?live") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
}

#[tokio::test]
async fn har_and_curl_exports() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[]).await;
    client()
        .post(proxy.url("/echo"))
        .header("content-type", "text/plain")
        .body("it's here")
        .send()
        .await
        .expect("request");
    let e = &entries(&proxy, 1).await[0];
    let har = get_json(&proxy.inspect_url("/api/har")).await;
    let h = &har["log"]["entries"][0];
    assert_eq!(har["log"]["version"], "1.2");
    assert_eq!(h["request"]["method"], "POST");
    assert!(
        h["request"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/echo"))
    );
    assert_eq!(h["request"]["postData"]["text"], "it's here");
    assert_eq!(h["response"]["content"]["text"], "it's here");
    let one = get_json(&proxy.inspect_url(&format!("/api/entries/{}/har", e["id"]))).await;
    assert_eq!(one["log"]["entries"].as_array().map(Vec::len), Some(1));
    let curl = reqwest::get(proxy.inspect_url(&format!("/api/entries/{}/curl", e["id"])))
        .await
        .expect("curl")
        .text()
        .await
        .expect("text");
    assert!(
        curl.starts_with("curl -k -X POST 'https://localhost:"),
        "{curl}"
    );
    assert!(curl.contains("--data-binary 'it'\\''s here'"), "{curl}");
}

#[tokio::test]
async fn metrics_count_by_route_and_status_class() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[]).await;
    for path in ["/id", "/id", "/id", "/status/404", "/status/503"] {
        client().get(proxy.url(path)).send().await.expect("request");
    }
    let route = format!("*=https://{}", up.addr);
    let count = format!("proxy_request_duration_seconds_count{{route=\"{route}\"}} 5");
    let metrics = proxy.inspect_url("/metrics");
    let counted = eventually(Duration::from_secs(5), || async {
        let text = reqwest::get(&metrics).await.expect("metrics").text().await;
        text.expect("text").contains(&count)
    })
    .await;
    let text = reqwest::get(&metrics)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(counted, "{text}");
    for line in [
        format!("proxy_requests_total{{route=\"{route}\",code=\"2xx\"}} 3"),
        format!("proxy_requests_total{{route=\"{route}\",code=\"4xx\"}} 1"),
        format!("proxy_requests_total{{route=\"{route}\",code=\"5xx\"}} 1"),
        format!("proxy_upstream_up{{route=\"{route}\",address=\"{}\"}} 1", up.addr),
        "# TYPE proxy_request_duration_seconds histogram".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
    let expiry: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("proxy_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("expiry");
    assert!(expiry > time::OffsetDateTime::now_utc().unix_timestamp());
    assert!(text.contains("proxy_client_connections{listener=\"https\"}"));
}

#[tokio::test]
async fn a_foreign_host_name_is_refused() {
    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[]).await;
    let resp = reqwest::Client::new()
        .get(proxy.inspect_url("/api/entries"))
        .header("host", "evil.example:4040")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 421);
    let page = reqwest::get(proxy.inspect_url("/")).await.expect("page");
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn websocket_frames_are_recorded_both_ways() {
    use crate::support::raw::{SOON, h1, read_answer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let up = TestUpstream::start("a").await;
    let proxy = inspected(up.addr, &[]).await;
    let mut tls = h1(proxy.https).await;
    let head = "GET /upgrade HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    tls.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let answer = tokio::time::timeout(SOON, read_answer(&mut tls, &mut buf))
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(answer.status, 101);
    // A masked text frame "hello"; the test upstream echoes the bytes back as they are.
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&mask);
    frame.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).await.expect("send");
    let mut back = vec![0u8; frame.len()];
    tls.read_exact(&mut back).await.expect("echo");

    let e = &entries(&proxy, 1).await[0];
    assert_eq!(e["status"], 101);
    let id = e["id"].clone();
    let mut frames = Value::Null;
    let seen = eventually(Duration::from_secs(5), || {
        let url = proxy.inspect_url(&format!("/api/entries/{id}"));
        async move { get_json(&url).await["frames"]["total"] == 2 }
    })
    .await;
    if seen {
        frames = detail(&proxy, &id).await["frames"].clone();
    }
    assert!(seen, "two frames recorded: {frames}");
    let kept = &frames["kept"];
    assert_eq!(kept[0]["direction"], "client → upstream");
    assert_eq!(kept[0]["opcode"], "text");
    assert_eq!(kept[0]["size"], 5);
    assert_eq!(kept[0]["first"], "hello", "unmasked");
    assert_eq!(kept[1]["direction"], "upstream → client");
}
