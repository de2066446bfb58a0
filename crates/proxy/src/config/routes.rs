//! `PROXY_ROUTES` (or `PROXY_ROUTES_FILE`, watched): entries
//! `HOST[/PATH-PREFIX]=SCHEME://HOST[:PORT][ OPTION...]`, separated by commas or newlines, `#` to
//! the end of a line a comment. Every entry is checked; a wrong one is refused with its line (in
//! a file), its text and what is wrong. `PROXY_UPSTREAM` is the `*` route.

use std::fmt;
use std::path::PathBuf;

use common::env::{Env, EnvError};

use super::settings::{ROUTES, UPSTREAM};
use super::upstream::{Scheme, Upstream, UpstreamConfig};

/// Where a route's requests go and how: everything its upstream client is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub address: Upstream,
}

impl Target {
    /// The full upstream configuration of this target: its scheme and address, every other
    /// setting (CA, timeouts, pools) from `base` (the `PROXY_UPSTREAM_*` settings).
    pub fn upstream(&self, base: &UpstreamConfig) -> UpstreamConfig {
        UpstreamConfig {
            address: self.address.clone(),
            scheme: self.scheme,
            ..base.clone()
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.address)
    }
}

/// Which request hosts a route serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One name (lower case, no trailing dot).
    Exact(String),
    /// `*.name`: any name ending in `.name` (stored as `.name`), not `name` itself.
    Wildcard(String),
    /// `*`: every host.
    Any,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// One route: a host pattern and path prefix, its upstream, and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: HostPattern,
    /// The path prefix without its trailing `/` (`""`: every path). `/docs` serves `/docs` and
    /// `/docs/…`, never `/docsx`.
    pub prefix: String,
    pub target: Target,
    /// `strip`: the prefix is removed from the path sent upstream (X-Forwarded-Prefix names it).
    pub strip: bool,
    /// `max_body=SIZE`: this route's request body limit (0: unlimited); else `PROXY_MAX_BODY_SIZE`.
    pub max_body: Option<u64>,
    /// `ws=off`: upgrade requests (WebSocket) are forwarded without their upgrade.
    pub websocket: bool,
}

impl Route {
    /// The `*` route to `target`, no options: what `PROXY_UPSTREAM` means.
    pub fn any(target: Target) -> Self {
        Route {
            host: HostPattern::Any,
            prefix: String::new(),
            target,
            strip: false,
            max_body: None,
            websocket: true,
        }
    }
}

impl fmt::Display for Route {
    /// The entry in its canonical form (what `proxy check` prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "{}={}", self.host, self.target)?,
            prefix => write!(f, "{}{prefix}/={}", self.host, self.target)?,
        }
        if self.strip {
            f.write_str(" strip")?;
        }
        if let Some(n) = self.max_body {
            write!(f, " max_body={n}")?;
        }
        if !self.websocket {
            f.write_str(" ws=off")?;
        }
        Ok(())
    }
}

/// A wrong entry: where (line, in a file), its text, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RoutesError {
    pub line: Option<usize>,
    pub entry: String,
    pub why: String,
}

impl fmt::Display for RoutesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "`{}`: {}", self.entry, self.why)
    }
}

/// Most entries a table takes (a bound on what a file can make the proxy build).
pub const MAX_ROUTES: usize = 1000;

/// Parse every entry of `text`. `numbered`: errors name the line (the file form).
pub fn parse(text: &str, numbered: bool) -> Result<Vec<Route>, RoutesError> {
    let mut routes: Vec<Route> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        for entry in line.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let wrong = |why: String| RoutesError {
                line: numbered.then_some(n + 1),
                entry: entry.to_owned(),
                why,
            };
            let route = entry_of(entry).map_err(wrong)?;
            if let Some(same) = routes
                .iter()
                .find(|r| r.host == route.host && r.prefix == route.prefix)
            {
                return Err(wrong(format!("the same host and path as `{same}`")));
            }
            if routes.len() == MAX_ROUTES {
                return Err(wrong(format!("more than {MAX_ROUTES} routes")));
            }
            routes.push(route);
        }
    }
    Ok(routes)
}

/// One entry.
fn entry_of(entry: &str) -> Result<Route, String> {
    let (matcher, rest) = entry
        .split_once('=')
        .ok_or("expected HOST[/PATH]=URL (no `=`)")?;
    let mut words = rest.split_whitespace();
    let url = words.next().ok_or("the URL after `=` is missing")?;
    let (host, prefix) = matcher_of(matcher.trim())?;
    let mut route = Route {
        host,
        prefix,
        target: target_of(url)?,
        strip: false,
        max_body: None,
        websocket: true,
    };
    for word in words {
        option(&mut route, word)?;
    }
    if route.strip && route.prefix.is_empty() {
        return Err("`strip` needs a path prefix to strip".into());
    }
    Ok(route)
}

/// `HOST[/PATH]` → the host pattern and the prefix without its trailing `/`.
fn matcher_of(matcher: &str) -> Result<(HostPattern, String), String> {
    let (host, path) = match matcher.find('/') {
        Some(i) => matcher.split_at(i),
        None => (matcher, ""),
    };
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    let pattern = match host {
        "" => return Err("the host is missing (use `*` for every host)".into()),
        "*" => HostPattern::Any,
        _ => match host.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') && valid_name(&suffix[1..]) => {
                HostPattern::Wildcard(suffix.to_owned())
            }
            Some(_) => return Err(format!("`{host}`: a wildcard is `*.name`")),
            None if host.contains('*') => return Err(format!("`{host}`: a wildcard is `*.name`")),
            None if valid_name(host) => HostPattern::Exact(host.to_owned()),
            None => return Err(format!("`{host}` is not a host name")),
        },
    };
    let dots = path.split('/').any(|seg| seg == "." || seg == "..");
    if path.contains(['?', '*', ' ', '\\', '#']) || path.contains("//") || dots {
        return Err(format!(
            "`{path}`: a path prefix is a plain path (no `?`, `*`, `//`, `..`)"
        ));
    }
    Ok((pattern, path.trim_end_matches('/').to_owned()))
}

/// A DNS name (letters, digits, `-`, dots) or an IP literal.
fn valid_name(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok()
        || (host.starts_with('[') && host.ends_with(']') && host.len() > 2)
    {
        return true;
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `SCHEME://HOST[:PORT]`.
fn target_of(url: &str) -> Result<Target, String> {
    let (scheme, address) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}`: expected SCHEME://HOST[:PORT] (http, https or h2c)"))?;
    let scheme = Scheme::parse(scheme)
        .ok_or_else(|| format!("unknown scheme `{scheme}` (expected http, https or h2c)"))?;
    let address = address.strip_suffix('/').unwrap_or(address);
    if address.contains('/') {
        return Err(format!(
            "`{url}`: no path after the upstream address (use the `strip` option)"
        ));
    }
    let with_port = match address.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => address.to_owned(),
        _ => format!("{address}:{}", scheme.default_port()),
    };
    let address = with_port
        .parse::<Upstream>()
        .map_err(|e| format!("`{url}`: {e}"))?;
    Ok(Target { scheme, address })
}

/// One option word.
fn option(route: &mut Route, word: &str) -> Result<(), String> {
    let (name, value) = match word.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (word, None),
    };
    match (name.to_ascii_lowercase().as_str(), value) {
        ("strip", None) => route.strip = true,
        ("max_body", Some(v)) => {
            route.max_body = Some(common::setting::parse_size(v).ok_or_else(|| {
                format!("max_body={v}: expected a size such as 512, 64k, 1m or 2g (0: unlimited)")
            })?);
        }
        ("ws", Some(v)) => {
            route.websocket = match v.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" => true,
                "off" | "false" | "no" | "0" => false,
                _ => return Err(format!("ws={v}: expected on or off")),
            }
        }
        _ => {
            return Err(format!(
                "unknown option `{word}` (expected strip, max_body=SIZE or ws=on|off)"
            ));
        }
    }
    Ok(())
}

/// `PROXY_ROUTES`: the routes in force at start, where they are re-read from, and the `*` route
/// `PROXY_UPSTREAM` adds.
#[derive(Debug, Clone)]
pub struct Routes {
    /// The routes, the `*` route of `PROXY_UPSTREAM` last (when it applies).
    pub entries: Vec<Route>,
    /// `PROXY_ROUTES_FILE`: re-read on a change in its folder and on SIGHUP.
    pub file: Option<PathBuf>,
    /// The route `PROXY_UPSTREAM` makes: always without `PROXY_ROUTES`, else only when set. It
    /// serves what no route of `PROXY_ROUTES` does, unless those name their own `*` route.
    fallback: Option<Route>,
}

impl Routes {
    /// Read `PROXY_ROUTES` (or its file), with `upstream` (`PROXY_UPSTREAM`) as the `*` route.
    pub fn from_env(env: &Env, upstream: &Upstream) -> Result<Self, EnvError> {
        let fallback = Route::any(Target {
            scheme: Scheme::Https,
            address: upstream.clone(),
        });
        let text = env.read(&ROUTES)?;
        if text.trim().is_empty() && env.file_of(ROUTES.name()).is_none() {
            return Ok(Routes {
                entries: vec![fallback],
                file: None,
                fallback: None,
            });
        }
        let file = env.file_of(ROUTES.name()).map(PathBuf::from);
        let fallback = env.get(UPSTREAM.name())?.map(|_| fallback);
        let mut routes = Routes {
            entries: Vec::new(),
            file,
            fallback,
        };
        routes.entries = routes.with_text(&text).map_err(|e| match &routes.file {
            // A file is not secret: name it and the line (`redact` would hide the reason's entry).
            Some(path) => {
                let name = format!("{ROUTES}_FILE");
                EnvError::invalid(&name, &path.display().to_string(), e)
            }
            None => EnvError::invalid(ROUTES.name(), &text, e),
        })?;
        Ok(routes)
    }

    /// The routes `text` (a new version of the file) gives, with the `*` route of `PROXY_UPSTREAM`.
    pub fn with_text(&self, text: &str) -> Result<Vec<Route>, RoutesError> {
        let mut entries = parse(text, self.file.is_some())?;
        let own_any = entries
            .iter()
            .any(|r| r.host == HostPattern::Any && r.prefix.is_empty());
        if let Some(fallback) = self.fallback.as_ref().filter(|_| !own_any) {
            entries.push(fallback.clone());
        }
        Ok(entries)
    }
}
