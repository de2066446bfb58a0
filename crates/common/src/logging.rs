//! Tracing set-up shared by both binaries: a filter from a setting, compact lines on stdout.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Parse a log filter: a default level and/or `target=level` pairs, comma-separated, such as
/// `info` or `info,proxy=debug` (`Targets` syntax: `EnvFilter`'s without span and field
/// filters, whose regex engine would add ~0.5 MB to each image). The error names `var`.
pub fn filter(var: &str, filter: &str) -> Result<Targets, String> {
    filter
        .parse::<Targets>()
        .map_err(|e| format!("{var}={filter:?}: {e}"))
}

/// Install the global subscriber with `filter` (see [`filter`]).
pub fn init(var: &str, directives: &str) -> Result<(), String> {
    let targets = filter(var, directives)?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(color()),
        )
        .with(targets)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// Colour only on a terminal, and never with `NO_COLOR` set (`docker compose logs`, files).
pub fn color() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
