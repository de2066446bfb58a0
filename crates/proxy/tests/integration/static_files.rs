//! Static files (`PROXY_STATIC`) through the real proxy and real TLS clients: GET/HEAD only,
//! types, validators and 304s, ranges, precompressed siblings, confinement to the root (the
//! traversal list, symlinks, dotfiles, folders), error pages, the access log, live edits, a
//! huge file streamed.

use std::path::PathBuf;

use http::StatusCode;

use crate::support::{TestProxy, client, closed_port, eventually, raw};

/// A site: `root/static` served at `/static/`, with a file outside it to reach for.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub proxy: TestProxy,
}

pub const JS: &str = "function hello() { return 'hello, world'; }\n";

impl Site {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("static")
    }

    pub async fn start(extra: &[(&str, &str)]) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("static");
        let write = |rel: &str, body: &[u8]| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        };
        write("hello.txt", b"hello\n");
        write("app.js", JS.repeat(100).as_bytes());
        write("app.js.br", b"pretend brotli");
        write("app.js.gz", b"pretend gzip");
        write("sub/index.html", b"<p>index</p>");
        write(".env", b"SECRET=1");
        write(".git/config", b"[core]");
        write("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>");
        std::fs::create_dir_all(root.join("empty")).expect("mkdir");
        std::fs::write(dir.path().join("outside.txt"), b"outside").expect("write");
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("escape.txt"))
            .expect("symlink");
        std::os::unix::fs::symlink(dir.path(), root.join("up")).expect("symlink");
        std::os::unix::fs::symlink(root.join("hello.txt"), root.join("alias.txt")).expect("link");
        let spec = format!("/static/={}", root.display());
        let upstream = closed_port().await.to_string();
        let mut env = vec![("PROXY_STATIC", spec.as_str())];
        env.extend_from_slice(extra);
        let proxy = TestProxy::start(&upstream, &env).await;
        Site { dir, proxy }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = client().get(self.proxy.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("answer")
    }

    /// One raw HTTP/1.1 request for `target`, sent as is (no client normalisation).
    pub async fn raw(&self, method: &str, target: &str) -> raw::Answer {
        let req =
            format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        raw::answer(self.proxy.https, req.as_bytes()).await
    }
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name}: {:?}", resp.headers()))
}

#[tokio::test]
async fn files_are_served_with_type_validators_and_cache_control() {
    let site = Site::start(&[]).await;
    let resp = site.get("/static/hello.txt", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "text/plain");
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert!(header(&resp, "etag").starts_with('"'));
    assert!(header(&resp, "last-modified").ends_with("GMT"));
    assert_eq!(header(&resp, "content-length"), "6");
    assert_eq!(resp.text().await.expect("body"), "hello\n");
    let svg = site.get("/static/logo.svg", &[]).await;
    assert_eq!(header(&svg, "content-type"), "image/svg+xml");
    // A request outside every prefix goes to the upstream (down here: 502).
    let other = site.get("/staticx/hello.txt", &[]).await;
    assert_eq!(other.status(), StatusCode::BAD_GATEWAY);
    let head = client()
        .head(site.proxy.url("/static/hello.txt"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "6");
    assert!(head.bytes().await.expect("body").is_empty());
}

#[tokio::test]
async fn cache_control_comes_from_the_setting() {
    let site = Site::start(&[("PROXY_STATIC_CACHE_CONTROL", "public, max-age=3600")]).await;
    let resp = site.get("/static/hello.txt", &[]).await;
    assert_eq!(header(&resp, "cache-control"), "public, max-age=3600");
}

#[tokio::test]
async fn other_methods_get_405_with_allow_on_the_error_page() {
    let site = Site::start(&[]).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let a = site.raw(method, "/static/hello.txt").await;
        a.assert_page(405);
        assert_eq!(a.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[tokio::test]
async fn validators_give_304() {
    let site = Site::start(&[]).await;
    let first = site.get("/static/hello.txt", &[]).await;
    let etag = header(&first, "etag").to_owned();
    let modified = header(&first, "last-modified").to_owned();
    for headers in [
        vec![("if-none-match", etag.as_str())],
        vec![("if-none-match", "\"other\", *")],
        vec![("if-modified-since", modified.as_str())],
        // A weak form of the tag matches too (weak comparison).
        vec![("if-none-match", &*format!("W/{etag}"))],
    ] {
        let resp = site.get("/static/hello.txt", &headers).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{headers:?}");
        assert_eq!(header(&resp, "etag"), etag);
        assert!(resp.bytes().await.expect("body").is_empty());
    }
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let resp = site
        .get(
            "/static/hello.txt",
            &[
                ("if-none-match", "\"other\""),
                ("if-modified-since", &modified),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = site
        .get(
            "/static/hello.txt",
            &[("if-unmodified-since", "Thu, 01 Jan 1998 00:00:00 GMT")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn single_ranges_give_206_and_bad_ones_416() {
    let site = Site::start(&[]).await;
    for (range, want, content_range) in [
        ("bytes=0-1", "he", "bytes 0-1/6"),
        ("bytes=4-", "o\n", "bytes 4-5/6"),
        ("bytes=-3", "lo\n", "bytes 3-5/6"),
        ("bytes=5-100", "\n", "bytes 5-5/6"),
    ] {
        let resp = site.get("/static/hello.txt", &[("range", range)]).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&resp, "content-range"), content_range);
        assert_eq!(resp.text().await.expect("body"), want);
    }
    for range in ["bytes=6-", "bytes=9-10"] {
        let resp = site.get("/static/hello.txt", &[("range", range)]).await;
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(header(&resp, "content-range"), "bytes */6");
        assert!(header(&resp, "content-type").starts_with("text/html"));
    }
    // If-Range: the current tag keeps the range, a stale one gets the whole file.
    let etag = header(&site.get("/static/hello.txt", &[]).await, "etag").to_owned();
    let resp = site
        .get(
            "/static/hello.txt",
            &[("range", "bytes=0-1"), ("if-range", &etag)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let resp = site
        .get(
            "/static/hello.txt",
            &[("range", "bytes=0-1"), ("if-range", "\"stale\"")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("body"), "hello\n");
}

#[tokio::test]
async fn precompressed_siblings_follow_accept_encoding() {
    let site = Site::start(&[]).await;
    let plain = site.get("/static/app.js", &[]).await;
    assert_eq!(header(&plain, "content-type"), "text/javascript");
    let tag = header(&plain, "etag").to_owned();
    let br = site
        .get("/static/app.js", &[("accept-encoding", "gzip, br")])
        .await;
    assert_eq!(header(&br, "content-encoding"), "br");
    assert_eq!(header(&br, "content-type"), "text/javascript");
    assert_eq!(header(&br, "vary"), "Accept-Encoding");
    assert_ne!(header(&br, "etag"), tag);
    assert_eq!(br.text().await.expect("body"), "pretend brotli");
    let gz = site
        .get("/static/app.js", &[("accept-encoding", "gzip, br;q=0.5")])
        .await;
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    assert_eq!(gz.text().await.expect("body"), "pretend gzip");
    // The sibling's own validators: its tag gives a 304.
    let etag = site
        .get("/static/app.js", &[("accept-encoding", "br")])
        .await
        .headers()["etag"]
        .clone();
    let again = site
        .get(
            "/static/app.js",
            &[
                ("accept-encoding", "br"),
                ("if-none-match", etag.to_str().expect("tag")),
            ],
        )
        .await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // PROXY_COMPRESSION decides which siblings may be sent.
    let site = Site::start(&[("PROXY_COMPRESSION", "gzip")]).await;
    let gz = site
        .get("/static/app.js", &[("accept-encoding", "br, gzip")])
        .await;
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    let site = Site::start(&[("PROXY_COMPRESSION", "off")]).await;
    let none = site
        .get("/static/app.js", &[("accept-encoding", "br, gzip")])
        .await;
    assert!(none.headers().get("content-encoding").is_none());
    assert_eq!(none.text().await.expect("body"), JS.repeat(100));
}

#[tokio::test]
async fn nothing_outside_the_root_is_served() {
    let site = Site::start(&[]).await;
    // Climbing above the site root, or a dot segment hidden behind an encoded separator: 400
    // from the request checks every request passes, as nginx answers.
    for target in [
        "/static/../../outside.txt",
        "/static/%2e%2e/%2e%2e/outside.txt",
        "/static/..%2foutside.txt",
        "/static/..%2Foutside.txt",
        "/static/%2e%2e%2foutside.txt",
        "/static/..%5coutside.txt",
    ] {
        site.raw("GET", target).await.assert_page(400);
    }
    // Everything else that reaches for what is not under the folder: 404.
    for target in [
        "/static/sub%2findex.html",
        "/static/sub%5cindex.html",
        "/static/hello.txt%00.png",
        "/static/escape.txt",
        "/static/up/outside.txt",
        "/static/.env",
        "/static/.git/config",
        "/static/%2eenv",
        "/static/empty/",
        "/static/empty",
        "/static/missing.txt",
        "/static/hello.txt/",
    ] {
        site.raw("GET", target).await.assert_page(404);
    }
    // `..` that stays under the prefix is only normalised, and a symlink inside is followed.
    let a = site.raw("GET", "/static/sub/../hello.txt").await;
    assert_eq!((a.status, a.text().as_str()), (200, "hello\n"));
    let a = site.raw("GET", "/static/alias.txt").await;
    assert_eq!((a.status, a.text().as_str()), (200, "hello\n"));
}

#[tokio::test]
async fn folders_serve_their_index_never_a_listing() {
    let site = Site::start(&[]).await;
    let resp = site.get("/static/sub/", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "text/html");
    assert_eq!(resp.text().await.expect("body"), "<p>index</p>");
    let resp = site.get("/static/sub?x=1", &[]).await;
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(header(&resp, "location"), "/static/sub/?x=1");
    site.raw("GET", "/static/").await.assert_page(404);
}

#[tokio::test]
async fn errors_use_the_page_and_every_request_is_logged_once() {
    let site = Site::start(&[]).await;
    let json = client()
        .get(site.proxy.url("/static/nope.css"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("answer");
    assert_eq!(json.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&json, "content-type"), "application/json");
    site.get("/static/hello.txt", &[])
        .await
        .bytes()
        .await
        .expect("body");
    assert!(
        eventually(std::time::Duration::from_secs(5), || {
            let log = site.proxy.access_log();
            async move {
                log.lines()
                    .filter(|l| l.contains("GET /static/nope.css "))
                    .count()
                    == 1
                    && log
                        .lines()
                        .filter(|l| {
                            l.contains("GET /static/hello.txt HTTP/") && l.contains(" 200 6 ")
                        })
                        .count()
                        == 1
            }
        })
        .await,
        "{}",
        site.proxy.access_log()
    );
}

#[tokio::test]
async fn a_file_edited_or_created_between_two_requests_is_served_new() {
    let site = Site::start(&[]).await;
    let first = site.get("/static/hello.txt", &[]).await;
    let tag = header(&first, "etag").to_owned();
    std::fs::write(site.root().join("hello.txt"), b"changed!\n").expect("edit");
    let second = site
        .get("/static/hello.txt", &[("if-none-match", &tag)])
        .await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_ne!(header(&second, "etag"), tag);
    assert_eq!(second.text().await.expect("body"), "changed!\n");
    std::fs::write(site.root().join("new.txt"), b"new").expect("create");
    assert_eq!(
        site.get("/static/new.txt", &[])
            .await
            .text()
            .await
            .expect("body"),
        "new"
    );
}

#[tokio::test]
async fn a_huge_file_is_streamed_not_read_whole() {
    let site = Site::start(&[]).await;
    // 64 GiB, sparse: reading it whole into memory could not finish.
    let huge = 64u64 << 30;
    let f = std::fs::File::create(site.root().join("huge.bin")).expect("create");
    f.set_len(huge).expect("sparse length");
    let mut resp = site.get("/static/huge.bin", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), huge.to_string());
    assert_eq!(header(&resp, "content-type"), "application/octet-stream");
    let mut got = 0usize;
    while got < 1 << 20 {
        got += resp.chunk().await.expect("chunk").expect("more data").len();
    }
    // A range deep inside answers at once too.
    let tail = site.get("/static/huge.bin", &[("range", "bytes=-4")]).await;
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.expect("body").as_ref(), &[0, 0, 0, 0]);
}
