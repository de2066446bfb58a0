//! Parsing and matching of routes: the syntax, its errors, host and prefix precedence, and
//! properties of the matcher (case, port, trailing dot, segment boundaries).

use proptest::prelude::*;

use super::table::{Table, under};
use crate::config::{HostPattern, Scheme, parse};

fn table(text: &str) -> Table<usize> {
    let routes = parse(text, false).expect("routes parse");
    Table::new(
        routes
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r, i))
            .collect(),
    )
}

/// The index (in the text) of the route `host` and `path` go to.
fn goes(t: &Table<usize>, host: &str, path: &str) -> Option<usize> {
    t.find(host, path).map(|m| *m.value)
}

#[test]
fn the_issue_example_parses_with_schemes_ports_and_options() {
    let routes = parse(
        "api.localhost=http://api:3000, localhost/docs/=http://docs:8080 strip ws=off max_body=10m,\
         localhost=https://app:8000, grpc.localhost=h2c://grpc, *.dev.localhost=http://[::1]",
        false,
    )
    .expect("parse");
    assert_eq!(routes.len(), 5);
    assert_eq!(routes[0].target.to_string(), "http://api:3000");
    assert_eq!(routes[1].prefix, "/docs");
    assert!(routes[1].strip && !routes[1].websocket);
    assert_eq!(routes[1].max_body, Some(10 << 20));
    assert_eq!(routes[2].target.scheme, Scheme::Https);
    assert_eq!(routes[3].target.to_string(), "h2c://grpc:80");
    assert_eq!(
        routes[4].host,
        HostPattern::Wildcard(".dev.localhost".into())
    );
    assert_eq!(routes[4].target.to_string(), "http://[::1]:80");
    assert_eq!(
        routes[1].to_string(),
        "localhost/docs/=http://docs:8080 strip max_body=10485760 ws=off"
    );
}

#[test]
fn the_file_form_takes_comments_and_newlines_and_errors_name_the_line() {
    let text =
        "# the app\nlocalhost=https://app:8000\n\n  api.localhost=http://api:3000 # the API\n";
    assert_eq!(parse(text, true).expect("parse").len(), 2);
    let err = parse(
        "# x\nlocalhost=https://app:8000\napi.localhost=htp://api:3000\n",
        true,
    )
    .expect_err("a wrong scheme");
    assert_eq!(err.line, Some(3));
    assert_eq!(err.entry, "api.localhost=htp://api:3000");
    assert!(
        err.to_string()
            .starts_with("line 3: `api.localhost=htp://api:3000`: unknown scheme `htp`"),
        "{err}"
    );
}

#[test]
fn wrong_entries_say_what_is_wrong() {
    for (entry, says) in [
        ("localhost", "no `=`"),
        ("localhost=", "URL after `=` is missing"),
        ("=http://a:1", "host is missing"),
        ("local host=http://a:1", "not a host name"),
        ("a*.localhost=http://a:1", "a wildcard is `*.name`"),
        ("localhost=ftp://a:1", "unknown scheme `ftp`"),
        ("localhost=a:1", "expected SCHEME://HOST[:PORT]"),
        (
            "localhost=http://a:1/x",
            "no path after the upstream address",
        ),
        ("localhost=http://a:99999", "http://a:99999"),
        ("localhost/x=http://a:1 gzip", "unknown option `gzip`"),
        ("localhost/x=http://a:1 max_body=lots", "max_body=lots"),
        (
            "localhost/x=http://a:1 ws=maybe",
            "ws=maybe: expected on or off",
        ),
        ("localhost=http://a:1 strip", "`strip` needs a path prefix"),
        ("localhost/a?b=http://a:1", "a path prefix is a plain path"),
        ("localhost/a/..=http://a:1", "a path prefix is a plain path"),
        ("localhost/./a=http://a:1", "a path prefix is a plain path"),
        (
            "localhost/a=http://a:1, localhost/a/=http://b:1",
            "the same host and path as `localhost/a/=http://a:1`",
        ),
    ] {
        let err = parse(entry, false).expect_err(entry).to_string();
        assert!(err.contains(says), "{entry}: {err}");
    }
}

#[test]
fn exact_beats_wildcard_beats_any_and_longer_suffix_beats_shorter() {
    let t = table(
        "*=http://all:1, *.localhost=http://wild:1, *.b.localhost=http://deeper:1, \
         api.localhost=http://api:1",
    );
    assert_eq!(goes(&t, "api.localhost", "/"), Some(3));
    assert_eq!(goes(&t, "x.localhost", "/"), Some(1));
    assert_eq!(goes(&t, "a.b.localhost", "/"), Some(2));
    assert_eq!(
        goes(&t, "b.localhost", "/"),
        Some(1),
        "*.b.localhost is not b.localhost"
    );
    assert_eq!(
        goes(&t, "localhost", "/"),
        Some(0),
        "*.localhost is not localhost"
    );
    assert_eq!(goes(&t, "example.com", "/"), Some(0));
}

#[test]
fn longest_prefix_wins_at_segment_boundaries_and_misses_fall_through() {
    let t = table(
        "localhost/docs/=http://docs:1, localhost/docs/v2=http://v2:1, localhost/api=http://api:1,\
         *=http://all:1",
    );
    assert_eq!(goes(&t, "localhost", "/docs/"), Some(0));
    assert_eq!(goes(&t, "localhost", "/docs"), Some(0));
    assert_eq!(goes(&t, "localhost", "/docs/v2/page"), Some(1));
    assert_eq!(goes(&t, "localhost", "/docs/v20"), Some(0));
    assert_eq!(goes(&t, "localhost", "/docsx"), Some(3));
    assert_eq!(goes(&t, "localhost", "/api/x"), Some(2));
    assert_eq!(goes(&t, "localhost", "/apix"), Some(3));
    assert_eq!(
        goes(&t, "localhost", "/"),
        Some(3),
        "no localhost prefix matches: the * route"
    );
}

#[test]
fn no_route_for_a_host_is_none_and_hosts_lists_the_names() {
    let t =
        table("api.localhost=http://api:1, *.dev.localhost=http://d:1, api.localhost/x=http://x:1");
    assert_eq!(goes(&t, "apx.localhost", "/"), None);
    assert!(!t.serves_host("apx.localhost"));
    assert!(t.serves_host("API.localhost:443"));
    assert_eq!(t.hosts(), ["api.localhost", "*.dev.localhost"]);
}

/// A DNS label of the test alphabet.
fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?"
}

/// A path segment (never `.` or `..`: request paths are normalised, prefixes refuse them).
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._~-]{1,6}".prop_filter("no dot segment", |s| s != "." && s != "..")
}

proptest! {
    #[test]
    fn host_case_port_and_trailing_dot_do_not_matter(
        labels in prop::collection::vec(label(), 1..4),
        port in prop::option::of(1u16..),
        dot in any::<bool>(),
        upper in prop::collection::vec(any::<bool>(), 32),
    ) {
        let name = labels.join(".");
        let t = table(&format!("{name}=http://a:1, *=http://b:1"));
        let mut host: String = name
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
            .collect();
        if dot {
            host.push('.');
        }
        if let Some(p) = port {
            host.push_str(&format!(":{p}"));
        }
        prop_assert_eq!(goes(&t, &host, "/"), Some(0), "{}", host);
        let other = format!("x{name}");
        prop_assert_eq!(goes(&t, &other, "/"), Some(1));
    }

    #[test]
    fn a_prefix_serves_exactly_the_paths_under_it(
        prefix in prop::collection::vec(segment(), 1..3),
        rest in prop::collection::vec(segment(), 0..3),
        glued in segment(),
        slash in any::<bool>(),
    ) {
        let prefix = format!("/{}", prefix.join("/"));
        let entry_prefix = if slash { format!("{prefix}/") } else { prefix.clone() };
        let t = table(&format!("h{entry_prefix}=http://a:1, *=http://b:1"));
        let below = format!("{prefix}/{}", rest.join("/"));
        prop_assert_eq!(goes(&t, "h", &prefix), Some(0));
        prop_assert_eq!(goes(&t, "h", &below), Some(0), "{}", below);
        // `/docs` + `x`: the same characters, not the same segment.
        let beside = format!("{prefix}{glued}");
        prop_assert_eq!(goes(&t, "h", &beside), Some(1), "{}", beside);
        prop_assert_eq!(under(&prefix, &below), true);
    }

    #[test]
    fn every_parsed_route_prints_back_to_itself(
        host in prop_oneof![Just("*".to_owned()), label(), label().prop_map(|l| format!("*.{l}"))],
        prefix in prop::collection::vec(segment(), 0..3),
        port in 1u16..,
        strip in any::<bool>(),
        ws in any::<bool>(),
        max in prop::option::of(0u64..1 << 40),
    ) {
        let path = prefix.iter().map(|s| format!("/{s}")).collect::<String>();
        let mut entry = format!("{host}{path}=h2c://up:{port}");
        if strip && !path.is_empty() { entry.push_str(" strip"); }
        if let Some(m) = max { entry.push_str(&format!(" max_body={m}")); }
        if !ws { entry.push_str(" ws=off"); }
        let route = parse(&entry, false).expect("parse").remove(0);
        let again = parse(&route.to_string(), false).expect("reparse").remove(0);
        prop_assert_eq!(route, again);
    }
}

/// The routing cost per request with 50 routes (`bench/`, not a timed assert): what a request
/// does — load its worker's table, find its route, keep the route's client — 1M times over a mix
/// of hosts and paths. Run optimised:
/// the command is in README "Benchmarks" ("Routing cost").
#[test]
#[ignore = "a measurement: run it optimised, see the doc comment"]
fn lookup_cost_with_50_routes() {
    use std::sync::Arc;
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!("svc{i}.localhost=http://svc{i}:3000\n"));
        text.push_str(&format!("svc{i}.localhost/api/=http://api{i}:3000 strip\n"));
        text.push_str(&format!("svc{i}.localhost/api/v2/=http://v2{i}:3000\n"));
        text.push_str(&format!("*.team{i}.localhost=http://team{i}:3000\n"));
        text.push_str(&format!("localhost/p{i}/=http://p{i}:3000\n"));
    }
    let routes = parse(&text, true).expect("routes");
    assert_eq!(routes.len(), 50);
    let table = Table::new(routes.into_iter().map(|r| (r, Arc::new(()))).collect());
    let live = arc_swap::ArcSwap::from_pointee(table);
    let asks: Vec<(String, String)> = (0..64)
        .map(|i| {
            let n = i % 10;
            match i % 4 {
                0 => (format!("svc{n}.localhost"), format!("/api/v2/items/{i}")),
                1 => (format!("a.team{n}.localhost:443"), "/".to_owned()),
                2 => ("localhost".to_owned(), format!("/p{n}/page")),
                _ => (format!("Svc{n}.localhost"), format!("/static/{i}.css")),
            }
        })
        .collect();
    const N: usize = 1_000_000;
    let mut found = 0usize;
    let started = std::time::Instant::now();
    for i in 0..N {
        let (host, path) = &asks[i % asks.len()];
        let table = live.load();
        if let Some(m) = table.find(std::hint::black_box(host), std::hint::black_box(path)) {
            let kept = m.value.clone();
            found += Arc::strong_count(&kept);
        }
    }
    let took = started.elapsed();
    assert!(found >= N, "every ask matched");
    println!(
        "routing with 50 routes: {:.0} ns per request ({N} lookups in {took:?})",
        took.as_nanos() as f64 / N as f64
    );
}
