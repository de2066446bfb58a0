//! The test upstream of tests/e2e.sh (never shipped): `serve` is a plain HTTP/1.1 service that
//! answers every request with its name and the request's head, and echoes WebSocket messages on
//! `/ws`; `fetch URL --cacert FILE` is an HTTPS client that trusts only FILE (a container calling
//! `https://api.localhost` through the proxy and verifying it with the development CA).
//!
//! `serve` reads SERVICE_NAME (default `e2e-service`) and SERVICE_LISTEN (default 0.0.0.0:3000)
//! and exits 0 on SIGTERM (it is PID 1 in a scratch image).

use std::convert::Infallible;
use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const USAGE: &str = "usage: e2e-service [serve] | e2e-service fetch URL --cacert FILE";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => serve().await,
        Some("fetch") => fetch(&args[1..]).await,
        Some(other) => {
            eprintln!("e2e-service: unknown command `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn serve() -> ExitCode {
    let name: Arc<str> = std::env::var("SERVICE_NAME")
        .unwrap_or_else(|_| "e2e-service".into())
        .into();
    let listen = std::env::var("SERVICE_LISTEN").unwrap_or_else(|_| "0.0.0.0:3000".into());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("e2e-service: SERVICE_LISTEN={listen}: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("e2e-service: cannot handle SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("e2e-service {name}: listening on {listen} (plain HTTP/1.1, WebSocket echo on /ws)");
    loop {
        tokio::select! {
            _ = term.recv() => return ExitCode::SUCCESS,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let name = name.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(name.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades();
                    let _ = conn.await;
                });
            }
        }
    }
}

type Answer = Response<Full<Bytes>>;

/// `/ws`: a WebSocket echo; anything else: the service's name and the request head, as text.
async fn answer(name: Arc<str>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    if req.uri().path() == "/ws" {
        return Ok(websocket(name, req));
    }
    let mut body = format!("service {name}\n{} {}\n", req.method(), req.uri());
    for (key, value) in req.headers() {
        body.push_str(&format!(
            "{key}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    Ok(text(StatusCode::OK, body))
}

fn text(status: StatusCode, body: String) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Accept the upgrade, then echo every text or binary message prefixed with the service's name.
fn websocket(name: Arc<str>, mut req: Request<Incoming>) -> Answer {
    let accept = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| derive_accept_key(key.as_bytes()))
        .and_then(|accept| HeaderValue::from_str(&accept).ok());
    let Some(accept) = accept else {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade expected\n".into(),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = TokioIo::new(upgraded);
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::text(format!("{name}: {}", t.as_str())),
                Message::Binary(b) => Message::Binary(b),
                // a Close is answered by tungstenite as the stream goes on, then it ends
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
        let _ = ws.close(None).await;
    });
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    resp
}

/// GET URL trusting only the CA in FILE; prints the status line and the body, exits 0 on a 2xx.
async fn fetch(args: &[String]) -> ExitCode {
    let [url, flag, ca] = args else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if flag != "--cacert" {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    match get(url, ca).await {
        Ok((status, body)) => {
            println!("{status}\n{body}");
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            let mut msg = format!("e2e-service fetch {url}: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

async fn get(url: &str, ca: &str) -> Result<(StatusCode, String), Box<dyn Error>> {
    let pem = std::fs::read(ca).map_err(|e| format!("--cacert {ca}: {e}"))?;
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let resp = client.get(url).send().await?;
    let status = resp.status();
    Ok((status, resp.text().await?))
}
