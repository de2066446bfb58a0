//! `proxy`: the command line. Parses the arguments and the settings, then dispatches to the
//! subcommand in `proxy::commands` on a runtime from `common::cli`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// containerize's reverse proxy: TLS termination, HTTP→HTTPS redirect, forwarding to the app.
///
/// Settings: environment variables, listed below; README.md has the full tables.
///
/// Signals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the keypair and the error page;
/// SIGUSR1 reopens logs. `proxy check` validates all of the above without serving.
#[derive(Parser)]
#[command(version, verbatim_doc_comment, after_help = common::setting::help(proxy::settings::ALL))]
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
    /// Make PROXY_LOG_DIR and the keypair's folder writable for the user the proxy will run as
    /// (their group becomes GID and gains rwx; the owner stays), then exit. Run as root with
    /// CAP_CHOWN and CAP_FOWNER only: the compose file's one-shot `init` service.
    PrepareDirs {
        /// The proxy's user, e.g. 1000:1000.
        #[arg(long = "for", value_name = "UID:GID")]
        run_as: proxy::RunAs,
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
        Some(Command::PrepareDirs { run_as }) => {
            print!("{}", proxy::prepare_dirs(&config()?, run_as)?)
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
