//! Settings from environment variables, each also accepted as `NAME_FILE` (Docker secrets).

use std::collections::HashMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A setting that could not be read or parsed. Every variant names the variable.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{name} and {name}_FILE are both set; set only one of them")]
    BothSet { name: String },
    #[error("{name}_FILE={path}: cannot read the file: {source}")]
    ReadFile {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    /// `Invalid` for a value read from `NAME_FILE`: the contents may be secret, so only the
    /// file is named.
    #[error("{name}_FILE={path}: the file's contents are not a valid value: {reason}")]
    InvalidFile {
        name: String,
        path: PathBuf,
        reason: String,
    },
}

impl EnvError {
    /// The setting this error is about (without `_FILE`).
    pub fn name(&self) -> &str {
        match self {
            EnvError::BothSet { name }
            | EnvError::ReadFile { name, .. }
            | EnvError::Invalid { name, .. }
            | EnvError::InvalidFile { name, .. } => name,
        }
    }

    /// An error for a value that was read but is not acceptable.
    pub fn invalid(name: &str, value: &str, reason: impl Display) -> Self {
        EnvError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Where settings come from: the process environment, or a fixed map (tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Option<HashMap<String, String>>,
}

impl Env {
    /// Read from the process environment.
    pub fn process() -> Self {
        Env { vars: None }
    }

    /// Read from the given pairs only (the process environment is ignored).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The same settings without `name` and `name_FILE`, so it falls back to its default (the
    /// process environment is copied first; names or values that are not UTF-8 are left out).
    pub fn without(&self, name: &str) -> Env {
        let mut vars = self.vars.clone().unwrap_or_else(|| {
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect()
        });
        vars.remove(name);
        vars.remove(&format!("{name}_FILE"));
        Env { vars: Some(vars) }
    }

    /// `err` with a value read from a `NAME_FILE` left out (secrets must not reach a log or a
    /// terminal through an error message). Every service's `Config::from_env` ends with it.
    pub fn redact(&self, err: EnvError) -> EnvError {
        match err {
            EnvError::Invalid {
                name,
                value,
                reason,
            } => match self.file_of(&name) {
                Some(path) => EnvError::InvalidFile {
                    name,
                    path: path.into(),
                    reason,
                },
                None => EnvError::Invalid {
                    name,
                    value,
                    reason,
                },
            },
            other => other,
        }
    }

    /// The file `name_FILE` names, when `name` is read from one (its contents may be secret).
    pub fn file_of(&self, name: &str) -> Option<String> {
        let file = self
            .raw(&format!("{name}_FILE"))
            .filter(|p| !p.is_empty())?;
        self.raw(name).is_none_or(|v| v.is_empty()).then_some(file)
    }

    fn raw(&self, name: &str) -> Option<String> {
        match &self.vars {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// The value of `name`, or the contents of the file named by `name_FILE` with one trailing
    /// newline (`\n` or `\r\n`) removed. Setting both is an error.
    pub fn get(&self, name: &str) -> Result<Option<String>, EnvError> {
        let file_var = format!("{name}_FILE");
        // An empty NAME next to NAME_FILE counts as unset: a compose override cannot delete a
        // key it inherits from an anchor, only blank it.
        let direct = self.raw(name);
        let from_file = self.raw(&file_var).filter(|p| !p.is_empty());
        let direct = match (&direct, &from_file) {
            (Some(v), Some(_)) if v.is_empty() => None,
            _ => direct,
        };
        match (direct, from_file) {
            (Some(_), Some(_)) => Err(EnvError::BothSet {
                name: name.to_owned(),
            }),
            (Some(v), None) => Ok(Some(v)),
            (None, Some(path)) => {
                let mut text =
                    std::fs::read_to_string(&path).map_err(|source| EnvError::ReadFile {
                        name: name.to_owned(),
                        path: PathBuf::from(&path),
                        source,
                    })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                Ok(Some(text))
            }
            (None, None) => Ok(None),
        }
    }

    /// The value of `name`, or `default` when unset.
    pub fn string(&self, name: &str, default: &str) -> Result<String, EnvError> {
        Ok(self.get(name)?.unwrap_or_else(|| default.to_owned()))
    }

    /// The value of `name` parsed with `FromStr`, or `default` when unset.
    pub fn parsed<T>(&self, name: &str, default: T) -> Result<T, EnvError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name)? {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e: T::Err| EnvError::invalid(name, &v, e)),
        }
    }

    /// An optional path: unset or empty means `None`. A PEM block or several lines is refused
    /// without being quoted (a key pasted where its file's path belongs must not be printed).
    pub fn path(&self, name: &str) -> Result<Option<PathBuf>, EnvError> {
        let value = self.get(name)?.filter(|v| !v.trim().is_empty());
        if let Some(v) = &value
            && (v.contains('\n') || v.contains("-----BEGIN"))
        {
            return Err(EnvError::invalid(
                name,
                "(not shown: several lines or a PEM block)",
                "expected the path of a file, not its contents",
            ));
        }
        Ok(value.map(PathBuf::from))
    }

    /// A boolean: `true/false`, `1/0`, `yes/no`, `on/off` (any case).
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, EnvError> {
        match self.get(name)? {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(EnvError::invalid(
                    name,
                    &v,
                    "expected true or false (also 1/0, yes/no, on/off)",
                )),
            },
        }
    }

    /// A duration: a number with an optional unit `ms`, `s` (the default), `m` or `h`.
    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, EnvError> {
        match self.get(name)? {
            None => Ok(default),
            Some(v) => parse_duration(&v).ok_or_else(|| {
                EnvError::invalid(
                    name,
                    &v,
                    "expected a duration such as 500ms, 10s, 5m or 1h (a bare number means seconds)",
                )
            }),
        }
    }

    /// A size in bytes: a number with an optional unit `k`, `m` or `g` (powers of 1024, as nginx).
    pub fn size(&self, name: &str, default: u64) -> Result<u64, EnvError> {
        match self.get(name)? {
            None => Ok(default),
            Some(v) => parse_size(&v).ok_or_else(|| {
                EnvError::invalid(
                    name,
                    &v,
                    "expected a size such as 512, 64k, 1m or 2g (powers of 1024)",
                )
            }),
        }
    }
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

    #[test]
    fn file_variant_is_read_and_one_newline_trimmed() {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        f.write_all(b"secret\n\n").expect("write");
        let env = Env::from_pairs([("X_FILE", f.path().to_str().expect("utf8"))]);
        assert_eq!(env.get("X").expect("ok").as_deref(), Some("secret\n"));
    }

    #[test]
    fn an_invalid_value_from_a_file_is_not_quoted() {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        f.write_all(b"hunter2-secret\n").expect("write");
        let path = f.path().to_str().expect("utf8");
        let env = Env::from_pairs([("X_FILE", path)]);
        let err = env.redact(env.parsed::<u16>("X", 1).expect_err("not a number"));
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.starts_with(&format!("X_FILE={path}:")), "{text}");
        // A value set directly is still quoted: it is already in the environment.
        let env = Env::from_pairs([("X", "abc")]);
        let err = env.redact(env.parsed::<u16>("X", 1).expect_err("not a number"));
        assert!(err.to_string().contains("\"abc\""), "{err}");
    }

    #[test]
    fn a_pem_block_where_a_path_belongs_is_refused_unquoted() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----";
        let env = Env::from_pairs([("K", pem)]);
        let err = env.path("K").expect_err("a key, not a path").to_string();
        assert!(err.starts_with("K="), "{err}");
        assert!(!err.contains("MIGHAgEAMBMG"), "{err}");
    }

    #[test]
    fn both_set_is_an_error_naming_the_variable() {
        let env = Env::from_pairs([("X", "a"), ("X_FILE", "/nonexistent")]);
        let err = env.get("X").expect_err("both set");
        assert!(err.to_string().contains("X and X_FILE"), "{err}");
    }

    #[test]
    fn an_empty_value_beside_the_file_variant_counts_as_unset() {
        let mut f = tempfile::NamedTempFile::new().expect("tempfile");
        f.write_all(b"from-file\n").expect("write");
        let path = f.path().to_str().expect("utf8");
        let env = Env::from_pairs([("X", ""), ("X_FILE", path)]);
        assert_eq!(env.get("X").expect("ok").as_deref(), Some("from-file"));
        let env = Env::from_pairs([("X", "direct"), ("X_FILE", "")]);
        assert_eq!(env.get("X").expect("ok").as_deref(), Some("direct"));
    }

    #[test]
    fn without_drops_both_forms_and_file_of_names_the_file() {
        let env = Env::from_pairs([("X_FILE", "/run/secrets/x"), ("Y", "1")]);
        assert_eq!(env.file_of("X").as_deref(), Some("/run/secrets/x"));
        assert_eq!(env.file_of("Y"), None);
        let err = env.get("X").expect_err("missing file");
        assert_eq!(err.name(), "X");
        let env = env.without("X");
        assert_eq!(env.get("X").expect("unset"), None);
        assert_eq!(env.get("Y").expect("kept").as_deref(), Some("1"));
    }

    #[test]
    fn missing_file_names_variable_and_path() {
        let env = Env::from_pairs([("X_FILE", "/nonexistent/secret")]);
        let err = env.get("X").expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("X_FILE=/nonexistent/secret"), "{msg}");
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
        let env = Env::from_pairs([("B", "maybe")]);
        let err = env.bool("B", true).expect_err("bad bool");
        assert!(err.to_string().starts_with("B=\"maybe\""), "{err}");
    }
}
