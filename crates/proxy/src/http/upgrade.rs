//! HTTP/1.1 upgrades (WebSocket): only the protocols `PROXY_UPGRADE_PROTOCOLS` lists are offered
//! upstream (never `h2c`; any other upgrade goes as a plain request, without it); on the
//! upstream's 101 both connections are spliced into one tunnel that lives under the client
//! connection's [`Lease`] (its connection slot, the drain), closes after
//! `PROXY_TUNNEL_IDLE_TIMEOUT` without traffic either way, and ends with a clean close (TLS
//! close_notify) when it is closed for idleness or at the drain timeout. With the inspector on, a
//! WebSocket tunnel's frames are read as they pass (never held back).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::server::{Activity, Lease, Tracked};
use http::{HeaderMap, HeaderValue, Request, Response, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::error::Failure;
use super::headers;
use crate::body::ProxyBody;
use crate::config::UpgradeProtocols;
use crate::inspect::{FrameReader, Frames};

/// How long closing a tunnel (close_notify both ways) may take.
const CLOSE_WITHIN: Duration = Duration::from_millis(500);

/// An upgrade the client asked for, to a protocol that may be tunnelled.
pub struct Upgrade {
    /// The protocols offered upstream: those of the client's `Upgrade` that are allowed.
    pub protocol: HeaderValue,
    client: OnUpgrade,
    /// The client connection's share, held by the tunnel.
    lease: Option<Lease>,
    /// The inspector's record of the tunnel's WebSocket frames, when it is on.
    pub frames: Option<Arc<Frames>>,
}

impl Upgrade {
    /// The upgrade `req` asks for (HTTP/1.1, `Connection: upgrade` and an `Upgrade` naming an
    /// allowed protocol), taking hold of the client's side of it. `None`: the request goes as a
    /// plain one (its `Upgrade` is hop-by-hop and removed).
    pub fn from_request(
        req: &mut Request<Incoming>,
        allowed: &UpgradeProtocols,
        lease: Option<Lease>,
    ) -> Option<Self> {
        if req.version() != Version::HTTP_11 {
            return None;
        }
        headers::upgrade_request(req.headers())?;
        let protocol = offered(req.headers(), allowed)?;
        Some(Upgrade {
            protocol,
            client: hyper::upgrade::on(req),
            lease,
            frames: None,
        })
    }

    /// The upstream agreed (101) to one of the offered protocols: splice the two connections
    /// (on the client connection's lease) and return the answer head for the client.
    pub fn tunnel(
        self,
        mut resp: Response<Incoming>,
        idle_timeout: Duration,
    ) -> Result<Response<ProxyBody>, Failure> {
        let chosen = match resp.headers().get(header::UPGRADE) {
            None => self.protocol.clone(),
            Some(chosen) if agreed(chosen, &self.protocol) => chosen.clone(),
            Some(_) => return Err(Failure::UnexpectedUpgrade),
        };
        let upstream = hyper::upgrade::on(&mut resp);
        let client = self.client;
        let websocket = chosen.as_bytes().eq_ignore_ascii_case(b"websocket");
        let frames = self.frames.filter(|_| websocket);
        let aborting = self
            .lease
            .as_ref()
            .map_or_else(CancellationToken::new, Lease::aborting);
        let task = async move {
            match tokio::try_join!(client, upstream) {
                Ok((client, upstream)) => {
                    splice(client, upstream, idle_timeout, aborting, frames).await
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        };
        match self.lease {
            Some(lease) => lease.spawn(task),
            None => drop(tokio::spawn(task)),
        }
        let (mut parts, _) = resp.into_parts();
        headers::response_headers(&mut parts.headers, Some(&chosen));
        let empty = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed();
        Ok(Response::from_parts(parts, empty))
    }
}

/// The allowed protocols among every `Upgrade` field of the request, as one value.
fn offered(headers: &HeaderMap, allowed: &UpgradeProtocols) -> Option<HeaderValue> {
    let tokens: Vec<&str> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| allowed.allows(t))
        .collect();
    if tokens.is_empty() {
        return None;
    }
    HeaderValue::from_str(&tokens.join(", ")).ok()
}

/// The upstream switched to a protocol that was offered.
fn agreed(chosen: &HeaderValue, offered: &HeaderValue) -> bool {
    let (Ok(chosen), Ok(offered)) = (chosen.to_str(), offered.to_str()) else {
        return false;
    };
    chosen.split(',').map(str::trim).all(|c| {
        offered
            .split(',')
            .map(str::trim)
            .any(|o| o.eq_ignore_ascii_case(c))
    })
}

/// Why a tunnel ended.
#[derive(Debug)]
enum End {
    /// One side closed (the other was told) or failed.
    Done,
    /// No byte either way for the idle timeout.
    Idle,
    /// The drain timeout is over.
    Drained,
}

/// Copy both ways until one side ends, the tunnel is idle for `idle_timeout`, or `aborting`;
/// in the last two cases close both sides cleanly (TLS close_notify to the client).
async fn splice(
    client: Upgraded,
    upstream: Upgraded,
    idle_timeout: Duration,
    aborting: CancellationToken,
    frames: Option<Arc<Frames>>,
) {
    let activity = Activity::default();
    let mut client = Tracked::new(TokioIo::new(client), activity.clone());
    let mut upstream = Tracked::new(TokioIo::new(upstream), activity.clone());
    if let Some(frames) = frames {
        client = client.observed(Box::new(FrameReader::new(frames.clone(), true)));
        upstream = upstream.observed(Box::new(FrameReader::new(frames, false)));
    }
    let tick = (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    let mut check = tokio::time::interval(tick);
    let end = {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        loop {
            tokio::select! {
                r = &mut copy => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                    break End::Done;
                }
                _ = aborting.cancelled() => break End::Drained,
                _ = check.tick() => if activity.idle_for() >= idle_timeout {
                    break End::Idle;
                },
            }
        }
    };
    tracing::debug!(?end, "tunnel closed");
    if !matches!(end, End::Done) {
        let _ = tokio::time::timeout(CLOSE_WITHIN, async {
            let _ = tokio::join!(client.shutdown(), upstream.shutdown());
        })
        .await;
    }
}
