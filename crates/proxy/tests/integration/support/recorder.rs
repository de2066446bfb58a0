//! A recording HTTPS upstream: what reached it, exactly (method, target, headers, whole body or
//! none), counted on arrival; `/hold` waits 8 s before answering.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio_util::sync::CancellationToken;

use super::upstream::tls_server_config;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    /// `None`: the body failed midway (the proxy aborted it).
    pub body: Option<Vec<u8>>,
}

/// A running recording upstream; dropping it stops it.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Requests that reached the recorder (counted on arrival; `/hold` then waits 8 s).
    pub arrived: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Recorder {
    /// Start on 127.0.0.1:0.
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = CancellationToken::new();
        let log = seen.clone();
        let arrived = Arc::new(AtomicUsize::new(0));
        let arrived_in = arrived.clone();
        tokio::spawn(common::server::serve(
            listener,
            common::server::Transport::Tls(tokio_rustls::TlsAcceptor::from(tls_server_config(&[
                b"http/1.1",
            ]))),
            common::server::Limits::default(),
            move |_conn| {
                let log = log.clone();
                let arrived = arrived_in.clone();
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    let arrived = arrived.clone();
                    async move {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        if req.uri().path() == "/hold" {
                            tokio::time::sleep(Duration::from_secs(8)).await;
                        }
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.ok().map(|b| b.to_bytes().to_vec());
                        let n = body.as_ref().map_or(0, Vec::len);
                        log.lock().expect("lock").push(Seen {
                            method: parts.method.to_string(),
                            target: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        });
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                            "recorded {n}"
                        )))))
                    }
                })
            },
            stop.clone().cancelled_owned(),
        ));
        Recorder {
            addr,
            seen,
            arrived,
            stop,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// The targets of [`Recorder::seen`].
    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }
}
