//! The one body type every part of the proxy passes around (a request on its way upstream, an
//! answer on its way to the client, a static file, an error page) and the error inside it, shared
//! with `common::server`. A leaf.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

pub use common::server::BoxError;

/// A boxed body of [`Bytes`] whose errors are [`BoxError`]s.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
