//! A setting declared once: its variable, its type, its default (written as a user would write
//! it, and parsed by the same code), a one-line help and whether its value is secret. Parsing
//! (`Env::read`, `NAME_FILE` included), `--help`, `proxy check`'s printout and every error that
//! names a variable come from the declaration. Each service lists its settings with
//! [`settings!`](crate::settings).

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::env::{Env, EnvError};

/// What every setting is, whatever its type: for tables, help and printouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The environment variable (`PROXY_UPSTREAM`); `NAME_FILE` is accepted too.
    pub name: &'static str,
    /// The default as a user would write it; empty means unset.
    pub default: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Its value is never shown: not by a printout, not quoted in an error.
    pub secret: bool,
}

/// A setting of type `T`: [`Meta`] plus the type its value parses into.
#[derive(Debug)]
pub struct Setting<T> {
    pub meta: Meta,
    value: PhantomData<fn() -> T>,
}

impl<T> Setting<T> {
    /// A setting (use [`settings!`](crate::settings) rather than this).
    pub const fn new(meta: Meta) -> Self {
        Setting {
            meta,
            value: PhantomData,
        }
    }

    /// The variable's name, for messages that name it.
    pub const fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl<T: Value> Setting<T> {
    /// The declared default, parsed. Every declaration's default parses (each service tests
    /// that its `Config` reads from an empty environment), so this cannot fail at run time.
    pub fn default_value(&self) -> T {
        T::parse(self.meta.default).unwrap_or_else(|e| {
            panic!(
                "{}: the declared default {:?} does not parse: {e}",
                self.meta.name, self.meta.default
            )
        })
    }
}

impl<T> std::fmt::Display for Setting<T> {
    /// The variable's name: `format!("{X}=…")` in messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.meta.name)
    }
}

/// A type a setting's text parses into. One implementation per type: the default and the
/// environment's value go through the same code.
pub trait Value: Sized {
    /// `Err` says what was expected (the caller adds the variable and the value).
    fn parse(text: &str) -> Result<Self, String>;
}

/// [`Value`] through the type's `FromStr`, the text trimmed.
#[macro_export]
macro_rules! value_from_str {
    ($($ty:ty),* $(,)?) => {$(
        impl $crate::setting::Value for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse::<$ty>().map_err(|e| e.to_string())
            }
        }
    )*};
}

value_from_str!(SocketAddr, u16, u32, usize);

/// A string, as it is set.
impl Value for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

/// `true/false`, `1/0`, `yes/no`, `on/off` (any case).
impl Value for bool {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("expected true or false (also 1/0, yes/no, on/off)".into()),
        }
    }
}

/// `500ms`, `10s`, `5m`, `1h`; a bare number is seconds.
impl Value for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text).ok_or_else(|| {
            "expected a duration such as 500ms, 10s, 5m or 1h (a bare number means seconds)".into()
        })
    }
}

/// A size in bytes: `512`, `64k`, `1m`, `2g` (powers of 1024, as nginx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl Value for Bytes {
    fn parse(text: &str) -> Result<Self, String> {
        parse_size(text)
            .map(Bytes)
            .ok_or_else(|| "expected a size such as 512, 64k, 1m or 2g (powers of 1024)".into())
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A path; several lines or a PEM block are refused (a key pasted where its path belongs).
impl Value for PathBuf {
    fn parse(text: &str) -> Result<Self, String> {
        if looks_like_contents(text) {
            return Err("expected the path of a file, not its contents".into());
        }
        Ok(PathBuf::from(text.trim()))
    }
}

/// An optional value (a path, an address): empty is `None`.
impl<T: Value> Value for Option<T> {
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" => Ok(None),
            _ => T::parse(text).map(Some),
        }
    }
}

/// Several lines or a PEM block: a value never quoted back (it may be a key).
fn looks_like_contents(text: &str) -> bool {
    text.trim().contains('\n') || text.contains("-----BEGIN")
}

impl Env {
    /// The value of `setting` (from `NAME`, or the file `NAME_FILE` names), or its default,
    /// parsed. A secret value, a PEM block or several lines are never quoted in the error.
    pub fn read<T: Value>(&self, setting: &Setting<T>) -> Result<T, EnvError> {
        let meta = &setting.meta;
        let given = self.get(meta.name)?;
        let text = given.as_deref().unwrap_or(meta.default);
        T::parse(text).map_err(|reason| {
            let shown = if meta.secret || looks_like_contents(text) {
                "(not shown: several lines, a PEM block or a secret)"
            } else {
                text
            };
            EnvError::invalid(meta.name, shown, reason)
        })
    }

    /// What `setting` is set to, for a printout: its text (default or given), `(read from
    /// NAME_FILE=…)`, or `(secret)`. Never a file's contents.
    pub fn shown(&self, meta: &Meta) -> String {
        if let Some(file) = self.file_of(meta.name) {
            return format!("(read from {}_FILE={file})", meta.name);
        }
        if meta.secret {
            return "(secret, not shown)".into();
        }
        match self.get(meta.name) {
            Ok(Some(v)) => v.trim().to_owned(),
            _ => meta.default.to_owned(),
        }
    }
}

/// Declares a service's settings, each once, and `ALL`, their [`Meta`]s in order:
///
/// ```ignore
/// common::settings! {
///     /// `PROXY_HTTP_LISTEN`
///     HTTP_LISTEN: SocketAddr = "PROXY_HTTP_LISTEN", "0.0.0.0:80",
///         "plain-HTTP listener: redirects only";
///     secret TOKEN: String = "PROXY_TOKEN", "", "shared secret";
/// }
/// ```
#[macro_export]
macro_rules! settings {
    ($($(#[$doc:meta])* $(@$secret:ident)? $id:ident : $ty:ty = $name:literal, $default:literal, $help:literal;)*) => {
        $(
            $(#[$doc])*
            pub const $id: $crate::setting::Setting<$ty> = $crate::setting::Setting::new(
                $crate::setting::Meta {
                    name: $name,
                    default: $default,
                    help: $help,
                    secret: $crate::settings!(@secret $($secret)?),
                },
            );
        )*
        /// Every setting, in declaration order (README's order).
        #[allow(dead_code)]
        pub const ALL: &[$crate::setting::Meta] = &[$($id.meta),*];
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

/// `--help` text: one line per setting, `NAME  help [default]`, wrapped at 100 columns.
pub fn help(all: &[Meta]) -> String {
    let width = all.iter().map(|m| m.name.len()).max().unwrap_or(0) + 2;
    let mut out = String::from(
        "Settings (environment variables; each also accepted as NAME_FILE, read from that \
         file; defaults in brackets):\n",
    );
    for m in all {
        let default = if m.secret { "" } else { m.default };
        let line = format!("{} [{}]", m.help, default);
        let mut first = true;
        for chunk in wrap(&line, 98usize.saturating_sub(width).max(30)) {
            let name = if first { m.name } else { "" };
            out.push_str(&format!("  {name:<width$}{chunk}\n"));
            first = false;
        }
    }
    out
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().map_or(0, |l| l.len());
        if last > 0 && last + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(l) = lines.last_mut() {
            if !l.is_empty() {
                l.push(' ');
            }
            l.push_str(word);
        }
    }
    lines
}

/// Parse `500ms`, `10s`, `10`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (t.as_str(), 1000)
    };
    let n: u64 = num.trim().parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(mult_ms)?))
}

/// Parse `512`, `64k`, `1m`, `2g` (case-insensitive, optional trailing `b`).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    crate::settings! {
        /// A number.
        COUNT: usize = "T_COUNT", "3", "how many";
        @secret TOKEN: String = "T_TOKEN", "", "a secret";
        KEYFILE: Option<PathBuf> = "T_KEY", "", "a key's path";
        WAIT: Duration = "T_WAIT", "1m", "how long";
        SIZE: Bytes = "T_SIZE", "1k", "how much";
        FLAG: bool = "T_FLAG", "on", "whether";
    }

    #[test]
    fn defaults_parse_through_the_same_code() {
        let env = Env::from_pairs::<&str, &str>([]);
        assert_eq!(env.read(&COUNT).expect("default"), 3);
        assert_eq!(env.read(&WAIT).expect("default"), Duration::from_secs(60));
        assert_eq!(env.read(&SIZE).expect("default"), Bytes(1024));
        assert!(env.read(&FLAG).expect("default"));
        assert_eq!(env.read(&KEYFILE).expect("default"), None);
        assert_eq!(ALL.len(), 6);
        assert!(ALL[1].secret && !ALL[0].secret);
    }

    #[test]
    fn errors_name_the_variable_and_hide_secrets_and_pem_blocks() {
        let env = Env::from_pairs([("T_COUNT", "many")]);
        let err = env.read(&COUNT).expect_err("not a number").to_string();
        assert!(err.starts_with("T_COUNT=\"many\":"), "{err}");
        let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----";
        let env = Env::from_pairs([("T_KEY", pem)]);
        let err = env
            .read(&KEYFILE)
            .expect_err("a key, not a path")
            .to_string();
        assert!(err.starts_with("T_KEY="), "{err}");
        assert!(!err.contains("MIGHAgEAMBMG"), "{err}");
        let env = Env::from_pairs([("T_TOKEN", "hunter2")]);
        assert_eq!(env.shown(&TOKEN.meta), "(secret, not shown)");
        assert!(!help(ALL).contains("hunter2"));
    }

    #[test]
    fn shown_never_reads_a_file_and_help_lists_every_setting() {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        f.write_all(b"7\n").expect("write");
        let path = f.path().to_str().expect("utf8");
        let env = Env::from_pairs([("T_COUNT_FILE", path), ("T_WAIT", " 5s ")]);
        assert_eq!(env.read(&COUNT).expect("from the file"), 7);
        assert_eq!(
            env.shown(&COUNT.meta),
            format!("(read from T_COUNT_FILE={path})")
        );
        assert_eq!(env.shown(&WAIT.meta), "5s");
        assert_eq!(env.shown(&SIZE.meta), "1k");
        let text = help(ALL);
        for m in ALL {
            assert!(text.contains(m.name), "{text}");
        }
        assert!(text.contains("how long [1m]"), "{text}");
    }

    #[test]
    fn parses_durations_sizes_and_bools() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("-1"), None);
        let err = bool::parse("maybe").expect_err("bad bool");
        assert!(err.contains("true or false"), "{err}");
    }
}
