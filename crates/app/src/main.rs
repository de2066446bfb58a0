//! `app`: parse the configuration, set up logging, bind, serve until SIGTERM.

use std::time::Duration;

use clap::{Parser, Subcommand};

/// containerize's app: an HTTPS service answering a quote and the X-Forwarded-* headers it got.
///
/// Settings (environment variables; each also accepted as NAME_FILE, read from that file):
///   APP_LISTEN           address to listen on (default 0.0.0.0:8000); HTTPS only
///   APP_ENV              development (watch templates, serve edits) or production (default)
///   APP_TEMPLATES        template folder holding index.txt (default: the built-in template)
///   APP_TLS_CERT         PEM certificate chain (default: in-memory self-signed for app/localhost)
///   APP_TLS_KEY          PEM private key (set both or neither)
///   APP_LOG              log filter, e.g. info, debug, app=debug (default info)
///   APP_DRAIN_TIMEOUT    how long SIGTERM waits for in-flight requests (default 10s)
///   APP_RELOAD_DEBOUNCE  development: quiet time after a template change before reloading (default 50ms)
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 when https://127.0.0.1:<APP_LISTEN port>/healthz answers 200 (Docker HEALTHCHECK).
    Healthcheck,
}

fn main() -> std::process::ExitCode {
    common::cli::exit_code("app", run())
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = app::Config::from_env(&common::env::Env::process())?;
    let rt = common::cli::multi_thread()?;
    match cli.command {
        Some(Command::Healthcheck) => rt.block_on(healthcheck(config.listen.port())),
        None => rt.block_on(serve(config)),
    }
}

async fn healthcheck(port: u16) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let status = common::client::probe(addr, "/healthz", Duration::from_secs(3)).await?;
    anyhow::ensure!(status == 200, "https://{addr}/healthz answered {status}");
    Ok(())
}

async fn serve(config: app::Config) -> anyhow::Result<()> {
    common::logging::init("APP_LOG", &config.log).map_err(anyhow::Error::msg)?;
    let app = app::App::new(&config)?;
    let listener = common::server::bind("APP_LISTEN", config.listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        mode = ?config.mode,
        templates = %config.templates.as_ref().map_or("(built-in)".into(), |p| p.display().to_string()),
        fingerprint = %app.fingerprint,
        "app listening (HTTPS)"
    );
    app.run(listener, common::shutdown::terminate()).await;
    tracing::info!("stopped");
    Ok(())
}
