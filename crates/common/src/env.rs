//! Settings from environment variables, each also accepted as `NAME_FILE` (Docker secrets).

use std::collections::HashMap;
use std::fmt::Display;
use std::path::PathBuf;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    crate::settings! {
        X: u16 = "X", "1", "a number";
    }

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
        let err = env.redact(env.read(&X).expect_err("not a number"));
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.starts_with(&format!("X_FILE={path}:")), "{text}");
        // A value set directly is still quoted: it is already in the environment.
        let env = Env::from_pairs([("X", "abc")]);
        let err = env.redact(env.read(&X).expect_err("not a number"));
        assert!(err.to_string().contains("\"abc\""), "{err}");
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
}
