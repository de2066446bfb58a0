//! Replay: a kept request sent again (optionally with an edited method, path, headers or body)
//! through the proxy's own HTTPS listener, so it takes the real path (checks, rewriting, the
//! route, the capture). The inspector knows the replay by the loopback port it comes from and
//! links the new entry to the original.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use super::Inspector;
use super::store::Entry;
use super::view::MASK;
use crate::config::settings::INSPECT_MEMORY;

/// How long a replay may take, answer included.
const REPLAY_WITHIN: Duration = Duration::from_secs(60);
/// How long the new entry may take to be kept after the answer was read.
const KEPT_WITHIN: Duration = Duration::from_secs(5);
/// Fields never copied into a replay (the connection's own, or recomputed).
const NOT_REPLAYED: [&str; 6] = [
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
];

/// What may be changed before sending again; `None`: as captured.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    pub method: Option<String>,
    pub path: Option<String>,
    /// Replaces every field; a value of `***` stands for the captured (masked) value.
    pub headers: Option<Vec<(String, String)>>,
    pub body: Option<String>,
}

/// Why a replay did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("bad edit: {0}")]
    Edit(String),
    #[error(
        "the original body was kept in part ({kept} of {total} bytes); replay it with an edited body"
    )]
    PartialBody { kept: usize, total: u64 },
    #[error("cannot reach the proxy's HTTPS listener {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the replay failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the replay took longer than {0:?}")]
    Timeout(Duration),
    #[error("the replay was answered but not kept ({INSPECT_MEMORY} full?)")]
    NotKept,
}

/// Send `orig` again (edited) through the HTTPS listener at `https`; the new entry's id.
pub async fn replay(
    inspector: &Arc<Inspector>,
    https: SocketAddr,
    orig: &Entry,
    edit: Edit,
) -> Result<u64, ReplayError> {
    let request = build(orig, edit)?;
    let addr = loopback(https);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ReplayError::Connect { addr, source })?;
    let local = tcp
        .local_addr()
        .map_err(|source| ReplayError::Connect { addr, source })?;
    let mut news = inspector.store.subscribe();
    let _pending = inspector.expect_replay(local, orig.id);
    let sent = tokio::time::timeout(REPLAY_WITHIN, async {
        let config = common::client::insecure_client_config(&[b"http/1.1"])?;
        let name = ServerName::try_from(
            orig.host
                .split(':')
                .next()
                .unwrap_or("localhost")
                .to_owned(),
        )
        .unwrap_or_else(|_| ServerName::IpAddress(addr.ip().into()));
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|source| ReplayError::Connect { addr, source })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let resp = sender.send_request(request).await?;
        // Read the answer to its end (the capture keeps it); nothing is kept here.
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            frame?;
        }
        Ok::<_, ReplayError>(())
    })
    .await;
    sent.map_err(|_| ReplayError::Timeout(REPLAY_WITHIN))??;
    tokio::time::timeout(KEPT_WITHIN, async {
        loop {
            match news.recv().await {
                Ok(id) => {
                    if inspector.store.get(id).is_some_and(|e| e.client == local) {
                        return Ok(id);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return Err(ReplayError::NotKept),
            }
        }
    })
    .await
    .map_err(|_| ReplayError::NotKept)?
}

/// The request to send: the captured one with the edits applied.
fn build(orig: &Entry, edit: Edit) -> Result<Request<Full<Bytes>>, ReplayError> {
    let bad = |e: &dyn std::fmt::Display| ReplayError::Edit(e.to_string());
    let method = match edit.method.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => Method::from_bytes(m.as_bytes()).map_err(|e| bad(&e))?,
        _ => orig.method.clone(),
    };
    let path = edit.path.unwrap_or_else(|| orig.target.clone());
    if !path.starts_with('/') {
        return Err(ReplayError::Edit(format!(
            "{path}: the path must start with /"
        )));
    }
    let body = match edit.body {
        Some(text) => Bytes::from(text),
        None => orig.request_body.with(|b| match b {
            None => Ok(Bytes::new()),
            Some(b) if b.whole() => Ok(Bytes::copy_from_slice(&b.kept)),
            Some(b) => Err(ReplayError::PartialBody {
                kept: b.kept.len(),
                total: b.total,
            }),
        })?,
    };
    let mut req = Request::builder()
        .method(method)
        .uri(&path)
        .body(Full::new(body))
        .map_err(|e| bad(&e))?;
    let headers = req.headers_mut();
    let host = HeaderValue::from_str(&orig.host).map_err(|e| bad(&e))?;
    headers.insert(http::header::HOST, host);
    match edit.headers {
        None => {
            for (name, value) in orig.request_headers.iter() {
                if NOT_REPLAYED.contains(&name) {
                    continue;
                }
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
                headers.append(name, HeaderValue::from_bytes(value).map_err(|e| bad(&e))?);
            }
        }
        Some(edited) => {
            for (name, value) in edited {
                let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| bad(&e))?;
                if NOT_REPLAYED.contains(&name.as_str()) {
                    continue;
                }
                let captured = orig
                    .request_headers
                    .iter()
                    .find(|(n, _)| *n == name.as_str());
                let value = match captured {
                    Some((_, captured)) if value == MASK => {
                        HeaderValue::from_bytes(captured).map_err(|e| bad(&e))?
                    }
                    _ => HeaderValue::from_str(&value).map_err(|e| bad(&e))?,
                };
                headers.append(name, value);
            }
        }
    }
    Ok(req)
}

/// The listener's address as reachable from here (a wildcard becomes loopback).
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}
