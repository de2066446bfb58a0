//! The route table: a request's host and path → its route. An exact host beats a `*.name`
//! wildcard (the longer suffix first) beats `*`; within a host the longest path prefix wins; a
//! host whose prefixes all miss falls through to the next less specific host.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::config::{HostPattern, Route};

/// Routes, each with what the proxy keeps for it (`T`: its upstream client), ready to match.
pub struct Table<T> {
    routes: Vec<(Route, T)>,
    /// Exact host → route indexes, longest prefix first.
    exact: HashMap<String, Vec<usize>>,
    /// `.suffix` → route indexes, longest suffix first.
    wildcards: Vec<(String, Vec<usize>)>,
    any: Vec<usize>,
}

/// What a request matched: its route and what is kept for it.
pub struct Matched<'a, T> {
    pub route: &'a Route,
    pub value: &'a T,
}

impl<T> Table<T> {
    /// The table of `routes` (distinct host and prefix pairs, as [`super::parse`] makes them).
    pub fn new(routes: Vec<(Route, T)>) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcards: Vec<(String, Vec<usize>)> = Vec::new();
        let mut any = Vec::new();
        for (i, (route, _)) in routes.iter().enumerate() {
            match &route.host {
                HostPattern::Exact(h) => exact.entry(h.clone()).or_default().push(i),
                HostPattern::Wildcard(s) => match wildcards.iter_mut().find(|(w, _)| w == s) {
                    Some((_, list)) => list.push(i),
                    None => wildcards.push((s.clone(), vec![i])),
                },
                HostPattern::Any => any.push(i),
            }
        }
        let by_prefix = |list: &mut Vec<usize>| {
            list.sort_by_key(|&i| std::cmp::Reverse(routes[i].0.prefix.len()));
        };
        exact.values_mut().for_each(by_prefix);
        wildcards.iter_mut().for_each(|(_, l)| by_prefix(l));
        by_prefix(&mut any);
        wildcards.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Table {
            routes,
            exact,
            wildcards,
            any,
        }
    }

    /// The route for `host` (a `Host` value: any case, maybe a port or a trailing dot) and
    /// `path` (the normalised path, without the query).
    pub fn find(&self, host: &str, path: &str) -> Option<Matched<'_, T>> {
        let host = normalise(host);
        let exact = self.exact.get(host.as_ref()).map(Vec::as_slice);
        let wild = self
            .wildcards
            .iter()
            .filter(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, l)| l.as_slice());
        let i = exact
            .into_iter()
            .chain(wild)
            .chain(std::iter::once(self.any.as_slice()))
            .find_map(|list| {
                list.iter()
                    .copied()
                    .find(|&i| under(&self.routes[i].0.prefix, path))
            })?;
        let (route, value) = &self.routes[i];
        Some(Matched { route, value })
    }

    /// Whether some route serves `host` (any path).
    pub fn serves_host(&self, host: &str) -> bool {
        let host = normalise(host);
        !self.any.is_empty()
            || self.exact.contains_key(host.as_ref())
            || self
                .wildcards
                .iter()
                .any(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
    }

    /// Every route and its value, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &(Route, T)> {
        self.routes.iter()
    }

    /// The host patterns served, each once, in the order given (the 404 page lists them).
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for (route, _) in &self.routes {
            let h = route.host.to_string();
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        hosts
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Whether `path` is under `prefix` (no trailing `/`) at a segment boundary.
pub fn under(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The host without its port or trailing dot, in lower case (allocating only for upper case).
fn normalise(host: &str) -> Cow<'_, str> {
    let host = match host.rfind(':') {
        // `[::1]:443`, `name:443`; a bare IPv6 literal has no port outside its brackets.
        Some(i)
            if !host[i..].contains(']') && (host.starts_with('[') || !host[..i].contains(':')) =>
        {
            &host[..i]
        }
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}
