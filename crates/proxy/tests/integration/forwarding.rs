//! The proxy's core, end to end: real app or test upstream, real proxy, real TLS clients.

use std::sync::Arc;
use std::time::Duration;

use crate::support::upstream::{TestUpstream, pattern};
use crate::support::{SwapLookup, TestApp, TestProxy, client, client_h1, closed_port, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const QUOTE: &str = "It's easier to ask forgiveness than it is to get permission.";

#[tokio::test]
async fn page_through_the_proxy_shows_the_client_and_https() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(&app.addr.to_string(), &[]).await;
    let resp = client().get(proxy.url("/")).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=63072000"
    );
    assert!(resp.headers().get("server").is_none());
    assert_eq!(resp.headers()["x-request-id"].len(), 32);
    let body = resp.text().await.expect("body");
    assert_eq!(
        body,
        format!(
            "{QUOTE}\nX-Forwarded-For: 127.0.0.1\nX-Real-IP: 127.0.0.1\nX-Forwarded-Proto: https\n"
        )
    );
}

#[tokio::test]
async fn spoofed_forwarding_headers_are_dropped_by_default() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(&app.addr.to_string(), &[]).await;
    let body = client()
        .get(proxy.url("/"))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Real-IP", "6.6.6.6")
        .header("X-Forwarded-Proto", "http")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(body.contains("X-Forwarded-For: 127.0.0.1\n"), "{body}");
    assert!(body.contains("X-Real-IP: 127.0.0.1\n"), "{body}");
    assert!(body.contains("X-Forwarded-Proto: https\n"), "{body}");
    assert!(!body.contains("6.6.6.6"), "{body}");
}

#[tokio::test]
async fn trusted_peer_list_is_kept_and_appended() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(
        &app.addr.to_string(),
        &[("PROXY_TRUSTED_PROXIES", "127.0.0.0/8")],
    )
    .await;
    let body = client()
        .get(proxy.url("/"))
        .header("X-Forwarded-For", "198.51.100.1")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(
        body.contains("X-Forwarded-For: 198.51.100.1, 127.0.0.1\n"),
        "{body}"
    );
    assert!(body.contains("X-Real-IP: 127.0.0.1\n"), "{body}");
}

#[tokio::test]
async fn http_redirects_to_https_keeping_host_path_and_query() {
    let proxy = TestProxy::start("127.0.0.1:9", &[]).await;
    let resp = client()
        .get(proxy.http_url("/a/b?c=d"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 301);
    assert_eq!(resp.headers()["location"], "https://localhost/a/b?c=d");

    let proxy = TestProxy::start("127.0.0.1:9", &[("PROXY_HTTPS_PORT", "8443")]).await;
    let resp = client()
        .get(proxy.http_url("/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.headers()["location"], "https://localhost:8443/x");
}

#[tokio::test]
async fn redirect_refuses_a_malformed_host() {
    let proxy = TestProxy::start("127.0.0.1:9", &[]).await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.http)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: evil.test@good.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(!out.to_ascii_lowercase().contains("location:"), "{out}");
}

/// A minimal ClientHello record: `version` in the hello, one cipher suite, the extensions rustls
/// needs to consider TLS 1.2 (groups, point formats, signature algorithms).
fn client_hello(version: [u8; 2], suite: [u8; 2]) -> Vec<u8> {
    let mut ext = Vec::new();
    // supported_groups: x25519, secp256r1
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    ext.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02]);
    body.extend_from_slice(&suite);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// The first record type the server answers a ClientHello with (0x16 handshake, 0x15 alert).
async fn first_record(addr: std::net::SocketAddr, hello: &[u8]) -> Option<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(hello).await.expect("write");
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b)).await {
        Ok(Ok(1)) => Some(b[0]),
        _ => None,
    }
}

#[tokio::test]
async fn only_the_configured_protocols_and_suites_are_accepted() {
    let proxy = TestProxy::start("127.0.0.1:9", &[]).await;
    // The positive control: TLS 1.2 with a listed ECDHE-ECDSA suite gets a ServerHello.
    assert_eq!(
        first_record(proxy.https, &client_hello([3, 3], [0xc0, 0x2b])).await,
        Some(0x16)
    );
    // TLS 1.1 only: refused with an alert (or closed), never a ServerHello.
    assert_ne!(
        first_record(proxy.https, &client_hello([3, 2], [0xc0, 0x2b])).await,
        Some(0x16)
    );
    // TLS 1.2 with a suite not on the list (RSA key exchange, AES128-GCM): refused.
    assert_ne!(
        first_record(proxy.https, &client_hello([3, 3], [0x00, 0x9c])).await,
        Some(0x16)
    );
    // TLS 1.2 with a CBC suite (ECDHE-ECDSA-AES128-SHA): refused.
    assert_ne!(
        first_record(proxy.https, &client_hello([3, 3], [0xc0, 0x09])).await,
        Some(0x16)
    );
}

#[tokio::test]
async fn tls12_tls13_and_the_post_quantum_hybrid_work() {
    use rustls::crypto::aws_lc_rs;
    let proxy = TestProxy::start("127.0.0.1:9", &[]).await;
    let cases: Vec<(
        &rustls::SupportedProtocolVersion,
        &'static dyn rustls::crypto::SupportedKxGroup,
    )> = vec![
        (&rustls::version::TLS12, aws_lc_rs::kx_group::SECP384R1),
        (&rustls::version::TLS13, aws_lc_rs::kx_group::X25519),
        (&rustls::version::TLS13, aws_lc_rs::kx_group::X25519MLKEM768),
    ];
    for (version, kx) in cases {
        let provider = rustls::crypto::CryptoProvider {
            kx_groups: vec![kx],
            ..aws_lc_rs::default_provider()
        };
        let provider = Arc::new(provider);
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(common::client::AcceptAnyCert::new(
                provider,
            )))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(proxy.https)
            .await
            .expect("connect");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").expect("name"),
                tcp,
            )
            .await
            .unwrap_or_else(|e| panic!("{version:?} with {:?} refused: {e}", kx.name()));
        let (_, conn) = tls.get_ref();
        assert_eq!(
            conn.negotiated_key_exchange_group().map(|g| g.name()),
            Some(kx.name())
        );
    }
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(&app.addr.to_string(), &[]).await;
    let resp = client().get(proxy.url("/")).send().await.expect("request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let resp = client_h1()
        .get(proxy.url("/"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn large_bodies_stream_intact_both_ways() {
    let up = TestUpstream::start("a").await;
    let proxy = TestProxy::start(&up.addr.to_string(), &[("PROXY_MAX_BODY_SIZE", "0")]).await;
    // Upload 48 MiB as a stream of chunks.
    let total: u64 = 48 << 20;
    let chunks = futures_util::stream::iter((0..total / (1 << 20)).map(|c| {
        Ok::<_, std::io::Error>(
            (0..(1u64 << 20))
                .map(|i| pattern(c * (1 << 20) + i))
                .collect::<Vec<u8>>(),
        )
    }));
    let resp = client_h1()
        .post(proxy.url("/count"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.expect("body"), total.to_string());

    // Download 48 MiB and check every byte.
    let mut resp = client()
        .get(proxy.url(&format!("/big?n={total}")))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    let mut offset = 0u64;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        for (i, b) in chunk.iter().enumerate() {
            assert_eq!(*b, pattern(offset + i as u64), "byte {}", offset + i as u64);
        }
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, total);

    // And an echo round trip over HTTP/2.
    let data: Vec<u8> = (0..3_000_000u64).map(pattern).collect();
    let back = client()
        .post(proxy.url("/echo"))
        .body(data.clone())
        .send()
        .await
        .expect("echo")
        .bytes()
        .await
        .expect("body");
    assert!(back == data, "echo differs");
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let up = TestUpstream::start("a").await;
    let proxy = TestProxy::start(&up.addr.to_string(), &[]).await;
    let seen = client_h1()
        .get(proxy.url("/headers"))
        .header("Connection", "keep-alive, X-Secret")
        .header("X-Secret", "1")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Connection", "keep-alive")
        .header("TE", "gzip")
        .header("Trailer", "x-sum")
        .header("X-Kept", "yes")
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    for gone in [
        "x-secret:",
        "keep-alive:",
        "proxy-connection:",
        "te:",
        "trailer:",
        "upgrade:",
    ] {
        assert!(
            !seen.lines().any(|l| l.starts_with(gone)),
            "{gone} leaked upstream:\n{seen}"
        );
    }
    assert!(seen.contains("x-kept: yes\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
    assert!(
        seen.lines().any(|l| l.starts_with("host: localhost:")),
        "{seen}"
    );

    let resp = client_h1()
        .get(proxy.url("/hop"))
        .send()
        .await
        .expect("request");
    assert!(resp.headers().get("x-hop-secret").is_none());
    assert!(resp.headers().get("keep-alive").is_none());
    assert_eq!(resp.headers()["x-end-to-end"], "kept");
    // The app's `Server` is hidden, as nginx's `proxy_hide_header` default does (issue 26).
    assert!(resp.headers().get("server").is_none());
}

#[tokio::test]
async fn upgrade_requests_are_tunnelled() {
    let up = TestUpstream::start("a").await;
    let proxy = TestProxy::start(&up.addr.to_string(), &[]).await;
    let cfg = common::client::insecure_client_config(&[b"http/1.1"]).expect("cfg");
    let tcp = tokio::net::TcpStream::connect(proxy.https)
        .await
        .expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    tls.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut b).await.expect("read head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    tls.write_all(b"ping through the tunnel")
        .await
        .expect("write");
    let mut back = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut back))
        .await
        .expect("echoed")
        .expect("read");
    assert_eq!(&back, b"ping through the tunnel");
}

#[tokio::test]
async fn upstream_down_is_502_and_silent_upstream_is_504() {
    let down = closed_port().await;
    let proxy = TestProxy::start(&down.to_string(), &[]).await;
    let resp = client().get(proxy.url("/")).send().await.expect("request");
    assert_eq!(resp.status(), 502);

    // Accepts connections, never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let proxy = TestProxy::start(
        &silent_addr.to_string(),
        &[("PROXY_UPSTREAM_TIMEOUT", "300ms")],
    )
    .await;
    let resp = client().get(proxy.url("/")).send().await.expect("request");
    assert_eq!(resp.status(), 504);
    hold.abort();
}

#[tokio::test]
async fn a_moved_upstream_is_found_again_without_restarting_the_proxy() {
    let mut first = TestApp::start().await;
    let lookup = SwapLookup::new(vec![first.addr]);
    let mut opts = crate::support::ProxyOptions::new(&[("PROXY_UPSTREAM", "app.test:8000")]);
    opts.lookup = Some(lookup.clone());
    let proxy = TestProxy::start_with(opts).await;
    let c = client_h1();
    assert_eq!(
        c.get(proxy.url("/")).send().await.expect("req").status(),
        200
    );

    // The app is recreated elsewhere (a new container gets a new address).
    first.stop().await;
    let second = TestApp::start().await;
    lookup.set(vec![second.addr]);
    let ok = eventually(Duration::from_secs(5), || async {
        c.get(proxy.url("/"))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "proxy did not find the moved upstream");
    // And from then on every request succeeds.
    for _ in 0..5 {
        assert_eq!(
            c.get(proxy.url("/")).send().await.expect("req").status(),
            200
        );
    }
}

#[tokio::test]
async fn connections_are_spread_over_every_upstream_address() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let lookup = SwapLookup::new(vec![a.addr, b.addr]);
    let mut opts = crate::support::ProxyOptions::new(&[("PROXY_UPSTREAM", "app.test:8000")]);
    opts.lookup = Some(lookup);
    let proxy = TestProxy::start_with(opts).await;
    let c = client_h1();
    let answers = futures_util::future::join_all((0..16).map(|_| {
        let c = c.clone();
        let url = proxy.url("/id");
        async move {
            c.get(url)
                .send()
                .await
                .expect("req")
                .text()
                .await
                .expect("body")
        }
    }))
    .await;
    assert!(answers.iter().any(|a| a == "a"), "{answers:?}");
    assert!(answers.iter().any(|a| a == "b"), "{answers:?}");

    // One address down: the next one is tried, nothing fails.
    let down = closed_port().await;
    let lookup = SwapLookup::new(vec![down, a.addr]);
    let mut opts = crate::support::ProxyOptions::new(&[("PROXY_UPSTREAM", "app.test:8000")]);
    opts.lookup = Some(lookup);
    let proxy = TestProxy::start_with(opts).await;
    for _ in 0..4 {
        let c = client_h1();
        assert_eq!(
            c.get(proxy.url("/id")).send().await.expect("req").status(),
            200
        );
    }
}

#[tokio::test]
async fn shutdown_drains_an_in_flight_request() {
    let up = TestUpstream::start("a").await;
    let mut proxy = TestProxy::start(&up.addr.to_string(), &[]).await;
    let c = client_h1();
    let url = proxy.url("/slow?ms=500");
    let inflight =
        tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(150)).await;
    proxy.stop().await;
    assert_eq!(inflight.await.expect("task").expect("answered"), 200);
    assert!(
        tokio::net::TcpStream::connect(proxy.https).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn hsts_can_be_turned_off() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(&app.addr.to_string(), &[("PROXY_HSTS", "")]).await;
    let resp = client().get(proxy.url("/")).send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn http2_to_the_upstream_forwards_the_same_page() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(&app.addr.to_string(), &[("PROXY_UPSTREAM_HTTP2", "true")]).await;
    for c in [client(), client_h1()] {
        let body = c
            .get(proxy.url("/"))
            .header("X-Forwarded-For", "6.6.6.6")
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        assert_eq!(
            body,
            format!(
                "{QUOTE}\nX-Forwarded-For: 127.0.0.1\nX-Real-IP: 127.0.0.1\nX-Forwarded-Proto: https\n"
            )
        );
    }
    // The hop really is HTTP/2: an upstream that offers only HTTP/1.1 by ALPN is unreachable.
    let h1_only = TestUpstream::start("h1").await;
    let proxy_h1_only = TestProxy::start(
        &h1_only.addr.to_string(),
        &[("PROXY_UPSTREAM_HTTP2", "true")],
    )
    .await;
    let resp = client()
        .get(proxy_h1_only.url("/id"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 502);
    // Upstream errors keep their status through the HTTP/2 hop.
    let resp = client()
        .post(proxy.url("/"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn healthcheck_subcommand_checks_the_listener_without_a_request() {
    let app = TestApp::start().await;
    let proxy = TestProxy::start(&app.addr.to_string(), &[]).await;
    let run = |addr: std::net::SocketAddr| {
        std::process::Command::new(env!("CARGO_BIN_EXE_proxy"))
            .arg("healthcheck")
            .env("PROXY_HTTPS_LISTEN", addr.to_string())
            .output()
            .expect("run proxy healthcheck")
    };
    let addr = proxy.https;
    let ok = tokio::task::spawn_blocking(move || run(addr))
        .await
        .expect("join");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let down = closed_port().await;
    let bad = tokio::task::spawn_blocking(move || run(down))
        .await
        .expect("join");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("cannot connect"),
        "{bad:?}"
    );
    // Nothing was forwarded, so nothing was logged.
    assert_eq!(proxy.access_log(), "");
}
