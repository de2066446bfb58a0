//! The proxy's TLS: the keypair store (`store`), the server configuration with the original
//! nginx's protocols and suites (`server_config`), the reload triggers other than SIGHUP
//! (`watch`: folder watch, daily expiry check), `proxy cert` (`tools`), and what they share:
//! the files and their errors (`files`), generating a self-signed pair (`generate`).

mod files;
mod generate;
mod server_config;
mod store;
mod tools;
mod watch;

pub use files::CertError;
pub use server_config::{server_config, shared_provider};
pub use store::CertStore;
pub use tools::{describe, generate_into, generate_into_with};

#[cfg(test)]
mod tests;
