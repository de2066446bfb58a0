//! On-the-fly compression (`PROXY_COMPRESSION*`) through the real proxy: negotiation (q-values,
//! `identity`, `*`), the client's decompressed body equals the original for each coding, what is
//! never compressed, the error page, and the app's answers (off by default; when on, a slow
//! stream is compressed piece by piece: the first bytes arrive before the app finishes).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::server::{self, Limits, Transport};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::static_files::Site;
use crate::support::{client, proxy_to, upstream::tls_server_config};

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn css() -> String {
    "body { color: #333; margin: 0 auto; }\n".repeat(200)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut d = flate2::write::GzDecoder::new(Vec::new());
    d.write_all(data).expect("gzip data");
    d.finish().expect("gzip end")
}

fn unzstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::decode_all(data).expect("zstd data")
}

async fn site() -> Site {
    let site = Site::start(&[]).await;
    std::fs::write(site.root().join("plain.css"), css()).expect("write");
    std::fs::write(site.root().join("pic.png"), vec![7u8; 4096]).expect("write");
    site
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn each_coding_decompresses_to_the_original() {
    let site = site().await;
    let plain = site.get("/static/plain.css", &[]).await;
    let tag = header(&plain, "etag").expect("etag").to_owned();
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("zstd", "zstd"),
        ("br, zstd;q=0.9", "zstd"),
    ] {
        let resp = site
            .get("/static/plain.css", &[("accept-encoding", accept)])
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-encoding"), Some(coding), "{accept}");
        assert_eq!(header(&resp, "vary"), Some("Accept-Encoding"));
        assert_eq!(header(&resp, "etag"), Some(format!("W/{tag}").as_str()));
        assert!(header(&resp, "content-length").is_none());
        let body = resp.bytes().await.expect("body");
        assert!(body.len() < css().len() / 4, "{coding} compresses");
        let decoded = if coding == "gzip" {
            gunzip(&body)
        } else {
            unzstd(&body)
        };
        assert_eq!(String::from_utf8(decoded).expect("utf-8"), css());
    }
    // The weak tag still validates.
    let resp = site
        .get(
            "/static/plain.css",
            &[
                ("accept-encoding", "gzip"),
                ("if-none-match", &format!("W/{tag}")),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    // The 304 names the tag the compressed 200 had; without a coding, the strong one.
    assert_eq!(header(&resp, "etag"), Some(format!("W/{tag}").as_str()));
    let resp = site
        .get("/static/plain.css", &[("if-none-match", &tag)])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&resp, "etag"), Some(tag.as_str()));
}

#[tokio::test]
async fn negotiation_follows_q_values_identity_and_star() {
    let site = site().await;
    for (accept, want) in [
        ("gzip;q=0, zstd;q=0", None),
        ("identity", None),
        ("*", Some("zstd")),
        ("*;q=0", None),
        ("*, zstd;q=0", Some("gzip")),
        ("gzip;q=1, zstd;q=0.5", Some("gzip")),
        ("gzip, zstd", Some("zstd")),
    ] {
        let resp = site
            .get("/static/plain.css", &[("accept-encoding", accept)])
            .await;
        assert_eq!(header(&resp, "content-encoding"), want, "{accept}");
        assert_eq!(header(&resp, "vary"), Some("Accept-Encoding"), "{accept}");
    }
    let site = Site::start(&[("PROXY_COMPRESSION", "gzip,zstd")]).await;
    std::fs::write(site.root().join("plain.css"), css()).expect("write");
    let resp = site
        .get("/static/plain.css", &[("accept-encoding", "zstd, gzip")])
        .await;
    assert_eq!(header(&resp, "content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn small_binary_partial_and_head_answers_are_sent_as_they_are() {
    let site = site().await;
    let gz = [("accept-encoding", "gzip, zstd")];
    let small = site.get("/static/hello.txt", &gz).await;
    assert!(header(&small, "content-encoding").is_none());
    let png = site.get("/static/pic.png", &gz).await;
    assert!(header(&png, "content-encoding").is_none());
    assert_eq!(header(&png, "content-length"), Some("4096"));
    let range = site
        .get("/static/plain.css", &[gz[0], ("range", "bytes=0-99")])
        .await;
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert!(header(&range, "content-encoding").is_none());
    assert_eq!(range.bytes().await.expect("body").len(), 100);
    let head = client()
        .head(site.proxy.url("/static/plain.css"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("head");
    assert!(header(&head, "content-encoding").is_none());
    let min = Site::start(&[("PROXY_COMPRESSION_MIN_SIZE", "4")]).await;
    let tiny = min.get("/static/hello.txt", &gz).await;
    assert_eq!(header(&tiny, "content-encoding"), Some("zstd"));
    assert_eq!(unzstd(&tiny.bytes().await.expect("body")), b"hello\n");
}

#[tokio::test]
async fn error_pages_are_compressed() {
    let site = site().await;
    let resp = site
        .get("/static/missing.css", &[("accept-encoding", "gzip")])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&resp, "content-encoding"), Some("gzip"));
    let page = String::from_utf8(gunzip(&resp.bytes().await.expect("body"))).expect("utf-8");
    assert!(page.contains("404"), "{page}");
}

/// An upstream whose `/stream` answer is fed by the test, chunk by chunk; `/no-transform` and
/// `/encoded` answer big text that must not be compressed.
struct Feeder {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Feeder {
    async fn start() -> (Feeder, mpsc::Sender<Bytes>) {
        let (tx, rx) = mpsc::channel(4);
        let chunks = Arc::new(Mutex::new(Some(rx)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let shared = chunks;
        tokio::spawn(server::serve(
            listener,
            Transport::Tls(tokio_rustls::TlsAcceptor::from(tls_server_config(&[
                b"http/1.1",
            ]))),
            Limits::default(),
            move |_| {
                let shared = shared.clone();
                hyper::service::service_fn(move |req| answer(shared.clone(), req))
            },
            stop.clone().cancelled_owned(),
        ));
        (Feeder { addr, stop }, tx)
    }
}

async fn answer(
    chunks: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let text = |extra: (&'static str, &'static str)| {
        Response::builder()
            .header("content-type", "text/css")
            .header(extra.0, extra.1)
            .body(
                Full::new(Bytes::from(css()))
                    .map_err(|e| match e {})
                    .boxed(),
            )
            .expect("response")
    };
    Ok(match req.uri().path() {
        "/no-transform" => text(("cache-control", "public, no-transform")),
        "/encoded" => text(("content-encoding", "br")),
        "/stream" => {
            let rx = chunks.lock().expect("lock").take();
            let stream = futures_util::stream::unfold(rx, |rx| async move {
                let mut rx = rx?;
                let chunk = rx.recv().await?;
                Some((Ok(Frame::data(chunk)), Some(rx)))
            });
            Response::builder()
                .header("content-type", "text/plain; charset=utf-8")
                .body(StreamBody::new(stream).boxed())
                .expect("response")
        }
        _ => text(("x-plain", "1")),
    })
}

#[tokio::test]
async fn app_answers_are_not_compressed_unless_enabled() {
    let (up, _tx) = Feeder::start().await;
    let proxy = proxy_to(up.addr, &[]).await;
    let resp = client()
        .get(proxy.url("/plain"))
        .header("accept-encoding", "gzip, zstd")
        .send()
        .await
        .expect("answer");
    assert!(
        header(&resp, "content-encoding").is_none(),
        "BREACH: off by default"
    );
    assert_eq!(resp.text().await.expect("body"), css());
    let proxy = proxy_to(up.addr, &[("PROXY_COMPRESSION_UPSTREAM", "true")]).await;
    let get = |path: &'static str| {
        client()
            .get(proxy.url(path))
            .header("accept-encoding", "gzip")
            .send()
    };
    let resp = get("/plain").await.expect("answer");
    assert_eq!(header(&resp, "content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&resp.bytes().await.expect("body")), css().as_bytes());
    let resp = get("/no-transform").await.expect("answer");
    assert!(header(&resp, "content-encoding").is_none());
    let resp = get("/encoded").await.expect("answer");
    assert_eq!(header(&resp, "content-encoding"), Some("br"));
    assert_eq!(resp.bytes().await.expect("body").len(), css().len());
}

#[tokio::test]
async fn a_slow_stream_is_compressed_as_it_comes() {
    for coding in ["gzip", "zstd"] {
        let (up, tx) = Feeder::start().await;
        let proxy = proxy_to(up.addr, &[("PROXY_COMPRESSION_UPSTREAM", "true")]).await;
        let mut resp = client()
            .get(proxy.url("/stream"))
            .header("accept-encoding", coding)
            .send()
            .await
            .expect("answer head");
        assert_eq!(header(&resp, "content-encoding"), Some(coding));
        let first = "first part, sent while the app still works\n".repeat(10);
        tx.send(Bytes::from(first.clone())).await.expect("send");
        // The app has not finished: what arrives now must already decode to the first part.
        let mut got = Vec::new();
        let mut decoded = Vec::new();
        while decoded.len() < first.len() {
            got.extend_from_slice(&resp.chunk().await.expect("chunk").expect("more"));
            decoded = partial(coding, &got);
        }
        assert_eq!(decoded, first.as_bytes());
        tx.send(Bytes::from_static(b"the end\n"))
            .await
            .expect("send");
        drop(tx);
        while let Some(chunk) = resp.chunk().await.expect("chunk") {
            got.extend_from_slice(&chunk);
        }
        let all = if coding == "gzip" {
            gunzip(&got)
        } else {
            unzstd(&got)
        };
        assert_eq!(all, format!("{first}the end\n").as_bytes(), "{coding}");
    }
}

/// What a prefix of a compressed stream decodes to so far.
fn partial(coding: &str, data: &[u8]) -> Vec<u8> {
    if coding == "gzip" {
        let mut d = flate2::write::GzDecoder::new(Vec::new());
        let _ = d.write_all(data);
        let _ = d.flush();
        d.get_ref().clone()
    } else {
        let mut d = zstd::stream::write::Decoder::new(Vec::new()).expect("decoder");
        let _ = d.write_all(data);
        let _ = d.flush();
        d.get_ref().clone()
    }
}
