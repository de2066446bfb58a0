//! Hardening (issue 8), request hygiene against the real proxy with a recording upstream that
//! shows what, if anything, was forwarded: CONNECT and absolute-form targets, Host, framing
//! (smuggling, ambiguous Content-Length / Transfer-Encoding), HTTP/2 hygiene and client-sent
//! forwarding headers.

use std::time::Duration;

use crate::support::h2raw::{h2_ask, h2_client};
use crate::support::proxy_to;
use crate::support::raw::{answer, ask, h1, read_answer};
use crate::support::recorder::Recorder;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn connect_and_foreign_absolute_targets_get_400_and_are_not_forwarded() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    for raw in [
        "CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n",
        "GET https://evil.test/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "GET http://evil.test/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        let a = answer(proxy.https, raw.as_bytes()).await;
        eprintln!("{raw:?} -> {}", a.head.lines().next().unwrap_or_default());
        a.assert_page(400);
    }
    // The same on the plain-HTTP listener (which only redirects).
    let mut tcp = TcpStream::connect(proxy.http).await.expect("connect");
    tcp.write_all(b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_answer(&mut tcp, &mut buf)
        .await
        .expect("answer")
        .assert_page(400);
    // Absolute-form naming this host is fine.
    let a = answer(
        proxy.https,
        b"GET https://localhost/same HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 200);
    let seen = rec.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/same");
    assert_eq!(seen[0].headers["host"], "localhost");
}

/// HTTP/1.1 requires a Host header (RFC 9112 §3.2: "MUST respond with a 400"), even with an
/// absolute-form target.
#[tokio::test]
async fn absolute_form_without_host_gets_400() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let a = answer(proxy.https, b"GET https://evil.test/x HTTP/1.1\r\n\r\n").await;
    assert_eq!(a.status, 400, "{}", a.head);
    assert!(rec.seen().is_empty(), "forwarded: {:?}", rec.seen());
}

#[tokio::test]
async fn bad_host_headers_get_400_with_the_page() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let mut wrong = Vec::new();
    for head in [
        "GET / HTTP/1.1\r\n",
        "GET / HTTP/1.0\r\n",
        "GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.test\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n",
        "GET / HTTP/1.1\r\nHost: user@localhost\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:\r\n",
        "GET / HTTP/1.1\r\nHost: \r\n",
        "GET / HTTP/1.1\r\nHost: local/host\r\n",
        "GET / HTTP/1.1\r\nHost: [zz::1]\r\n",
    ] {
        let raw = format!("{head}\r\n");
        let a = answer(proxy.https, raw.as_bytes()).await;
        if a.status != 400 || !a.is_page() {
            wrong.push(format!(
                "{head:?} -> {} {}",
                a.status,
                if a.is_page() { "page" } else { "bare" }
            ));
        }
    }
    assert!(wrong.is_empty(), "not a 400 page:\n{}", wrong.join("\n"));
    assert!(rec.seen().is_empty(), "forwarded: {:?}", rec.targets());
}

/// A port outside 1–65535 is not a valid Host either.
#[tokio::test]
async fn host_with_an_out_of_range_port_gets_400() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let a = answer(
        proxy.https,
        b"GET / HTTP/1.1\r\nHost: localhost:99999\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.head);
    assert!(rec.seen().is_empty(), "forwarded: {:?}", rec.targets());
}

/// The smuggling classics, each hiding `smuggled` after what it declares as its body.
fn smuggling_cases(smuggled: &str) -> Vec<String> {
    vec![
        // CL.TE and TE.CL
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
        // Obfuscated Transfer-Encoding
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\
             Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
             Transfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /a HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // Conflicting and invalid Content-Length
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\
             Content-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
        format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: +0\r\n\r\n{smuggled}"),
        format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0, 0\r\n\r\n{smuggled}"),
        format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n{smuggled}"),
        format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0x0\r\n\r\n{smuggled}"),
        // obs-fold hiding a header
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nX-Fold: a\r\n Content-Length: 0\r\n\r\n{smuggled}"
        ),
        // A NUL in a header
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nX-N: a\0b\r\nContent-Length: 0\r\n\r\n{smuggled}"
        ),
    ]
}

/// The smuggling classics never smuggle: whatever the answer, no second request hidden in a
/// body reaches the upstream, and what is forwarded has one framing.
#[tokio::test]
async fn framing_attacks_never_smuggle_a_request() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let cases = smuggling_cases("GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let mut report = Vec::new();
    for raw in &cases {
        let mut s = h1(proxy.https).await;
        s.write_all(raw.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let mut statuses = Vec::new();
        while let Ok(Some(a)) =
            tokio::time::timeout(Duration::from_secs(3), read_answer(&mut s, &mut buf)).await
        {
            statuses.push((a.status, if a.is_page() { "page" } else { "bare" }));
        }
        report.push(format!(
            "{:?} -> {statuses:?}",
            raw.split("\r\n\r\n").next().unwrap_or(raw)
        ));
        assert!(
            statuses.len() <= 1,
            "two answers to one request: {raw:?}: {statuses:?}"
        );
    }
    eprintln!("{}", report.join("\n"));
    let seen = rec.seen();
    for s in &seen {
        assert_ne!(
            s.target, "/smuggled",
            "a smuggled request reached the upstream"
        );
        assert!(
            !(s.headers.contains_key("content-length")
                && s.headers.contains_key("transfer-encoding")),
            "ambiguous framing forwarded: {:?}",
            s.headers
        );
        assert!(
            s.headers.get_all("content-length").iter().count() <= 1,
            "{:?}",
            s.headers
        );
    }
    eprintln!(
        "forwarded: {:?}",
        seen.iter()
            .map(|s| (
                s.method.as_str(),
                s.target.as_str(),
                s.body.as_ref().map(Vec::len)
            ))
            .collect::<Vec<_>>()
    );
}

/// What hyper cannot read one way it refuses itself: a bare 400, connection closed.
#[tokio::test]
async fn framing_hyper_cannot_read_gets_a_bare_400_and_a_close() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    for raw in [
        "POST /diffcl HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST /listcl HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 5\r\n\r\nhello",
        "POST /pluscl HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello",
        "GET /fold HTTP/1.1\r\nHost: localhost\r\nX-Fold: a\r\n b\r\n\r\n",
        "POST /te10 HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /tegzip HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
    ] {
        let (a, closed) = ask(proxy.https, raw.as_bytes()).await;
        let a = a.expect("an answer");
        assert_eq!(a.status, 400, "{raw:?}: {}", a.head);
        assert!(
            closed,
            "{raw:?}: connection kept open after a framing error"
        );
    }
    assert!(rec.seen().is_empty(), "forwarded: {:?}", rec.targets());
}

const CL_THEN_TE: &str = "POST /clte HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
                          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
const TE_THEN_CL: &str = "POST /tecl HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\
                          Content-Length: 5\r\n\r\n0\r\n\r\n";
const SAME_CL_TWICE: &str = "POST /dupcl HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
                             Content-Length: 5\r\n\r\nhello";

/// Both Content-Length and Transfer-Encoding, or a repeated Content-Length, get 400 with the
/// error page and a close, and are never forwarded (nginx ≥ 1.21.1, Envoy). hyper folds these
/// before the handler sees them; the raw head (`common::server::RawHead`) still shows them.
#[tokio::test]
async fn cl_with_te_and_repeated_cl_get_400_and_are_not_forwarded() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let mut outcome = Vec::new();
    for raw in [CL_THEN_TE, TE_THEN_CL, SAME_CL_TWICE] {
        let (a, closed) = ask(proxy.https, raw.as_bytes()).await;
        let a = a.expect("an answer");
        if a.status != 400 || !a.is_page() || !closed {
            outcome.push(format!(
                "{raw:?} -> {} (page: {}, closed: {closed})",
                a.status,
                a.is_page()
            ));
        }
    }
    assert!(
        outcome.is_empty() && rec.seen().is_empty(),
        "not refused:\n{}\nforwarded: {:?}",
        outcome.join("\n"),
        rec.targets()
    );
    // The same on a kept-alive connection after an ordinary request with a body.
    let mut s = h1(proxy.https).await;
    let raw = format!(
        "POST /first HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello{CL_THEN_TE}"
    );
    s.write_all(raw.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let first = read_answer(&mut s, &mut buf).await.expect("first answer");
    assert_eq!(first.status, 200);
    read_answer(&mut s, &mut buf)
        .await
        .expect("second answer")
        .assert_page(400);
    assert_eq!(rec.targets(), ["/first"]);
}

/// HTTP/2 has no Transfer-Encoding; a duplicate content-length, a CONNECT or an :authority that
/// disagrees with Host are ours to refuse, with the page.
#[tokio::test]
async fn h2_hygiene_gets_400_with_the_page() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let mut send = h2_client(proxy.https).await;
    let dup_cl = http::Request::post(proxy.url("/dupcl"))
        .header("content-length", "0")
        .header("content-length", "0")
        .body(())
        .expect("req");
    let connect = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("localhost:{}", proxy.https.port()))
        .body(())
        .expect("req");
    let other_host = http::Request::get(proxy.url("/other"))
        .header("host", "evil.test")
        .body(())
        .expect("req");
    for (name, req) in [
        ("dup CL", dup_cl),
        ("CONNECT", connect),
        ("host", other_host),
    ] {
        match h2_ask(&mut send, req).await {
            Ok((status, headers, _)) => {
                assert_eq!(status, 400, "{name}");
                assert!(headers.contains_key("x-request-id"), "{name}: not the page");
            }
            Err(e) => panic!("{name}: stream error instead of the page: {e}"),
        }
    }
    assert!(rec.seen().is_empty(), "forwarded: {:?}", rec.targets());
}

/// Client-sent X-Real-IP / X-Forwarded-* / Forwarded never reach the upstream from an untrusted
/// peer: the proxy's own values replace them (X-Forwarded-Host: the `Host` it forwards), the
/// rest are dropped.
#[tokio::test]
async fn client_forwarding_headers_never_leak_from_untrusted_peers() {
    let rec = Recorder::start().await;
    let proxy = proxy_to(rec.addr, &[]).await;
    let spoof = "X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\n\
                 X-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.test\r\n\
                 X-Forwarded-Port: 80\r\nX-Forwarded-Server: evil\r\nX-Forwarded-Prefix: /evil\r\n\
                 X-Forwarded-Ssl: off\r\nForwarded: for=6.6.6.6;proto=http\r\n";
    let raw = format!("GET /h1 HTTP/1.1\r\nHost: localhost\r\n{spoof}\r\n");
    assert_eq!(answer(proxy.https, raw.as_bytes()).await.status, 200);
    let mut send = h2_client(proxy.https).await;
    let mut req = http::Request::get(proxy.url("/h2"));
    for line in spoof.split("\r\n").filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').expect("header");
        req = req.header(k.trim().to_ascii_lowercase(), v.trim());
    }
    let (status, _, _) = h2_ask(&mut send, req.body(()).expect("req"))
        .await
        .expect("h2");
    assert_eq!(status, 200);
    let seen = rec.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let h = &s.headers;
        let all = |n: &str| {
            h.get_all(n)
                .iter()
                .map(|v| v.to_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(all("x-forwarded-for"), ["127.0.0.1"], "{}", s.target);
        assert_eq!(all("x-real-ip"), ["127.0.0.1"], "{}", s.target);
        assert_eq!(all("x-forwarded-proto"), ["https"], "{}", s.target);
        // The proxy's own X-Forwarded-Host: the host the client named, never the spoofed one.
        assert_eq!(all("x-forwarded-host"), all("host"), "{}", s.target);
        let leaked: Vec<_> = h
            .keys()
            .map(|k| k.as_str())
            .filter(|k| {
                (k.starts_with("x-forwarded-")
                    && !matches!(
                        *k,
                        "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
                    ))
                    || *k == "forwarded"
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "{}: client forwarding headers leaked upstream: {leaked:?}",
            s.target
        );
    }
}
