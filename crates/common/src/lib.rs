//! Code both services share: environment/secret loading, TLS material, the connection loop,
//! shutdown signals and logging set-up.

pub mod cli;
pub mod client;
pub mod env;
pub mod logging;
pub mod server;
pub mod setting;
pub mod shutdown;
pub mod tls;

/// An error and its sources as one line, `a: b: c`, skipping a source whose text the message
/// before it already contains (our error messages usually embed their source).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}
