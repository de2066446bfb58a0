//! What every part of the upstream side passes around: the request body, the error type inside
//! bodies, and the address an answer came from.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// Extension put on every upstream response: the address it came from.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAddr(pub SocketAddr);
