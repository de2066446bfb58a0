//! Routes by name and path at run time: `table` matches a request's host and path to one route
//! (exact host > `*.name` > `*`, longest prefix); `live` holds every worker's table with its
//! upstream clients and swaps them on a reload (`watch`: the routes file's folder). The routes
//! themselves are a setting (`config::Routes`).

mod live;
mod table;
mod watch;

pub use live::{LiveRoutes, ReloadError, WorkerTable};

#[cfg(test)]
mod tests;
