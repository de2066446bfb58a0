//! Routes by name and path (issue 23 §1): `PROXY_ROUTES` sends each host and path prefix to its
//! own upstream over `https://`, `http://` (plain HTTP/1.1) or `h2c://` (plain HTTP/2, trailers
//! kept); `strip` removes the prefix and says so in X-Forwarded-Prefix; per-route body limits
//! and WebSocket switch; an unknown host gets the 404 page, or 421 when the connection's TLS
//! name (SNI) is unknown too; PROXY_UPSTREAM is the `*` route.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::h2raw::h2_client;
use crate::support::raw::{Answer, SOON, h1, read_answer, tls_connect_as};
use crate::support::upstream::TestUpstream;
use crate::support::{ProxyOptions, TestProxy, client_h1};

/// A proxy with these routes (and no `PROXY_UPSTREAM`: no `*` route unless they name one).
pub async fn proxy_with_routes(routes: &str, env: &[(&str, &str)]) -> TestProxy {
    let mut opts = ProxyOptions::new(env);
    opts.env.push(("PROXY_ROUTES".into(), routes.into()));
    TestProxy::start_with(opts).await
}

/// Status and body of `GET path` with this `Host`, over HTTP/1.1.
pub async fn get(proxy: &TestProxy, host: &str, path: &str) -> (u16, String) {
    let resp = client_h1()
        .get(proxy.url(path))
        .header("host", host)
        .send()
        .await
        .expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// The value of header `name` in a `/headers` listing.
fn header_in<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    listing
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn hosts_and_prefixes_reach_their_upstreams_over_https_http_and_h2c() {
    let app = TestUpstream::start("app").await;
    let api = TestUpstream::start_plain("api").await;
    let grpc = TestUpstream::start_h2c("grpc").await;
    let routes = format!(
        "localhost=https://{}, api.localhost=http://{}, localhost/api/=http://{} strip,\n\
         grpc.localhost=h2c://{}",
        app.addr, api.addr, api.addr, grpc.addr
    );
    let proxy = proxy_with_routes(&routes, &[]).await;
    assert_eq!(get(&proxy, "localhost", "/id").await, (200, "app".into()));
    assert_eq!(
        get(&proxy, "API.localhost.", "/id").await,
        (200, "api".into())
    );
    let (_, how) = get(&proxy, "api.localhost", "/authority").await;
    assert!(
        how.starts_with("HTTP/1.1 "),
        "plain HTTP/1.1 upstream: {how}"
    );
    assert!(how.ends_with(" api.localhost"), "the client's host: {how}");
    // The prefix goes, the query stays; the upstream learns both.
    assert_eq!(
        get(&proxy, "localhost", "/api/target?x=1").await,
        (200, "/target?x=1".into())
    );
    assert_eq!(
        get(&proxy, "localhost", "/api").await.0,
        404,
        "`/api` → `/` upstream"
    );
    let (_, listing) = get(&proxy, "localhost", "/api/headers").await;
    assert_eq!(
        header_in(&listing, "x-forwarded-prefix"),
        Some("/api"),
        "{listing}"
    );
    assert_eq!(header_in(&listing, "x-forwarded-host"), Some("localhost"));
    assert_eq!(
        get(&proxy, "localhost", "/api/id").await,
        (200, "api".into())
    );
    assert_eq!(get(&proxy, "localhost", "/id").await, (200, "app".into()));
    let (_, listing) = get(&proxy, "api.localhost", "/headers").await;
    assert_eq!(
        header_in(&listing, "x-forwarded-prefix"),
        None,
        "nothing stripped"
    );
    let (_, how) = get(&proxy, "grpc.localhost", "/authority").await;
    assert!(
        how.starts_with("HTTP/2.0 grpc.localhost"),
        "h2c upstream: {how}"
    );
}

#[tokio::test]
async fn h2c_routes_keep_trailers_end_to_end() {
    let grpc = TestUpstream::start_h2c("grpc").await;
    let proxy = proxy_with_routes(&format!("grpc.localhost=h2c://{}", grpc.addr), &[]).await;
    let send = h2_client(proxy.https).await;
    let req = http::Request::post("https://grpc.localhost/trailers")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let mut ready = send.clone().ready().await.expect("ready");
    let (resp, mut body_tx) = ready.send_request(req, false).expect("send");
    body_tx
        .send_data(Bytes::from_static(b"\0\0\0\0\0"), true)
        .expect("body");
    let resp = tokio::time::timeout(SOON, resp)
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.expect("data"));
    }
    assert_eq!(data, b"payload");
    let trailers = body
        .trailers()
        .await
        .expect("trailers")
        .expect("some trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "fine");
    drop(send);
}

#[tokio::test]
async fn an_unknown_host_gets_the_404_page_and_proxy_upstream_is_the_star_route() {
    let api = TestUpstream::start_plain("api").await;
    let routes = format!("api.localhost=http://{}", api.addr);
    let proxy = proxy_with_routes(&routes, &[]).await;
    // (over a connection made for a served name: an unserved one gets 421, tested below)
    let resp = get_by_sni(&proxy, "api.localhost", "apx.localhost").await;
    resp.assert_page(404);
    let text = resp.text();
    assert!(
        text.contains("api.localhost"),
        "the page lists the hosts served: {text}"
    );
    // With PROXY_UPSTREAM set too, it serves every other host.
    let app = TestUpstream::start("app").await;
    let app_addr = app.addr.to_string();
    let both = proxy_with_routes(&routes, &[("PROXY_UPSTREAM", &app_addr)]).await;
    assert_eq!(
        get(&both, "apx.localhost", "/id").await,
        (200, "app".into())
    );
    assert_eq!(
        get(&both, "api.localhost", "/id").await,
        (200, "api".into())
    );
}

/// `GET /id` with this `Host` on a fresh HTTP/1.1 connection whose TLS handshake asked for `sni`.
async fn get_by_sni(proxy: &TestProxy, sni: &str, host: &str) -> Answer {
    let mut tls = tls_connect_as(proxy.https, sni, &[b"http/1.1"]).await;
    let raw = format!("GET /id HTTP/1.1\r\nHost: {host}\r\nAccept: text/html\r\n\r\n");
    tls.write_all(raw.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(SOON, read_answer(&mut tls, &mut buf))
        .await
        .expect("an answer in time")
        .expect("an answer")
}

#[tokio::test]
async fn an_unknown_tls_name_gets_421_a_known_one_with_an_unknown_host_404() {
    let api = TestUpstream::start_plain("api").await;
    let routes = format!("api.localhost=http://{}", api.addr);
    let proxy = proxy_with_routes(&routes, &[]).await;
    // Neither the TLS name nor the host is served: misdirected, the error page with 421 (the
    // hosts listed, as the 404's), and the connection is not kept for another try.
    let nope = get_by_sni(&proxy, "nope.localhost", "nope.localhost").await;
    nope.assert_page(421);
    assert!(nope.text().contains("api.localhost"), "{}", nope.text());
    assert_eq!(nope.header("connection"), Some("close"), "{}", nope.head);
    // A served TLS name, an unknown host: the plain 404 page.
    get_by_sni(&proxy, "api.localhost", "nope.localhost")
        .await
        .assert_page(404);
    // The host decides where a request goes; the TLS name only which error it gets.
    for sni in ["api.localhost", "nope.localhost"] {
        let ok = get_by_sni(&proxy, sni, "api.localhost").await;
        assert_eq!((ok.status, ok.text()), (200, "api".into()), "SNI {sni}");
    }
    // A `*` route serves every name: never 421.
    let app = TestUpstream::start("app").await;
    let star = format!("{routes}, *=https://{}", app.addr);
    let star = proxy_with_routes(&star, &[]).await;
    let any = get_by_sni(&star, "nope.localhost", "nope.localhost").await;
    assert_eq!((any.status, any.text()), (200, "app".into()));
}

#[tokio::test]
async fn body_limit_and_websocket_switch_are_per_route() {
    let up = TestUpstream::start_plain("up").await;
    let routes = format!(
        "localhost=http://{a}, localhost/small/=http://{a} strip max_body=1k ws=off",
        a = up.addr
    );
    let proxy = proxy_with_routes(&routes, &[("PROXY_MAX_BODY_SIZE", "4k")]).await;
    let post = |path: &'static str, n: usize| {
        let url = proxy.url(path);
        async move {
            client_h1()
                .post(url)
                .body(vec![b'x'; n])
                .send()
                .await
                .expect("answer")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("/small/count", 2048).await, 413, "the route's 1k");
    assert_eq!(post("/small/count", 512).await, 200);
    assert_eq!(
        post("/count", 2048).await,
        200,
        "PROXY_MAX_BODY_SIZE elsewhere"
    );
    assert_eq!(post("/count", 8192).await, 413);
    // ws=off: the upgrade goes as a plain request; elsewhere the tunnel echoes.
    let (status, _) = upgrade(proxy.https, "localhost", "/small/upgrade").await;
    assert_eq!(status, 200, "not upgraded on the ws=off route");
    let (status, mut tunnel) = upgrade(proxy.https, "localhost", "/upgrade").await;
    assert_eq!(status, 101);
    tunnel.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    tokio::time::timeout(SOON, tunnel.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("echo");
    assert_eq!(&back, b"ping");
}

/// A WebSocket upgrade for `path` on `host` over a fresh HTTP/1.1 connection: the status and
/// the connection (the tunnel after a 101).
pub async fn upgrade(addr: SocketAddr, host: &str, path: &str) -> (u16, crate::support::raw::Tls) {
    let mut tls = h1(addr).await;
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    tls.write_all(raw.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let answer = tokio::time::timeout(SOON, read_answer(&mut tls, &mut buf))
        .await
        .expect("an answer in time")
        .expect("an answer");
    (answer.status, tls)
}
