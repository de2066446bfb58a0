//! HTTP/1.1 upgrades (WebSocket): the client's upgrade is kept while the request goes upstream;
//! on the upstream's 101 both connections are spliced into one tunnel.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::headers;

/// An upgrade the client asked for.
pub struct Upgrade {
    /// The `Upgrade` value, forwarded as is.
    pub protocol: HeaderValue,
    client: OnUpgrade,
}

impl Upgrade {
    /// The upgrade `req` asks for (HTTP/1.1, `Connection: upgrade` and an `Upgrade` value),
    /// taking hold of the client's side of it.
    pub fn from_request(req: &mut Request<Incoming>) -> Option<Self> {
        if req.version() != Version::HTTP_11 {
            return None;
        }
        let protocol = headers::upgrade_request(req.headers())?;
        Some(Upgrade {
            protocol,
            client: hyper::upgrade::on(req),
        })
    }

    /// The upstream agreed (101): splice the two connections in the background and return the
    /// answer head for the client.
    pub fn tunnel(self, mut resp: Response<Incoming>) -> Response<ProxyBody> {
        let upstream = hyper::upgrade::on(&mut resp);
        let client = self.client;
        tokio::spawn(async move {
            match tokio::try_join!(client, upstream) {
                Ok((client, upstream)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(client),
                        &mut TokioIo::new(upstream),
                    )
                    .await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
        let (mut parts, _) = resp.into_parts();
        headers::response_headers(&mut parts.headers, Some(&self.protocol));
        let empty = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed();
        Response::from_parts(parts, empty)
    }
}
