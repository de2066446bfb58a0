//! Why a request got no upstream answer: one enum, mapped to the status the error page shows and
//! logged (when it is worth a line in error.log) in one place.

use crate::config::settings::UPSTREAM_TIMEOUT;
use std::time::Duration;

use http::StatusCode;

use crate::body::BoxError;

/// `Retry-After` on the 503 answered while the upstream name does not resolve, in seconds.
pub const RETRY_AFTER_UNRESOLVED: &str = "5";

/// Everything that turns a request into one of the proxy's own error answers.
#[derive(Debug)]
pub enum Failure {
    /// Refused before anything was forwarded (malformed, ambiguous or oversized): the status
    /// says why (400, 413, 414, 431).
    Refused(StatusCode),
    /// The request body grew past `PROXY_MAX_BODY_SIZE` while streaming.
    BodyTooLarge,
    /// The request body paused longer than `PROXY_BODY_TIMEOUT`.
    BodyTooSlow,
    /// No answer head within `PROXY_UPSTREAM_TIMEOUT`.
    Timeout(Duration),
    /// The upstream could not be reached, or broke the exchange.
    Upstream(BoxError),
    /// The upstream name gave no address (not deployed yet, or gone): 503 with `Retry-After`.
    Unresolved(BoxError),
    /// The upstream answered 101 to a request that asked for no upgrade.
    UnexpectedUpgrade,
    /// No route serves the request's host (and path): 404. The hosts that are served.
    NoRoute(Vec<String>),
    /// As `NoRoute`, and no route serves the connection's TLS server name (SNI) either: 421.
    Misdirected(Vec<String>),
}

impl Failure {
    /// The status answered to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::Refused(status) => *status,
            Failure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Failure::Upstream(_) | Failure::UnexpectedUpgrade => StatusCode::BAD_GATEWAY,
            Failure::Unresolved(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::NoRoute(_) => StatusCode::NOT_FOUND,
            Failure::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    /// Write the failure to the log, once: upstream trouble is a warning (error.log), a
    /// client's own mistake is not.
    pub fn log(&self, request_id: &str) {
        match self {
            Failure::Timeout(timeout) => {
                tracing::warn!(request_id = %request_id, timeout = ?timeout, "upstream timed out ({UPSTREAM_TIMEOUT})")
            }
            Failure::Upstream(e) | Failure::Unresolved(e) => {
                tracing::warn!(request_id = %request_id, error = %common::error_chain(e.as_ref()), "upstream request failed")
            }
            Failure::Refused(_)
            | Failure::BodyTooLarge
            | Failure::BodyTooSlow
            | Failure::UnexpectedUpgrade
            | Failure::NoRoute(_)
            | Failure::Misdirected(_) => {}
        }
    }
}

impl From<StatusCode> for Failure {
    fn from(status: StatusCode) -> Self {
        Failure::Refused(status)
    }
}
