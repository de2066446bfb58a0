//! What the connection loop needs of a service and its body, said once.

use hyper::body::Incoming;
use hyper::service::Service;
use hyper::{Request, Response};

/// Errors a service or a body may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A per-connection hyper service the loop can drive: what hyper's servers need of it and
/// of its body, said once (every service `service_fn` makes from an async handler is one).
pub trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Send
    + 'static
{
    /// The response body.
    type Body: hyper::body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body<Data: Send, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}
