//! containerize's reverse proxy: nginx's job (TLS termination, 80→443 redirect, forwarding with
//! X-Forwarded-* headers, a custom error page, dated logs) as a library the binary and tests drive.

pub mod access_log;
pub mod certs;
pub mod config;
pub mod error_log;
pub mod error_page;
pub mod log_dir;
