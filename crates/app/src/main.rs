//! `app`: parse the configuration, set up logging, bind, serve until SIGTERM.

use std::time::Duration;

use clap::{Parser, Subcommand};

/// containerize's app: an HTTPS service answering a quote and the X-Forwarded-* headers it got.
///
/// Settings: environment variables, listed below; README.md has the full table.
#[derive(Parser)]
#[command(version, verbatim_doc_comment, after_help = common::setting::help(app::config::ALL))]
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
    common::logging::init(app::config::LOG.name(), &config.log).map_err(anyhow::Error::msg)?;
    let app = app::App::new(&config)?;
    let listener = common::server::bind(app::config::LISTEN.name(), config.listen).await?;
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
