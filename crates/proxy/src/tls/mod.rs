//! The proxy's TLS: the keypair store (`store`), the server configuration with the original
//! nginx's protocols and suites (`server_config`), the reload triggers other than SIGHUP
//! (`watch`: folder watch, daily expiry check), the development CA (`ca`), the proxy's own leaf
//! it issues (`leaf`: is it ours, is it due, first start) and its renewal (`renew`),
//! `proxy cert` (`command`) and `proxy cert trust` (`trust`), and what they share: the files and
//! their errors (`files`), atomic writes and the self-signed pair of `proxy cert generate`
//! (`generate`).

mod ca;
mod command;
mod files;
mod generate;
mod leaf;
mod renew;
mod server_config;
mod store;
mod trust;
mod watch;

pub use ca::{CA_DAYS, LEAF_DAYS, LEAF_ORG};
pub use command::{check_ca, describe, generate_into, generate_into_with};
pub use files::CertError;
pub use server_config::{server_config, shared_provider};
pub use store::CertStore;
pub use trust::trust;

#[cfg(test)]
mod ca_tests;
#[cfg(test)]
mod tests;
