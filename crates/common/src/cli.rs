//! What both binaries' `main` share: the runtime a subcommand runs on, and the exit code with
//! the error (and its causes) printed as one line on stderr.

use std::error::Error;
use std::process::ExitCode;

use tokio::runtime::Runtime;

/// A single-threaded runtime with I/O and timers (the proxy's workers are threads of their own).
pub fn current_thread() -> std::io::Result<Runtime> {
    started(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    )
}

/// A runtime with one worker thread per CPU.
pub fn multi_thread() -> std::io::Result<Runtime> {
    started(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    )
}

fn started(runtime: std::io::Result<Runtime>) -> std::io::Result<Runtime> {
    runtime
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start the async runtime: {e}")))
}

/// Success, or `name: error: cause: cause` on stderr and a failure exit code.
pub fn exit_code<E>(name: &str, result: Result<(), E>) -> ExitCode
where
    E: AsRef<dyn Error + 'static>,
{
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {}", crate::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
