//! The app end to end: real listener, real TLS, real HTTP clients.

mod support;

use std::sync::Arc;
use std::time::Duration;

use common::env::Env;
use support::{TestApp, client, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const QUOTE: &str = "It's easier to ask forgiveness than it is to get permission.";

/// Send raw bytes over TLS and return everything the server answers until it closes.
async fn raw_tls(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let cfg = common::client::insecure_client_config(&[b"http/1.1"]).expect("client config");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    tls.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn body_of(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

#[tokio::test]
async fn page_shows_none_for_absent_headers() {
    let app = TestApp::start(&[]).await;
    let resp = client().get(app.url("/")).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    let body = resp.text().await.expect("body");
    assert_eq!(
        body,
        format!("{QUOTE}\nX-Forwarded-For: None\nX-Real-IP: None\nX-Forwarded-Proto: None\n")
    );
}

#[tokio::test]
async fn page_shows_the_three_headers_as_received() {
    let app = TestApp::start(&[]).await;
    let body = client()
        .get(app.url("/"))
        .header("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
        .header("X-Real-IP", "203.0.113.7")
        .header("X-Forwarded-Proto", "https")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(
        body,
        format!(
            "{QUOTE}\nX-Forwarded-For: 203.0.113.7, 10.0.0.1\nX-Real-IP: 203.0.113.7\nX-Forwarded-Proto: https\n"
        )
    );
}

#[tokio::test]
async fn header_values_cannot_add_lines() {
    let app = TestApp::start(&[]).await;
    // Unicode NEL and LINE SEPARATOR in the value (as raw UTF-8 obs-text), plus a tab.
    let mut req =
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Real-IP: 1.2.3.4".to_vec();
    req.extend_from_slice("\u{85}X-Evil: 1\u{2028}X-Evil: 2\tend\r\n\r\n".as_bytes());
    let resp = raw_tls(app.addr, &req).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = body_of(&resp);
    assert_eq!(body.lines().count(), 4, "{body:?}");
    assert_eq!(body.split(['\u{2028}', '\u{85}']).count(), 1, "{body:?}");
    assert!(body.contains("X-Real-IP: 1.2.3.4"), "{body:?}");

    // An obs-folded continuation line is refused or at least never becomes a page line.
    let resp = raw_tls(
        app.addr,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Real-IP: 1.2.3.4\r\n X-Forwarded-Proto: evil\r\n\r\n",
    )
    .await;
    if resp.starts_with("HTTP/1.1 200") {
        let body = body_of(&resp);
        assert_eq!(body.lines().count(), 4, "{body:?}");
        assert!(body.ends_with("X-Forwarded-Proto: None\n"), "{body:?}");
    } else {
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    }
}

#[tokio::test]
async fn head_healthz_404_and_405() {
    let app = TestApp::start(&[]).await;
    let c = client();
    let head = c.head(app.url("/")).send().await.expect("head");
    assert_eq!(head.status(), 200);
    let get_len = c
        .get(app.url("/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body")
        .len();
    assert_eq!(
        head.headers()["content-length"],
        get_len.to_string().as_str()
    );
    assert_eq!(head.text().await.expect("body"), "");
    let health = c.get(app.url("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body").trim(), "ok");
    assert_eq!(
        c.get(app.url("/nope")).send().await.expect("404").status(),
        404
    );
    let post = c.post(app.url("/")).body("x").send().await.expect("405");
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let app = TestApp::start(&[]).await;
    let resp = client().get(app.url("/")).send().await.expect("request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn plain_http_on_the_https_port_gets_a_clear_400() {
    let app = TestApp::start(&[]).await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut out))
        .await
        .expect("answered, not hung")
        .expect("read");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("HTTPS"), "{out}");
}

fn template_dir(content: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.txt"), content).expect("write template");
    dir
}

#[tokio::test]
async fn development_serves_template_edits_including_rename_saves() {
    let dir = template_dir("first {{ x_real_ip }}\n");
    let path = dir.path().to_str().expect("utf8").to_owned();
    let app = TestApp::start(&[("APP_ENV", "development"), ("APP_TEMPLATES", &path)]).await;
    let c = client();
    let get = || async {
        c.get(app.url("/"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body")
    };
    assert_eq!(get().await, "first None\n");

    // In-place write.
    std::fs::write(dir.path().join("index.txt"), "second\n").expect("edit");
    assert!(
        eventually(Duration::from_secs(1), || async {
            get().await == "second\n"
        })
        .await,
        "in-place edit not served within 1 s"
    );

    // Editor-style save: write a temp file, rename over.
    let tmp = dir.path().join(".index.txt.swp");
    std::fs::write(&tmp, "third\n").expect("tmp");
    std::fs::rename(&tmp, dir.path().join("index.txt")).expect("rename");
    assert!(
        eventually(Duration::from_secs(1), || async {
            get().await == "third\n"
        })
        .await,
        "rename-over edit not served within 1 s"
    );
}

#[tokio::test]
async fn syntax_error_answers_500_with_details_then_recovers() {
    let dir = template_dir("ok\n");
    let path = dir.path().to_str().expect("utf8").to_owned();
    let app = TestApp::start(&[("APP_ENV", "development"), ("APP_TEMPLATES", &path)]).await;
    let c = client();
    std::fs::write(dir.path().join("index.txt"), "line one\n{% if %}\n").expect("break");
    let last = std::sync::Mutex::new(String::new());
    let broke = eventually(Duration::from_secs(2), || async {
        let r = c.get(app.url("/")).send().await.expect("request");
        let status = r.status();
        *last.lock().expect("lock") = r.text().await.expect("body");
        status == 500
    })
    .await;
    let last = last.into_inner().expect("lock");
    assert!(broke, "broken template not reported: {last}");
    assert!(last.contains("index.txt line 2"), "{last}");
    assert!(last.contains("syntax error"), "{last}");

    std::fs::write(dir.path().join("index.txt"), "fixed\n").expect("fix");
    let fixed = eventually(Duration::from_secs(2), || async {
        let r = c.get(app.url("/")).send().await.expect("request");
        r.status() == 200 && r.text().await.expect("body") == "fixed\n"
    })
    .await;
    assert!(fixed, "fixed template not served again");
}

#[tokio::test]
async fn production_refuses_a_broken_template_at_start() {
    let dir = template_dir("{{ oops\n");
    let path = dir.path().to_str().expect("utf8").to_owned();
    let env = Env::from_pairs([("APP_ENV", "production"), ("APP_TEMPLATES", path.as_str())]);
    let config = app::Config::from_env(&env).expect("config");
    let err = app::App::new(&config)
        .err()
        .expect("broken template refused");
    let msg = err.to_string();
    assert!(msg.starts_with("APP_TEMPLATES="), "{msg}");
    assert!(msg.contains("index.txt line 1"), "{msg}");
}

#[tokio::test]
async fn file_variants_work_and_both_set_fails() {
    let dir = template_dir("from a secret folder\n");
    let secret = tempfile::NamedTempFile::new().expect("secret");
    std::fs::write(secret.path(), format!("{}\n", dir.path().display())).expect("write secret");
    let secret_path = secret.path().to_str().expect("utf8").to_owned();
    let app = TestApp::start(&[("APP_TEMPLATES_FILE", &secret_path)]).await;
    let body = client()
        .get(app.url("/"))
        .send()
        .await
        .expect("req")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "from a secret folder\n");

    let env = Env::from_pairs([("APP_LOG", "info"), ("APP_LOG_FILE", secret_path.as_str())]);
    let err = app::Config::from_env(&env).expect_err("both set");
    assert!(
        err.to_string().contains("APP_LOG and APP_LOG_FILE"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_files_are_served_and_a_mismatched_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = common::tls::self_signed(&["localhost"], 30).expect("a");
    let b = common::tls::self_signed(&["localhost"], 30).expect("b");
    let (crt, key, other) = (
        dir.path().join("a.crt"),
        dir.path().join("a.key"),
        dir.path().join("b.key"),
    );
    std::fs::write(&crt, &a.cert_pem).expect("crt");
    std::fs::write(&key, &a.key_pem).expect("key");
    std::fs::write(&other, &b.key_pem).expect("other key");

    let app = TestApp::start(&[
        ("APP_TLS_CERT", crt.to_str().expect("utf8")),
        ("APP_TLS_KEY", key.to_str().expect("utf8")),
    ])
    .await;
    assert_eq!(
        app.fingerprint,
        common::tls::fingerprint(&a.keypair.chain[0])
    );
    assert_eq!(
        client()
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("req")
            .status(),
        200
    );

    let env = Env::from_pairs([
        ("APP_TLS_CERT", crt.to_str().expect("utf8")),
        ("APP_TLS_KEY", other.to_str().expect("utf8")),
    ]);
    let err = app::App::new(&app::Config::from_env(&env).expect("config"))
        .err()
        .expect("mismatch refused");
    let msg = err.to_string();
    assert!(
        msg.contains("APP_TLS_KEY") && msg.contains("b.key") && msg.contains("does not match"),
        "{msg}"
    );

    let env = Env::from_pairs([
        ("APP_TLS_CERT", "/nonexistent/x.crt"),
        ("APP_TLS_KEY", key.to_str().expect("utf8")),
    ]);
    let err = app::App::new(&app::Config::from_env(&env).expect("config"))
        .err()
        .expect("missing refused");
    assert!(err.to_string().contains("/nonexistent/x.crt"), "{err}");
}

#[tokio::test]
async fn graceful_shutdown_completes_an_in_flight_request() {
    let mut app = TestApp::start(&[]).await;
    let cfg = common::client::insecure_client_config(&[b"http/1.1"]).expect("client config");
    let tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    // Half a request is in flight when shutdown starts.
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    tls.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let done = app.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are refused once the listener is closed.
    assert!(
        tokio::net::TcpStream::connect(app.addr).await.is_err(),
        "listener still open"
    );
    tls.write_all(b"X-Real-IP: 9.9.9.9\r\n\r\n")
        .await
        .expect("finish request");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out))
        .await
        .expect("answered")
        .expect("read");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("X-Real-IP: 9.9.9.9"), "{out}");
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .expect("drained")
        .expect("task");
}
