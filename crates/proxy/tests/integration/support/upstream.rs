//! A test-only HTTPS upstream (the app has no echo or big routes, and must not grow test-only
//! ones): echoes bodies, lists received headers, streams big bodies, stalls mid-body, waits,
//! answers any status,
//! tunnels an upgrade (echoing what is sent), and says which instance answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::server::{self, Limits, Transport};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A running test upstream; dropping it stops it.
pub struct TestUpstream {
    pub addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestUpstream {
    /// Start on 127.0.0.1:0 offering HTTP/1.1 only; `id` is what `/id` answers.
    pub async fn start(id: &'static str) -> TestUpstream {
        Self::start_alpn(id, &[b"http/1.1"]).await
    }

    /// As [`TestUpstream::start`], offering HTTP/2 too.
    pub async fn start_h2(id: &'static str) -> TestUpstream {
        Self::start_alpn(id, &[b"h2", b"http/1.1"]).await
    }

    /// As [`TestUpstream::start`] over plain TCP: HTTP/1.1 without TLS (a dev server).
    pub async fn start_plain(id: &'static str) -> TestUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(server::serve(
            listener,
            Transport::Plain,
            Limits::default(),
            move |conn| hyper::service::service_fn(move |req| handle(id, conn.peer, req)),
            stop.clone().cancelled_owned(),
        ));
        TestUpstream { addr, stop }
    }

    /// Plain TCP, HTTP/2 with prior knowledge only (a gRPC server's way): `h2c://`.
    pub async fn start_h2c(id: &'static str) -> TestUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    () = stopped.cancelled() => return,
                    got = listener.accept() => match got { Ok(a) => a, Err(_) => continue },
                };
                let service = hyper::service::service_fn(move |req| handle(id, peer, req));
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        TestUpstream { addr, stop }
    }

    async fn start_alpn(id: &'static str, alpn: &[&[u8]]) -> TestUpstream {
        let tls = tls_server_config(alpn);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        tokio::spawn(server::serve(
            listener,
            Transport::Tls(tokio_rustls::TlsAcceptor::from(tls)),
            Limits::default(),
            move |conn| hyper::service::service_fn(move |req| handle(id, conn.peer, req)),
            stop.clone().cancelled_owned(),
        ));
        TestUpstream { addr, stop }
    }
}

/// A TLS server config with a fresh self-signed certificate for `localhost` and these ALPN ids.
pub fn tls_server_config(alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let ss = common::tls::self_signed(&["localhost"], 1).expect("cert");
    let provider = common::tls::provider();
    let ck = ss
        .keypair
        .certified(&provider, "t.crt".as_ref(), "t.key".as_ref())
        .expect("certified");
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck)));
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(tls)
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(body.into())
            .map_err(|n| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The byte at offset `i` of a `/big` body.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Every header received, one `name: value` line each.
fn headers(req: &Request<Incoming>) -> Response<Body> {
    let mut text = String::new();
    for (k, v) in req.headers() {
        text.push_str(&format!(
            "{}: {}\n",
            k,
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    full(StatusCode::OK, text)
}

/// `total` bytes of [`pattern`], streamed in 64 KiB frames.
fn big(total: u64) -> Response<Body> {
    let chunk = 64 * 1024u64;
    let stream = futures_util::stream::iter((0..total.div_ceil(chunk)).map(move |c| {
        let start = c * chunk;
        let end = (start + chunk).min(total);
        let data: Vec<u8> = (start..end).map(pattern).collect();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from(data)))
    }));
    Response::new(StreamBody::new(stream).boxed())
}

/// `grpc`-like: a body, then trailers `grpc-status: 0` and `grpc-message: fine`.
fn with_trailers() -> Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().expect("v"));
    trailers.insert("grpc-message", "fine".parse().expect("v"));
    let frames: Vec<Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>> = vec![
        Ok(Frame::data(Bytes::from_static(b"payload"))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut r = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    r.headers_mut()
        .insert("content-type", "application/grpc".parse().expect("v"));
    r
}

/// Server-Sent Events: `n` events (`data: i µs-written`), one every `ms` milliseconds, each written as
/// soon as it is due (a dev server's live log or reload channel).
fn sse(n: u64, ms: u64) -> Response<Body> {
    let stream = futures_util::stream::unfold(0u64, move |i| async move {
        if i == n {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        // When it was written (µs since the epoch): the client measures the delay.
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let event = Bytes::from(format!("data: {i} {at}\n\n"));
        Some((
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(event)),
            i + 1,
        ))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("v"));
    r.headers_mut()
        .insert("cache-control", "no-cache".parse().expect("v"));
    r
}

/// 101 to the protocol the request asked for, then everything sent comes back; a request that
/// arrives without `Upgrade` (the proxy forwarded it as a plain request) gets `200 not upgraded`.
fn echo_upgrade(req: &mut Request<Incoming>) -> Response<Body> {
    let Some(protocol) = req.headers().get(http::header::UPGRADE).cloned() else {
        return full(StatusCode::OK, "not upgraded");
    };
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let mut io = TokioIo::new(up);
            let (mut r, mut w) = tokio::io::split(&mut io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    let mut r = full(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    r.headers_mut()
        .insert("connection", "upgrade".parse().expect("v"));
    r.headers_mut().insert(http::header::UPGRADE, protocol);
    r
}

async fn handle(
    id: &'static str,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let resp = match path.as_str() {
        "/id" => full(StatusCode::OK, id),
        "/peer" => full(StatusCode::OK, peer.to_string()),
        // `version authority Host`, as this upstream received them.
        "/authority" => full(
            StatusCode::OK,
            format!(
                "{:?} {} {}",
                req.version(),
                req.uri().authority().map_or("-", |a| a.as_str()),
                req.headers()
                    .get(http::header::HOST)
                    .map_or("-".into(), |h| String::from_utf8_lossy(h.as_bytes()))
            ),
        ),
        "/headers" => headers(&req),
        "/echo" => {
            let body = req
                .into_body()
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed();
            Response::new(body)
        }
        "/count" => {
            // Count the bytes received (streamed, never held whole).
            let mut n = 0u64;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => return Ok(full(StatusCode::BAD_REQUEST, "body error")),
                }
            }
            full(StatusCode::OK, n.to_string())
        }
        "/big" => big(query_num(&req, "n")),
        // `n` bytes, then the answer breaks (an app that dies mid-answer).
        "/cut" => {
            let first = Bytes::from(vec![b'x'; query_num(&req, "n") as usize]);
            let broke = futures_util::stream::once(async {
                // After the head and the first bytes have left.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err::<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>(
                    "the app broke off".into(),
                )
            });
            let first = futures_util::stream::iter([Ok(Frame::data(first))]);
            let stream = futures_util::StreamExt::chain(first, broke);
            Response::new(StreamBody::new(stream).boxed())
        }
        // `n` bytes, then nothing more, ever (an app that stalls mid-answer).
        "/stall" => {
            let first = Bytes::from(vec![b'x'; query_num(&req, "n") as usize]);
            let stream = futures_util::stream::iter([Ok::<
                _,
                Box<dyn std::error::Error + Send + Sync>,
            >(Frame::data(first))]);
            let stream = futures_util::StreamExt::chain(stream, futures_util::stream::pending());
            Response::new(StreamBody::new(stream).boxed())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            full(StatusCode::OK, "slow done")
        }
        // An answer head of about `n` bytes: `n / 4000` fields of 4,000 bytes each.
        "/bighead" => {
            let mut r = full(StatusCode::OK, "big head");
            for i in 0..query_num(&req, "n") / 4000 {
                let name =
                    http::HeaderName::from_bytes(format!("x-big-{i}").as_bytes()).expect("name");
                r.headers_mut()
                    .insert(name, "v".repeat(4000).parse().expect("value"));
            }
            r
        }
        "/hop" => {
            let mut r = full(StatusCode::OK, "hop");
            let h = r.headers_mut();
            h.insert("connection", "x-hop-secret".parse().expect("v"));
            h.insert("x-hop-secret", "1".parse().expect("v"));
            h.insert("keep-alive", "timeout=5".parse().expect("v"));
            h.insert("x-end-to-end", "kept".parse().expect("v"));
            h.insert("server", "test-upstream/1.0".parse().expect("v"));
            r
        }
        "/upgrade" => echo_upgrade(&mut req),
        // The path and query as received (after a route's `strip`).
        "/target" => full(
            StatusCode::OK,
            req.uri()
                .path_and_query()
                .map_or("-".into(), |p| p.to_string()),
        ),
        "/trailers" => with_trailers(),
        "/sse" => sse(query_num(&req, "n"), query_num(&req, "ms")),
        p if p.starts_with("/status/") => {
            let code = p["/status/".len()..].parse().unwrap_or(500);
            let mut r = full(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "upstream's own error body",
            );
            r.headers_mut()
                .insert("content-type", "text/plain".parse().expect("v"));
            r
        }
        _ => full(StatusCode::NOT_FOUND, "no such test route"),
    };
    Ok(resp)
}
