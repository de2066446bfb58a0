//! `proxy check` (nginx's `-t`): every setting parsed (all problems, not just the first), every
//! file and folder the settings name checked without changing anything, the effective
//! configuration printed with nothing secret in it.

use std::fmt::Write as _;
use std::path::Path;

use common::env::Env;

use crate::config::Config;
use crate::config::settings::{ALL, ERROR_PAGE, LOG_DIR, STATIC, TLS_CERT, UPSTREAM, UPSTREAM_CA};
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
    for meta in ALL {
        let name = meta.name;
        let invalid = problems.iter().any(|p| names(p, name));
        let shown = match env.file_of(name) {
            None if invalid => "(invalid, see below)".into(),
            _ => env.shown(meta),
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
                "{TLS_CERT}={}: the pair is to be generated but its folder is not writable \
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
    let up = &c.upstream;
    rustls_pki_types::ServerName::try_from(up.address.host.as_str())
        .map_err(|e| format!("{UPSTREAM}={}: not a valid host name: {e}", up.address))?;
    crate::upstream::tls_config(up.ca.as_deref()).map_err(|e| e.to_string())?;
    let verified = match &up.ca {
        Some(ca) => format!("verified against {UPSTREAM_CA}={}", ca.display()),
        None => format!("its certificate not verified ({UPSTREAM_CA} unset)"),
    };
    Ok(format!(
        "{}, resolved per connection (not looked up now), {verified}",
        up.address
    ))
}

fn error_page(c: &Config) -> Result<String, String> {
    ErrorPages::load(c.error_page.as_deref()).map_err(|e| e.to_string())?;
    Ok(match &c.error_page {
        Some(p) => format!("{ERROR_PAGE}={} compiles and renders", p.display()),
        None => "the built-in page".into(),
    })
}

/// Every `PROXY_STATIC` folder exists and is a folder.
fn static_files(c: &Config) -> Result<String, String> {
    let roots = &c.static_files.roots;
    if roots.is_empty() {
        return Ok(format!("none ({STATIC} is empty)"));
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
    let named = format!("{LOG_DIR}={}", dir.display());
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

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_matched_to_their_setting() {
        assert!(names("PROXY_WORKERS=\"x\": expected", "PROXY_WORKERS"));
        assert!(names("PROXY_LOG_FILE=/x: cannot read", "PROXY_LOG"));
        assert!(!names("PROXY_LOG_DIR=/x: missing", "PROXY_LOG"));
    }
}
