//! containerize's reverse proxy: nginx's job (TLS termination, 80→443 redirect, forwarding with
//! X-Forwarded-* headers, a custom error page, dated logs) as a library the binary and the tests
//! drive.
//!
//! # Layout
//!
//! ```text
//! main.rs       CLI dispatch only
//! accept.rs     one element of an Accept-style list and its q-value: a leaf
//! body.rs       the one body type (ProxyBody) and its error (BoxError): a leaf
//! commands.rs   what each subcommand does: serve, healthcheck, cert, cert trust, cert generate,
//!               prepare-dirs
//! prepare.rs    `prepare-dirs`: the folders the proxy writes made writable for its uid/gid (the
//!               compose file's one-shot `init` service, before the first start)
//! check.rs      `proxy check`: every setting and every file it names, validated and printed
//! server.rs     Proxy: the workers, the site they serve, the two listeners
//! signals.rs    TERM/INT → shutdown, HUP → keypair and error page reload, USR1 → log reopen
//!               (the only handlers)
//! error.rs      ProxyError: why the proxy could not start
//! config/       every setting: one typed Config, one FromStr per setting, the defaults (a leaf)
//! http/         a request's trip: the two services, hygiene (Host, path normalisation),
//!               header rewriting, body guards, upgrade tunnels, the one failure type and the
//!               error pages it becomes
//! upstream/     the way to the app: dial (resolve, rotate, connect, skip what failed), the
//!               HTTP/1.1 pool, the HTTP/2 multiplexer and its connection pool, what may be sent
//!               again (retry), abandoned exchanges kept until their head (detach), the choice
//! tls/          the keypair store, the server configuration, its reload triggers, the development
//!               CA and the renewal of its leaf, the leaves issued on demand for other names
//!               under its constraints (`ondemand/`), `proxy cert` and `proxy cert trust`
//! logs/         the log folder, the queue, the writer thread, access lines, the error.log layer
//!               and its per call site throttle
//! routes/       `PROXY_ROUTES` at run time: the table matching a request's host and path to its
//!               route, every worker's table with its upstream clients, swapped whole on a reload
//!               that keeps the clients of unchanged upstreams (the syntax: `config/routes.rs`)
//! watch.rs      the folder watch behind the live reloads (keypair, error page, routes; a leaf)
//! files/        static files (`PROXY_STATIC`): the path resolved inside its root, ETag and
//!               conditionals around tower-http's `ServeFile`; small files sent from memory
//! compress/     on-the-fly compression (`PROXY_COMPRESSION`): negotiation, eligibility, the
//!               streaming encoder body
//! inspect/      the request inspector (`PROXY_INSPECT_LISTEN`): capture (the body tee), the
//!               bounded ring, its page, JSON API, replay, HAR/curl export and `/metrics`
//! ```
//!
//! Imports point one way: `commands` → `server` → `http` → `routes` → `upstream`; `http` →
//! `files` → `compress`; `server` and `http` → `inspect` → `tls`; everything may use
//! `config`, which uses nothing of the crate; inside `logs`, `entry` and `queue` are the leaves.
//! Modules are private: what `main.rs` and the tests need is re-exported below.

mod accept;
mod body;
mod check;
mod commands;
mod compress;
mod config;
mod error;
mod files;
mod http;
mod inspect;
mod logs;
mod prepare;
mod routes;
mod server;
mod signals;
mod tls;
mod upstream;
mod watch;

pub use check::{CheckReport, check};
pub use commands::{cert, cert_generate, cert_trust, healthcheck, serve};
pub use config::{
    Coding, Compression, Config, H2Pool, HostPattern, Inspect, Limits, LogConfig, LogFormat,
    MAX_ROUTES, Route, Routes, RoutesError, Scheme, StaticFiles, StaticRoot, StaticRootProblem,
    Target, TlsFiles, TlsName, TlsNames, UpgradeProtocols, Upstream, UpstreamConfig, UpstreamHttp2,
    defaults, parse as parse_routes, settings,
};
pub use error::ProxyError;
pub use http::headers;
pub use http::{DEFAULT_TEMPLATE, ErrorPageError, ErrorPages, explanation};
pub use logs::{AccessEntry, AccessLog, LogDirError, Logs, format_combined, format_json};
pub use prepare::{PrepareError, RunAs, prepare_dirs};
pub use routes::{LiveRoutes, ReloadError};
pub use server::Proxy;
pub use signals::Signals;
pub use tls::{
    CA_DAYS, CertError, CertStore, LEAF_DAYS, LEAF_ORG, describe, generate_into,
    generate_into_with, trust,
};
pub use upstream::{Lookup, SystemLookup};
