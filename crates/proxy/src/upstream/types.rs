//! What the upstream side attaches to an answer: the address it came from.

use std::net::SocketAddr;

/// Extension put on every upstream response: the address it came from.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAddr(pub SocketAddr);
