//! `proxy check` (nginx's `-t`): every setting parsed (all problems, not just the first), every
//! file and folder the settings name checked without changing anything, the effective
//! configuration printed with nothing secret in it.

use std::fmt::Write as _;
use std::path::Path;

use common::env::Env;

use crate::config::{Config, Limits, LogFormat, UpstreamHttp2};
use crate::http::ErrorPages;
use crate::tls;

/// At most this many rounds of "drop the bad setting and parse again" (more than the settings).
const MAX_SETTING_PROBLEMS: usize = 100;

/// One check of what the settings name: a summary line when it passes, the problem otherwise.
type Check = fn(&Config) -> Result<String, String>;

/// Every file and folder check, in report order. A new one is one line here.
const CHECKS: &[(&str, Check)] = &[
    ("keypair", keypair),
    ("development CA", dev_ca),
    ("upstream", upstream),
    ("error page", error_page),
    ("static files", static_files),
    ("log folder", log_folder),
];

/// What `proxy check` found: the text to print, and whether there was no problem.
#[derive(Debug)]
pub struct CheckReport {
    pub text: String,
    pub problems: usize,
}

impl CheckReport {
    /// Nothing wrong: exit 0.
    pub fn ok(&self) -> bool {
        self.problems == 0
    }
}

/// Check the settings in `env` and everything they name.
pub fn check(env: &Env) -> CheckReport {
    let (config, mut problems) = settings(env);
    let mut text = String::from("Settings (effective values; *_FILE contents are not shown)\n");
    for (name, value) in effective(&config) {
        let shown = match env.file_of(name) {
            Some(file) => format!("(read from {name}_FILE={file})"),
            None if problems.iter().any(|p| names(p, name)) => "(invalid, see below)".into(),
            None => value,
        };
        let _ = writeln!(text, "  {name:<31} {shown}");
    }
    text.push_str("\nFiles and folders\n");
    for (what, check) in CHECKS {
        match check(&config) {
            Ok(summary) => {
                let _ = writeln!(text, "  ok    {what}: {}", indent(&summary));
            }
            Err(problem) => {
                let first = problem.lines().next().unwrap_or_default();
                let _ = writeln!(text, "  FAIL  {what}: {first}");
                problems.push(problem);
            }
        }
    }
    if problems.is_empty() {
        text.push_str("\nconfiguration OK\n");
    } else {
        let _ = writeln!(text, "\n{} problem(s):", problems.len());
        for p in &problems {
            let _ = writeln!(text, "  - {}", indent(p));
        }
    }
    CheckReport {
        text,
        problems: problems.len(),
    }
}

/// Whether `problem` is about setting `name` (it starts `NAME=`, `NAME_FILE=` or `NAME and`).
fn names(problem: &str, name: &str) -> bool {
    problem
        .strip_prefix(name)
        .is_some_and(|rest| rest.starts_with(['=', ':', ' ']) || rest.starts_with("_FILE"))
}

/// The configuration, with every invalid setting reported and replaced by its default.
fn settings(env: &Env) -> (Config, Vec<String>) {
    let mut env = env.clone();
    let mut problems = Vec::new();
    for _ in 0..MAX_SETTING_PROBLEMS {
        match Config::from_env(&env) {
            Ok(config) => return (config, problems),
            Err(e) => {
                problems.push(e.to_string());
                env = env.without(e.name());
            }
        }
    }
    // Unreachable in practice (every round removes one setting); report what is known.
    let config = Config::from_env(&Env::from_pairs::<String, String>([]));
    (config.expect("the defaults are valid"), problems)
}

/// Continuation lines of a multi-line message, indented under its first.
fn indent(text: &str) -> String {
    text.trim_end().replace('\n', "\n          ")
}

/// The pair as `proxy cert` describes it; a pair still to be generated needs a writable folder.
fn keypair(c: &Config) -> Result<String, String> {
    let summary = tls::describe(&c.tls).map_err(|e| e.to_string())?;
    if c.tls.generate && !c.tls.cert.exists() && !c.tls.key.exists() {
        let dir = c.tls.cert.parent().unwrap_or(Path::new("."));
        writable(dir).map_err(|e| {
            format!(
                "PROXY_TLS_CERT={}: the pair is to be generated but its folder is not writable \
                 by {} ({e})",
                c.tls.cert.display(),
                ids()
            )
        })?;
    }
    Ok(summary)
}

fn dev_ca(c: &Config) -> Result<String, String> {
    tls::check_ca(&c.tls).map_err(|e| e.to_string())
}

/// The upstream's name (a valid TLS server name; not looked up: it may not run yet) and its CA.
fn upstream(c: &Config) -> Result<String, String> {
    let host = c.upstream.host.as_str();
    rustls_pki_types::ServerName::try_from(host)
        .map_err(|e| format!("PROXY_UPSTREAM={}: not a valid host name: {e}", c.upstream))?;
    crate::upstream::tls_config(c.upstream_ca.as_deref()).map_err(|e| e.to_string())?;
    let verified = match &c.upstream_ca {
        Some(ca) => format!("verified against PROXY_UPSTREAM_CA={}", ca.display()),
        None => "its certificate not verified (PROXY_UPSTREAM_CA unset)".into(),
    };
    Ok(format!(
        "{}, resolved per connection (not looked up now), {verified}",
        c.upstream
    ))
}

fn error_page(c: &Config) -> Result<String, String> {
    ErrorPages::load(c.error_page.as_deref()).map_err(|e| e.to_string())?;
    Ok(match &c.error_page {
        Some(p) => format!("PROXY_ERROR_PAGE={} compiles and renders", p.display()),
        None => "the built-in page".into(),
    })
}

/// Every `PROXY_STATIC` folder exists and is a folder.
fn static_files(c: &Config) -> Result<String, String> {
    let roots = &c.static_files.roots;
    if roots.is_empty() {
        return Ok("none (PROXY_STATIC is empty)".into());
    }
    let problems = c.static_files.check();
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(lines.join("\n"));
    }
    Ok(format!("served from {}", static_roots(c)))
}

/// `PROXY_STATIC` as `PREFIX=DIR, …`.
fn static_roots(c: &Config) -> String {
    list(
        c.static_files
            .roots
            .iter()
            .map(|r| format!("{}={}", r.prefix, r.dir.display())),
    )
}

/// `PROXY_LOG_DIR` exists, is a folder, and this user may create files in it.
fn log_folder(c: &Config) -> Result<String, String> {
    let dir = &c.logs.dir;
    let named = format!("PROXY_LOG_DIR={}", dir.display());
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{named}: does not exist; create it"),
        _ => format!("{named}: {e}"),
    })?;
    if !meta.is_dir() {
        return Err(format!("{named}: not a folder"));
    }
    writable(dir).map_err(|e| format!("{named}: not writable by {} ({e})", ids()))?;
    Ok(format!("{named} is writable"))
}

/// `uid 1000 gid 1000`: who the check (and so the proxy) runs as.
fn ids() -> String {
    let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
    format!("uid {} gid {}", uid.as_raw(), gid.as_raw())
}

/// May this user create files in `dir`? Asked of the kernel (`access(2)`), so nothing is left
/// behind; a read-only mount counts as not writable.
fn writable(dir: &Path) -> rustix::io::Result<()> {
    use rustix::fs::{Access, access};
    access(dir, Access::WRITE_OK | Access::EXEC_OK)
}

/// Every setting's effective value, in the order of the README's table.
fn effective(c: &Config) -> Vec<(&'static str, String)> {
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map_or_else(String::new, |p| p.display().to_string())
    };
    let mut all = vec![
        ("PROXY_HTTP_LISTEN", c.http_listen.to_string()),
        ("PROXY_HTTPS_LISTEN", c.https_listen.to_string()),
        ("PROXY_HTTPS_PORT", c.https_port.to_string()),
        ("PROXY_TLS_CERT", c.tls.cert.display().to_string()),
        ("PROXY_TLS_KEY", c.tls.key.display().to_string()),
        ("PROXY_TLS_GENERATE", c.tls.generate.to_string()),
        ("PROXY_TLS_NAMES", c.tls.names.to_string()),
        ("PROXY_TLS_RENEW_INTERVAL", secs(c.tls.renew_interval)),
        (
            "PROXY_HSTS",
            c.hsts
                .as_ref()
                .map_or("", |v| v.to_str().unwrap_or("?"))
                .into(),
        ),
        ("PROXY_UPSTREAM", c.upstream.to_string()),
        ("PROXY_UPSTREAM_CA", path(&c.upstream_ca)),
        ("PROXY_UPSTREAM_TIMEOUT", secs(c.upstream_timeout)),
        (
            "PROXY_UPSTREAM_CONNECT_TIMEOUT",
            secs(c.upstream_connect_timeout),
        ),
        ("PROXY_UPSTREAM_FAIL_TIMEOUT", secs(c.upstream_fail_timeout)),
        ("PROXY_UPSTREAM_KEEPALIVE", c.upstream_keepalive.to_string()),
        (
            "PROXY_UPSTREAM_H2_CONNECTIONS",
            c.upstream_h2.connections.to_string(),
        ),
        (
            "PROXY_UPSTREAM_H2_MAX_REQUESTS",
            c.upstream_h2.max_requests.to_string(),
        ),
        ("PROXY_UPSTREAM_H2_LIFETIME", secs(c.upstream_h2.lifetime)),
        (
            "PROXY_UPSTREAM_HTTP2",
            match c.upstream_http2 {
                UpstreamHttp2::Auto => "auto",
                UpstreamHttp2::Always => "true",
                UpstreamHttp2::Never => "false",
            }
            .into(),
        ),
        ("PROXY_WORKERS", format!("{} (resolved)", c.workers)),
        (
            "PROXY_TRUSTED_PROXIES",
            list(c.trusted_proxies.iter().map(ToString::to_string)),
        ),
        ("PROXY_UPGRADE_PROTOCOLS", c.upgrade_protocols.to_string()),
        (
            "PROXY_UNDERSCORES_IN_HEADERS",
            c.underscores_in_headers.to_string(),
        ),
        ("PROXY_ERROR_PAGE", path(&c.error_page)),
        ("PROXY_INTERCEPT_ERRORS", c.intercept_errors.to_string()),
        ("PROXY_STATIC", static_roots(c)),
        (
            "PROXY_STATIC_CACHE_CONTROL",
            c.static_files.cache_control.to_str().unwrap_or("?").into(),
        ),
        (
            "PROXY_COMPRESSION",
            match c.compression.codings.as_slice() {
                [] => "off".into(),
                codings => list(codings.iter().map(|c| c.token().to_owned())),
            },
        ),
        (
            "PROXY_COMPRESSION_MIN_SIZE",
            c.compression.min_size.to_string(),
        ),
        (
            "PROXY_COMPRESSION_UPSTREAM",
            c.compression.upstream.to_string(),
        ),
        ("PROXY_LOG_DIR", c.logs.dir.display().to_string()),
        ("LOG_RETENTION", c.logs.retention.to_string()),
        ("PROXY_ACCESS_LOG", c.access_log.to_string()),
        (
            "PROXY_ACCESS_LOG_FORMAT",
            match c.logs.format {
                LogFormat::Combined => "combined",
                LogFormat::Json => "json",
            }
            .into(),
        ),
        ("PROXY_LOG", c.log.clone()),
        (
            "PROXY_INSPECT_LISTEN",
            c.inspect.listen.map_or_else(String::new, |a| a.to_string()),
        ),
        ("PROXY_INSPECT_ENTRIES", c.inspect.entries.to_string()),
        ("PROXY_INSPECT_BODY_LIMIT", c.inspect.body_limit.to_string()),
        ("PROXY_INSPECT_MEMORY", c.inspect.memory.to_string()),
        ("PROXY_INSPECT_MASK", c.inspect.mask.to_string()),
    ];
    all.extend(limits(&c.limits));
    all
}

/// The limits' and timeouts' effective values (the README's "Limits and timeouts").
fn limits(l: &Limits) -> Vec<(&'static str, String)> {
    let cl = &l.connection;
    vec![
        ("PROXY_HANDSHAKE_TIMEOUT", secs(cl.handshake_timeout)),
        ("PROXY_HEADER_TIMEOUT", secs(cl.header_read_timeout)),
        ("PROXY_KEEPALIVE_TIMEOUT", secs(cl.idle_timeout)),
        (
            "PROXY_KEEPALIVE_REQUESTS",
            cl.max_requests
                .map_or("unlimited".into(), |n| n.to_string()),
        ),
        (
            "PROXY_KEEPALIVE_LIFETIME",
            cl.max_lifetime.map_or("unlimited".into(), secs),
        ),
        ("PROXY_BODY_TIMEOUT", secs(l.body_timeout)),
        ("PROXY_MAX_HEADER_SIZE", cl.max_header_bytes.to_string()),
        ("PROXY_MAX_URI_LENGTH", l.max_uri_length.to_string()),
        ("PROXY_MAX_BODY_SIZE", l.max_body_size.to_string()),
        ("PROXY_MAX_CONNECTIONS", cl.max_connections.to_string()),
        (
            "PROXY_H2_MAX_STREAMS",
            cl.h2_max_concurrent_streams.to_string(),
        ),
        ("PROXY_TUNNEL_IDLE_TIMEOUT", secs(l.tunnel_idle_timeout)),
        ("PROXY_DRAIN_TIMEOUT", secs(cl.drain_timeout)),
    ]
}

fn secs(d: std::time::Duration) -> String {
    format!("{d:?}")
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every setting of the compose file's `x-proxy-environment` anchor is printed.
    #[test]
    fn every_compose_setting_is_printed() {
        let compose = include_str!("../../../docker-compose.yml");
        let anchor = compose
            .split("x-proxy-environment:")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the anchor");
        let printed: Vec<&str> =
            effective(&Config::from_env(&Env::from_pairs::<&str, &str>([])).expect("defaults"))
                .into_iter()
                .map(|(name, _)| name)
                .collect();
        for line in anchor.lines().skip(1) {
            let name = line.trim().split(':').next().unwrap_or_default();
            if !name.is_empty() && !name.starts_with('#') {
                assert!(
                    printed.contains(&name),
                    "{name} is not printed by proxy check"
                );
            }
        }
    }

    #[test]
    fn problems_are_matched_to_their_setting() {
        assert!(names("PROXY_WORKERS=\"x\": expected", "PROXY_WORKERS"));
        assert!(names("PROXY_LOG_FILE=/x: cannot read", "PROXY_LOG"));
        assert!(!names("PROXY_LOG_DIR=/x: missing", "PROXY_LOG"));
    }
}
