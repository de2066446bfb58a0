//! Tracing set-up shared by both binaries: a filter from a setting, compact lines on stdout.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber with `filter` (an `EnvFilter` directive such as `info` or
/// `proxy=debug,info`). Returns an error message naming `var` if the directive is invalid.
pub fn init(var: &str, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("{var}={filter:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(color())
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// Colour only on a terminal, and never with `NO_COLOR` set (`docker compose logs`, files).
pub fn color() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
