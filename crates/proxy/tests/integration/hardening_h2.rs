//! Hardening (issue 8), HTTP/2 limits against the real proxy over raw frames and the `h2`
//! crate: advertised SETTINGS, streams beyond MAX_CONCURRENT_STREAMS, header list size, rapid
//! reset and CONTINUATION floods, and HTTP/2 → HTTP/1.1 downgrade smuggling.

use crate::support::h2raw::{self, h2_ask, h2_client};
use crate::support::raw::SOON;
use crate::support::recorder::Recorder;
use crate::support::upstream::TestUpstream;
use crate::support::{client, proxy_to};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn h2_settings_advertise_the_limits() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(
        up.addr,
        &[
            ("PROXY_H2_MAX_STREAMS", "5"),
            ("PROXY_MAX_HEADER_SIZE", "8k"),
        ],
    )
    .await;
    let c = h2raw::Conn::open(proxy.https).await;
    assert!(c.settings.contains(&(0x3, 5)), "{:?}", c.settings);
    assert!(c.settings.contains(&(0x6, 8192)), "{:?}", c.settings);
    let dflt = proxy_to(up.addr, &[]).await;
    let c = h2raw::Conn::open(dflt.https).await;
    assert!(c.settings.contains(&(0x3, 128)), "{:?}", c.settings);
    assert!(c.settings.contains(&(0x6, 32 * 1024)), "{:?}", c.settings);
}

/// A client that ignores MAX_CONCURRENT_STREAMS gets the excess stream refused; the streams
/// within the limit complete. A well-behaved client just queues.
#[tokio::test]
async fn h2_streams_beyond_the_limit_are_refused() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[("PROXY_H2_MAX_STREAMS", "5")]).await;
    let mut c = h2raw::Conn::open(proxy.https).await;
    let mut burst = Vec::new();
    for i in 0..6u32 {
        burst.extend(h2raw::get(1 + 2 * i, "/slow?ms=500"));
    }
    c.send(&burst).await;
    let mut ended = std::collections::BTreeSet::new();
    let mut refused = Vec::new();
    let frames = c
        .until(|f| {
            if f.kind == h2raw::DATA && f.end_stream() {
                ended.insert(f.stream);
            }
            if f.kind == h2raw::RST_STREAM {
                refused.push((f.stream, f.rst_code()));
            }
            ended.len() + refused.len() >= 6
        })
        .await;
    assert_eq!(
        refused,
        [(11, 0x7)],
        "REFUSED_STREAM for stream 11: {frames:?}"
    );
    assert_eq!(ended.into_iter().collect::<Vec<_>>(), [1, 3, 5, 7, 9]);

    // reqwest's h2 client respects the limit: 12 concurrent requests over one connection.
    let c = client();
    let all = futures_util::future::join_all((0..12).map(|_| {
        let c = c.clone();
        let url = proxy.url("/slow?ms=200");
        async move { c.get(url).send().await.map(|r| r.status().as_u16()) }
    }))
    .await;
    assert!(all.iter().all(|r| matches!(r, Ok(200))), "{all:?}");
}

/// A header list over the limit: the h2 layer itself answers 431 (bare, not the page) and resets
/// the stream; the connection stays usable and nothing is forwarded.
#[tokio::test]
async fn h2_header_list_over_the_limit_is_refused() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[("PROXY_MAX_HEADER_SIZE", "8k")]).await;
    let mut send = h2_client(proxy.https).await;
    let req = http::Request::get(proxy.url("/big"))
        .header("x-big", "v".repeat(12 * 1024))
        .body(())
        .expect("req");
    let big = h2_ask(&mut send, req).await;
    eprintln!("12 KiB header list over h2: {big:?}");
    match &big {
        Ok((status, headers, _)) => {
            assert_eq!(status.as_u16(), 431);
            if headers.get("x-request-id").is_none() {
                eprintln!("bare 431 from the h2 layer");
            }
        }
        Err(e) => assert_eq!(e.reason(), Some(h2::Reason::REFUSED_STREAM), "{e}"),
    }
    let req = http::Request::get(proxy.url("/small"))
        .body(())
        .expect("req");
    let (status, _, _) = h2_ask(&mut send, req).await.expect("same connection");
    assert_eq!(status, 200);
    assert_eq!(rec.targets(), ["/small"]);
}

/// Rapid reset (CVE-2023-44487): HEADERS + RST_STREAM pairs in a burst end in GOAWAY
/// ENHANCE_YOUR_CALM; the proxy keeps serving everyone else.
#[tokio::test]
async fn h2_rapid_reset_flood_is_cut_off() {
    let up = TestUpstream::start("a").await;
    let proxy = proxy_to(up.addr, &[]).await;
    let mut c = h2raw::Conn::open(proxy.https).await;
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 1 + 2 * i;
        burst.extend(h2raw::get(id, "/slow?ms=100"));
        burst.extend(h2raw::rst(id, 0x8)); // CANCEL
    }
    // The server may close while we are still writing.
    let _ = c.io.write_all(&burst).await;
    let _ = c.io.flush().await;
    let frames = tokio::time::timeout(SOON, c.until_closed())
        .await
        .expect("flooding connection closed in time");
    let goaway = frames
        .iter()
        .find(|f| f.kind == h2raw::GOAWAY)
        .unwrap_or_else(|| {
            panic!(
                "no GOAWAY after 1000 rapid resets ({} frames)",
                frames.len()
            )
        });
    assert_eq!(goaway.goaway_code(), 0xb, "ENHANCE_YOUR_CALM");
    let resp = client().get(proxy.url("/id")).send().await.expect("others");
    assert_eq!(resp.status(), 200);
}

/// CONTINUATION flood (CVE-2024-27316): a header block that never ends is cut off with a
/// connection error, not buffered without bound.
#[tokio::test]
async fn h2_continuation_flood_is_cut_off() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let mut c = h2raw::Conn::open(proxy.https).await;
    // HEADERS without END_HEADERS, then 1 KiB CONTINUATION frames of a never-ending value.
    let mut start = h2raw::request(1, "GET", "/flood", &[], true);
    start[4] &= !0x4;
    let _ = c.io.write_all(&start).await;
    let mut sent = 0usize;
    let filler = vec![b'a'; 1024];
    let cut = tokio::time::timeout(SOON, async {
        loop {
            if c.io
                .write_all(&h2raw::frame(h2raw::CONTINUATION, 0, 1, &filler))
                .await
                .is_err()
            {
                return;
            }
            sent += 1;
            if sent > 10_000 {
                return;
            }
        }
    })
    .await;
    let frames = tokio::time::timeout(SOON, c.until_closed())
        .await
        .unwrap_or_default();
    eprintln!(
        "CONTINUATION flood: {sent} frames written before the proxy stopped reading; \
         frames back: {:?}",
        frames
            .iter()
            .map(|f| (f.kind, f.stream))
            .collect::<Vec<_>>()
    );
    assert!(
        cut.is_ok() && sent <= 10_000,
        "the proxy kept reading CONTINUATION frames"
    );
    if let Some(g) = frames.iter().find(|f| f.kind == h2raw::GOAWAY) {
        assert_ne!(g.goaway_code(), 0, "GOAWAY with an error code");
    }
    assert!(rec.seen().is_empty());
    let resp = client().get(proxy.url("/ok")).send().await.expect("others");
    assert_eq!(resp.status(), 200);
}

/// HTTP/2 → HTTP/1.1 downgrade smuggling: connection-specific headers, CR/LF in names, values
/// or the path, and a body longer than its content-length are all refused at the h2 layer
/// (stream or connection error); none reaches the upstream as a complete request.
#[tokio::test]
async fn h2_downgrade_smuggling_vectors_are_rejected() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let vectors: Vec<(&str, Vec<u8>)> = vec![
        (
            "transfer-encoding",
            h2raw::request(1, "POST", "/te", &[("transfer-encoding", "chunked")], true),
        ),
        (
            "connection",
            h2raw::request(1, "GET", "/conn", &[("connection", "keep-alive")], true),
        ),
        (
            "CRLF in a value",
            h2raw::request(1, "GET", "/crlf", &[("x-a", "b\r\nx-injected: 1")], true),
        ),
        (
            "CRLF in a name",
            h2raw::request(1, "GET", "/crlfname", &[("x-a\r\nx-injected", "1")], true),
        ),
        (
            "CRLF in the path",
            h2raw::request(
                1,
                "GET",
                "/p HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled",
                &[],
                true,
            ),
        ),
        (
            "upper-case name",
            h2raw::request(1, "GET", "/upper", &[("X-Upper", "1")], true),
        ),
        ("body longer than content-length", {
            let mut b = h2raw::request(1, "POST", "/cl", &[("content-length", "5")], false);
            b.extend(h2raw::frame(h2raw::DATA, 0x1, 1, b"0123456789"));
            b
        }),
    ];
    let mut outcome = Vec::new();
    for (name, bytes) in vectors {
        let mut c = h2raw::Conn::open(proxy.https).await;
        c.send(&bytes).await;
        let frames = c
            .until(|f| {
                f.kind == h2raw::GOAWAY
                    || (f.stream == 1 && (f.kind == h2raw::RST_STREAM || f.kind == h2raw::HEADERS))
            })
            .await;
        let last = frames.last().expect("a frame");
        let what = match last.kind {
            h2raw::GOAWAY => format!("GOAWAY {:#x}", last.goaway_code()),
            h2raw::RST_STREAM => format!("RST_STREAM {:#x}", last.rst_code()),
            _ => "answered (HEADERS)".to_owned(),
        };
        outcome.push(format!("{name}: {what}"));
    }
    eprintln!("{}", outcome.join("\n"));
    let seen = rec.seen();
    let complete: Vec<_> = seen
        .iter()
        .filter(|s| s.body.is_some())
        .map(|s| s.target.clone())
        .collect();
    assert!(
        complete.is_empty(),
        "forwarded whole: {complete:?}\n{}",
        outcome.join("\n")
    );
    assert!(
        outcome.iter().all(|o| !o.contains("answered")),
        "{}",
        outcome.join("\n")
    );
}
