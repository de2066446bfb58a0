//! `proxy`: the command line. Parses the arguments and the settings, then dispatches to the
//! subcommand in `proxy::commands` on a runtime from `common::cli`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// containerize's reverse proxy: TLS termination, HTTP→HTTPS redirect, forwarding to the app.
///
/// Settings (environment variables; each also accepted as NAME_FILE, read from that file).
/// Defaults in brackets; README.md has the full table.
///   PROXY_HTTP_LISTEN        plain-HTTP listener, HTTP/1.1, redirects only [0.0.0.0:80]
///   PROXY_HTTPS_LISTEN       HTTPS listener [0.0.0.0:443]
///   PROXY_HTTPS_PORT         port written into redirects; omitted when 443 [443]
///   PROXY_TLS_CERT           PEM chain, leaf first [/etc/proxy/tls/localhost.crt]
///   PROXY_TLS_KEY            PEM private key [/etc/proxy/tls/localhost.key]
///   PROXY_TLS_GENERATE       both files absent: create a development CA (ca.crt, ca.key
///                            beside them) and a leaf it signs; renew that leaf [true]
///   PROXY_TLS_NAMES          names of a generated leaf, and all the CA may sign for
///                            [localhost, 127.0.0.1, ::1]
///   PROXY_TLS_RENEW_INTERVAL how often the CA-issued leaf is checked for renewal [1h]
///   PROXY_HSTS               Strict-Transport-Security value; empty turns it off [max-age=63072000]
///   PROXY_UPSTREAM           host:port of the HTTPS app, re-resolved per connection [app:8000]
///   PROXY_UPSTREAM_CA        PEM CA to verify the upstream with; unset: not verified []
///   PROXY_UPSTREAM_TIMEOUT   wait for the upstream's answer, then 504 [60s]
///   PROXY_UPSTREAM_CONNECT_TIMEOUT  connect to one upstream address, then the next [5s]
///   PROXY_UPSTREAM_FAIL_TIMEOUT  skip an address whose connect failed this long [10s]
///   PROXY_UPSTREAM_KEEPALIVE idle pooled upstream connections kept [1024]
///   PROXY_UPSTREAM_HTTP2     auto: HTTP/2 to the upstream when it offers it, else HTTP/1.1;
///                            true: HTTP/2 only; false: HTTP/1.1 only [auto]
///   PROXY_UPSTREAM_H2_CONNECTIONS  HTTP/2 connections per upstream address [2]
///   PROXY_UPSTREAM_H2_MAX_REQUESTS  requests per upstream HTTP/2 connection [10000]
///   PROXY_UPSTREAM_H2_LIFETIME  age at which one is replaced [60s]
///   PROXY_WORKERS            event-loop threads, each with its own upstream pool; 0 = one per
///                            CPU (nginx `worker_processes auto`) [0]
///   PROXY_TRUSTED_PROXIES    CIDRs whose X-Forwarded-For is kept and appended to, and whose
///                            X-Request-Id is kept []
///   PROXY_UPGRADE_PROTOCOLS  Upgrade protocols tunnelled; others go as plain requests; never
///                            h2c [websocket]
///   PROXY_UNDERSCORES_IN_HEADERS  forward header names containing `_` (nginx
///                            underscores_in_headers) [false]
///   PROXY_ERROR_PAGE         minijinja HTML template for error answers, re-read when it
///                            changes (a bad edit keeps the old page) [built-in]
///   PROXY_INTERCEPT_ERRORS   replace upstream error bodies (>= 400) with the page [true]
///   PROXY_STATIC             PREFIX=DIR pairs served from folders, never forwarded (nginx
///                            alias), e.g. /static/=/srv/static,/media/=/srv/media []
///   PROXY_STATIC_CACHE_CONTROL  Cache-Control of static files [no-cache]
///   PROXY_COMPRESSION        codings in server preference, or off; br only as precompressed
///                            .br files [zstd,br,gzip]
///   PROXY_COMPRESSION_MIN_SIZE  smaller bodies are not compressed [1k]
///   PROXY_COMPRESSION_UPSTREAM  compress the app's answers too (BREACH) [false]
///   PROXY_LOG_DIR            folder for access.log and error.log [/var/log/proxy]
///   LOG_RETENTION            a new dated folder per start, `latest` symlink [true]
///   PROXY_ACCESS_LOG         write access.log; false is nginx's `access_log off` [true]
///   PROXY_ACCESS_LOG_FORMAT  combined (nginx) or json [combined]
///   PROXY_LOG                stdout log filter, e.g. info, debug [info]
///   PROXY_INSPECT_LISTEN     the request inspector's page, API and /metrics (plain HTTP;
///                            keep it on loopback); empty: off, nothing recorded []
///   PROXY_INSPECT_ENTRIES    exchanges the inspector keeps [1000]
///   PROXY_INSPECT_BODY_LIMIT bytes of each body kept; the rest is counted [1m]
///   PROXY_INSPECT_MEMORY     bytes all kept heads and bodies may take [64m]
///   PROXY_INSPECT_MASK       show Authorization/Cookie/Set-Cookie values as *** [true]
///   PROXY_HANDSHAKE_TIMEOUT  TLS handshake [10s]
///   PROXY_HEADER_TIMEOUT     receive a request's headers [60s]
///   PROXY_KEEPALIVE_TIMEOUT  connection without a request (PINGs do not count) [75s]
///   PROXY_KEEPALIVE_REQUESTS requests per connection, then closed gracefully [1000]
///   PROXY_KEEPALIVE_LIFETIME age of a connection, then closed gracefully [1h]
///   PROXY_BODY_TIMEOUT       longest gap while reading a request body, then 408 [60s]
///   PROXY_MAX_HEADER_SIZE    request header block [32k]
///   PROXY_MAX_URI_LENGTH     request target, then 414 [8192]
///   PROXY_MAX_BODY_SIZE      request body, then 413; 0 = unlimited [1m]
///   PROXY_MAX_CONNECTIONS    connections served at once per listener [10000]
///   PROXY_H2_MAX_STREAMS     concurrent HTTP/2 streams per connection [128]
///   PROXY_TUNNEL_IDLE_TIMEOUT  WebSocket tunnel silent both ways, then closed [60s]
///   PROXY_DRAIN_TIMEOUT      SIGTERM waits this long for in-flight requests and tunnels [10s]
///
/// Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the keypair and the error page;
/// SIGUSR1 reopens logs. `proxy check` validates all of the above without serving.
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate every setting and every file and folder they name (keypair, CA, error page,
    /// log folder), print the effective configuration (never secrets) and exit 0, or print
    /// each problem and exit 1 (nginx -t). In Docker: `docker compose run --rm proxy check`.
    Check,
    /// Exit 0 when the local HTTPS listener completes a TLS handshake (Docker HEALTHCHECK).
    Healthcheck,
    /// Print the certificate the proxy would serve (subject, SANs, validity, fingerprint, chain)
    /// and the development CA beside it (name constraints, expiry, renewal).
    Cert {
        #[command(subcommand)]
        action: Option<CertAction>,
    },
}

#[derive(Subcommand)]
enum CertAction {
    /// Print the commands that trust the development CA (ca.crt) on each OS, how to undo them,
    /// and its fingerprint. In Docker: `docker compose run --rm proxy cert trust`.
    Trust {
        /// How the commands name ca.crt [conf/tls/ca.crt for the image's default folder].
        #[arg(long)]
        path: Option<String>,
    },
    /// Write a new self-signed pair (localhost.crt, localhost.key) into a folder.
    Generate {
        /// Folder to write into (a running proxy watching it picks the pair up).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> std::process::ExitCode {
    common::cli::exit_code("proxy", run())
}

fn run() -> anyhow::Result<()> {
    let env = common::env::Env::process();
    // Parsed by each subcommand that needs it; `check` reports every problem, not the first.
    let config = || proxy::Config::from_env(&env);
    match Cli::parse().command {
        Some(Command::Check) => {
            let report = proxy::check(&env);
            print!("{}", report.text);
            anyhow::ensure!(report.ok(), "{} problem(s) found", report.problems);
        }
        Some(Command::Cert { action: None }) => print!("{}", proxy::cert(&config()?)?),
        Some(Command::Cert {
            action: Some(CertAction::Trust { path }),
        }) => print!("{}", proxy::cert_trust(&config()?, path.as_deref())?),
        Some(Command::Cert {
            action: Some(CertAction::Generate { out, force }),
        }) => {
            config()?;
            print!("{}", proxy::cert_generate(&out, force)?)
        }
        Some(Command::Healthcheck) => {
            let config = config()?;
            println!(
                "{}",
                common::cli::current_thread()?.block_on(proxy::healthcheck(&config))?
            )
        }
        // The main thread's runtime runs the signals, the certificate watcher and the first
        // worker's event loop; the proxy starts the other workers on threads of their own.
        None => common::cli::current_thread()?.block_on(proxy::serve(config()?))?,
    }
    Ok(())
}
