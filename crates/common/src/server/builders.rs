//! hyper's HTTP/1.1 and HTTP/2 server builders, configured once from the [`Limits`].

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;

use super::limits::Limits;
use super::send_watch::StreamExec;

/// hyper's servers with the limits applied: HTTP/2 when the TLS handshake chose it (ALPN),
/// HTTP/1.1 otherwise (cleartext, `http/1.1`, or no ALPN: HTTP/2 over TLS needs ALPN, RFC 9113
/// §3.2, and nginx does not sniff either).
pub(super) struct Builders {
    pub(super) h1: http1::Builder,
    pub(super) h2: http2::Builder<StreamExec>,
}

impl Builders {
    pub(super) fn new(limits: &Limits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.read_buffer())
            .keep_alive(true);
        // Each HTTP/2 stream's task runs under its send timeout (`send_watch`).
        let mut h2 = http2::Builder::new(StreamExec {
            timeout: limits.send_timeout,
        });
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.h2_max_header_list_size)
            // Rapid-reset (CVE-2023-44487) and error-reset floods: bounded.
            .max_pending_accept_reset_streams(Some(20))
            .max_local_error_reset_streams(Some(1024));
        Builders { h1, h2 }
    }
}
