//! Which failed upstream requests may be sent again, and the copy they are sent from: only a
//! request without a body (nothing was streamed that could not be streamed again), and only
//! when the upstream did not process it (refused: GOAWAY above its last stream id,
//! REFUSED_STREAM) or its method is idempotent (RFC 9110 §9.2.2; nginx's `proxy_next_upstream`
//! never resends a POST, LOCK or PATCH once sent).

use bytes::Bytes;
use http::{Method, Request};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};

use crate::body::{BoxError, ProxyBody};

/// The head of a bodiless request, kept to send it again.
pub type Copy = Request<()>;

/// A copy of `req` when it has no body.
pub fn copy(req: &Request<ProxyBody>) -> Option<Copy> {
    if !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// The request again, from its copy.
pub fn rebuild(copy: &Copy) -> Request<ProxyBody> {
    let mut req = Request::new(Empty::<Bytes>::new().map_err(BoxError::from).boxed());
    *req.method_mut() = copy.method().clone();
    *req.uri_mut() = copy.uri().clone();
    *req.version_mut() = copy.version();
    *req.headers_mut() = copy.headers().clone();
    req
}

/// Whether a request that failed with `error` before its answer head may be sent again.
pub fn may_resend(copy: &Copy, error: &hyper::Error) -> bool {
    idempotent(copy.method()) || refused(error)
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether `error` broke the whole connection (GOAWAY, I/O, the connection task gone), rather
/// than one stream (an RST_STREAM, a request body that failed its limits): only then is the
/// connection left for a new one, so that a client cannot make the proxy re-dial at will.
pub fn connection_failed(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return !h2.is_reset();
        }
        source = e.source();
    }
    error.is_closed() || error.is_canceled()
}

/// The upstream said it did not process the stream: a GOAWAY whose last stream id is below it
/// (h2 fails exactly those streams with the GOAWAY), or REFUSED_STREAM.
fn refused(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return (h2.is_go_away() && h2.is_remote())
                || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = e.source();
    }
    false
}
