//! Code both services share: environment/secret loading, TLS material, the connection loop,
//! shutdown signals and logging set-up.

pub mod client;
pub mod env;
pub mod logging;
pub mod server;
pub mod shutdown;
pub mod tls;
