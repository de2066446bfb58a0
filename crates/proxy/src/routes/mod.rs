//! Routes by name and path (`PROXY_ROUTES`): `parse` turns the text into checked routes (scheme,
//! upstream, options), `table` matches a request's host and path to one. A leaf: it uses only
//! `config` (the upstream address type) and `common` (the size syntax).

mod parse;
mod table;

pub use parse::{HostPattern, MAX_ROUTES, Route, RoutesError, Scheme, Target, parse};
pub use table::{Matched, Table, under};

#[cfg(test)]
mod tests;
