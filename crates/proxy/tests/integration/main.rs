//! The proxy's integration tests, one binary (the support code is compiled once): the real
//! proxy in-process on 127.0.0.1:0 (or the real binary as a child), real TLS, real clients, the
//! real app or test upstreams behind it. `cargo test -p proxy --test integration <module>::`
//! runs one area.

mod check;
mod compression;
mod dev_ca;
mod error_page_live;
mod error_pages;
mod faults;
mod forwarding;
mod hardening_h2;
mod hardening_hygiene;
mod hardening_nginx;
mod hardening_request_timeouts;
mod hardening_reuse;
mod hardening_sizes;
mod hardening_stalls;
mod hardening_timeouts;
mod hardening_uploads;
mod hardening_upstream_reads;
mod idle_conns;
mod inspector;
mod inspector_memory;
mod keepalive_limits;
mod keypair;
mod logs;
mod logs_e2e;
mod on_demand;
mod reset_flood;
mod rewrite_props;
mod routes;
mod routes_live;
mod routes_websocket;
mod settings_docs;
mod static_edges;
mod static_files;
mod static_stall;
mod support;
mod tunnels;
mod upstream_h2;
mod upstream_health;
mod upstream_spread;
mod workers;
