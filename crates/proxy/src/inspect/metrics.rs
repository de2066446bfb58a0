//! `/metrics`: counters the capture feeds (requests by route and status class, a latency
//! histogram per route, bytes in and out, exchanges in flight) and the Prometheus text format
//! they are written in, with the gauges read at scrape time (connections, upstream addresses,
//! certificate expiry, reloads) passed in by the listener.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::settings::{INSPECT_MEMORY, UPSTREAM_FAIL_TIMEOUT};

/// Latency histogram bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Route labels kept apart; further routes are counted under `other`.
const MAX_ROUTES: usize = 64;

/// One route's counters.
#[derive(Default)]
struct RouteStats {
    /// By status class: index 1–5 (`1xx`–`5xx`), 0 for anything else.
    classes: [AtomicU64; 6],
    /// Cumulative counts are computed when written; these are per bucket (+Inf last).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// What the capture counts.
pub struct Metrics {
    /// The routes known at start (the upstream, `static`), found without a lock.
    known: Vec<(Arc<str>, Arc<RouteStats>)>,
    routes: Mutex<Vec<(Arc<str>, Arc<RouteStats>)>>,
    in_flight: AtomicI64,
}

/// Read at scrape time, outside the capture.
pub struct Gauges {
    /// Open client connections per listener: (`http` or `https`, count).
    pub connections: Vec<(&'static str, usize)>,
    /// The upstream's addresses as resolved now, and whether each is up (not skipped after a
    /// failed connect); `None`: the name did not resolve.
    pub upstreams: Option<Vec<(SocketAddr, bool)>>,
    pub route: Arc<str>,
    /// The served certificate's `notAfter`, Unix seconds.
    pub cert_expiry: i64,
    /// Keypair reloads that swapped in a new pair.
    pub cert_reloads: u64,
    /// The latest keypair reload was refused.
    pub cert_reload_failing: bool,
    pub entries: usize,
    pub memory_used: u64,
    pub memory_cap: u64,
}

impl Metrics {
    /// Counters for `known` routes, registered up front.
    pub fn new(known: &[Arc<str>]) -> Self {
        let known: Vec<_> = known
            .iter()
            .map(|r| (r.clone(), Arc::new(RouteStats::default())))
            .collect();
        Metrics {
            routes: Mutex::new(known.clone()),
            known,
            in_flight: AtomicI64::new(0),
        }
    }

    fn route(&self, route: &Arc<str>) -> Arc<RouteStats> {
        if let Some((_, s)) = self.known.iter().find(|(r, _)| Arc::ptr_eq(r, route)) {
            return s.clone();
        }
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, s)) = routes.iter().find(|(r, _)| r == route) {
            return s.clone();
        }
        let name = if routes.len() < MAX_ROUTES {
            route.clone()
        } else {
            Arc::from("other")
        };
        let stats = Arc::new(RouteStats::default());
        routes.push((name, stats.clone()));
        stats
    }

    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer's body ended (or was abandoned).
    pub fn finished(&self, route: &Arc<str>, status: u16, took: Duration, bytes_in: u64, out: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let s = self.route(route);
        let class = usize::from(status / 100);
        s.classes[if (1..=5).contains(&class) { class } else { 0 }].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        s.sum_micros.fetch_add(micros, Ordering::Relaxed);
        s.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        s.bytes_out.fetch_add(out, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, g: &Gauges) -> String {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        head(
            o,
            "proxy_requests_total",
            "counter",
            "Requests answered, by route and status class.",
        );
        for (route, s) in &routes {
            for (i, class) in ["other", "1xx", "2xx", "3xx", "4xx", "5xx"]
                .iter()
                .enumerate()
            {
                let n = s.classes[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    o,
                    "proxy_requests_total{{route=\"{}\",code=\"{class}\"}} {n}",
                    esc(route)
                );
            }
        }
        head(
            o,
            "proxy_request_duration_seconds",
            "histogram",
            "Arrival to the answer's last byte, by route.",
        );
        for (route, s) in &routes {
            let r = esc(route);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    o,
                    "proxy_request_duration_seconds_bucket{{route=\"{r}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += s.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                o,
                "proxy_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                o,
                "proxy_request_duration_seconds_sum{{route=\"{r}\"}} {sum}"
            );
            let _ = writeln!(
                o,
                "proxy_request_duration_seconds_count{{route=\"{r}\"}} {cumulative}"
            );
        }
        head(
            o,
            "proxy_received_bytes_total",
            "counter",
            "Request body bytes received from clients, by route.",
        );
        for (route, s) in &routes {
            let _ = writeln!(
                o,
                "proxy_received_bytes_total{{route=\"{}\"}} {}",
                esc(route),
                s.bytes_in.load(Ordering::Relaxed)
            );
        }
        head(
            o,
            "proxy_sent_bytes_total",
            "counter",
            "Answer body bytes sent to clients, by route.",
        );
        for (route, s) in &routes {
            let _ = writeln!(
                o,
                "proxy_sent_bytes_total{{route=\"{}\"}} {}",
                esc(route),
                s.bytes_out.load(Ordering::Relaxed)
            );
        }
        head(
            o,
            "proxy_requests_in_flight",
            "gauge",
            "Answers being sent now.",
        );
        let _ = writeln!(
            o,
            "proxy_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed).max(0)
        );
        gauges(o, g);
        out
    }
}

/// The scrape-time gauges.
fn gauges(o: &mut String, g: &Gauges) {
    head(
        o,
        "proxy_client_connections",
        "gauge",
        "Open client connections, by listener.",
    );
    for (listener, n) in &g.connections {
        let _ = writeln!(o, "proxy_client_connections{{listener=\"{listener}\"}} {n}");
    }
    head(
        o,
        "proxy_upstream_up",
        "gauge",
        &format!(
            "1: the address is used; 0: skipped after a failed connect ({UPSTREAM_FAIL_TIMEOUT})."
        ),
    );
    for (addr, up) in g.upstreams.iter().flatten() {
        let _ = writeln!(
            o,
            "proxy_upstream_up{{route=\"{}\",address=\"{addr}\"}} {}",
            esc(&g.route),
            u8::from(*up)
        );
    }
    head(
        o,
        "proxy_upstream_resolved",
        "gauge",
        "1: the upstream's name resolved at this scrape.",
    );
    let _ = writeln!(
        o,
        "proxy_upstream_resolved{{route=\"{}\"}} {}",
        esc(&g.route),
        u8::from(g.upstreams.is_some())
    );
    head(
        o,
        "proxy_certificate_expiry_timestamp_seconds",
        "gauge",
        "notAfter of the served certificate.",
    );
    let _ = writeln!(
        o,
        "proxy_certificate_expiry_timestamp_seconds {}",
        g.cert_expiry
    );
    head(
        o,
        "proxy_certificate_reloads_total",
        "counter",
        "Keypair reloads that swapped in a new pair.",
    );
    let _ = writeln!(o, "proxy_certificate_reloads_total {}", g.cert_reloads);
    head(
        o,
        "proxy_certificate_reload_failing",
        "gauge",
        "1: the latest keypair reload was refused (the old pair serves).",
    );
    let _ = writeln!(
        o,
        "proxy_certificate_reload_failing {}",
        u8::from(g.cert_reload_failing)
    );
    head(
        o,
        "proxy_inspect_entries",
        "gauge",
        "Exchanges the inspector keeps now.",
    );
    let _ = writeln!(o, "proxy_inspect_entries {}", g.entries);
    head(
        o,
        "proxy_inspect_memory_bytes",
        "gauge",
        &format!("Bytes of heads and bodies the inspector keeps ({INSPECT_MEMORY} caps it)."),
    );
    let _ = writeln!(o, "proxy_inspect_memory_bytes {}", g.memory_used);
    head(
        o,
        "proxy_inspect_memory_limit_bytes",
        "gauge",
        &format!("{INSPECT_MEMORY}."),
    );
    let _ = writeln!(o, "proxy_inspect_memory_limit_bytes {}", g.memory_cap);
}

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped as the text format wants (`\`, `"`, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
