//! The static-file and compression settings: `PROXY_STATIC` (prefix → folder pairs),
//! `PROXY_STATIC_CACHE_CONTROL`, `PROXY_COMPRESSION` (codings in server preference),
//! `PROXY_COMPRESSION_MIN_SIZE` and `PROXY_COMPRESSION_UPSTREAM`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use common::env::{Env, EnvError};
use http::HeaderValue;

use super::settings::{
    COMPRESSION, COMPRESSION_MIN_SIZE, COMPRESSION_UPSTREAM, STATIC, STATIC_CACHE_CONTROL,
};

common::value_from_str!(StaticRoots, Codings, Header);

/// Files the proxy serves itself, never forwarded.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// `PROXY_STATIC`, longest prefix first.
    pub roots: Vec<StaticRoot>,
    /// `PROXY_STATIC_CACHE_CONTROL`
    pub cache_control: HeaderValue,
}

/// One `PREFIX=DIR` pair: `/static/x.css` is `DIR/x.css` (nginx `alias`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoot {
    /// Starts and ends with `/`.
    pub prefix: String,
    /// An absolute path.
    pub dir: PathBuf,
}

/// Why a static root cannot serve (for start-up warnings and `proxy check`).
#[derive(Debug, thiserror::Error)]
#[error("{STATIC}: {prefix}={}: {reason}", dir.display())]
pub struct StaticRootProblem {
    pub prefix: String,
    pub dir: PathBuf,
    pub reason: String,
}

/// On-the-fly compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// `PROXY_COMPRESSION`: server preference; empty is `off`.
    pub codings: Vec<Coding>,
    /// `PROXY_COMPRESSION_MIN_SIZE`: smaller bodies (when their length is known) go as they are.
    pub min_size: u64,
    /// `PROXY_COMPRESSION_UPSTREAM`: compress the app's answers too (BREACH: off by default).
    pub upstream: bool,
}

/// A content coding the proxy knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Zstd,
    Br,
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of a precompressed sibling (`app.js.br`).
    pub fn extension(self) -> &'static str {
        match self {
            Coding::Zstd => ".zst",
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// Whether the proxy can encode it on the fly (brotli does not fit the image budget: only
    /// precompressed `.br` siblings are served).
    pub fn on_the_fly(self) -> bool {
        !matches!(self, Coding::Br)
    }
}

impl StaticFiles {
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Ok(StaticFiles {
            roots: env.read(&STATIC)?.0,
            cache_control: env.read(&STATIC_CACHE_CONTROL)?.0,
        })
    }

    /// The root whose prefix `path` (normalised) starts with, and the rest of the path.
    pub fn route<'a>(&self, path: &'a str) -> Option<(&StaticRoot, &'a str)> {
        self.roots
            .iter()
            .find_map(|root| path.strip_prefix(&root.prefix).map(|rest| (root, rest)))
    }

    /// Every root that is not an existing folder (the proxy serves on; such a root answers 404).
    pub fn check(&self) -> Vec<StaticRootProblem> {
        self.roots.iter().filter_map(StaticRoot::check).collect()
    }
}

impl StaticRoot {
    /// `None` when the folder exists and is a folder.
    pub fn check(&self) -> Option<StaticRootProblem> {
        let reason = match std::fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => return None,
            Ok(_) => "not a folder".to_owned(),
            Err(e) => e.to_string(),
        };
        Some(StaticRootProblem {
            prefix: self.prefix.clone(),
            dir: self.dir.clone(),
            reason,
        })
    }
}

impl Compression {
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Ok(Compression {
            codings: env.read(&COMPRESSION)?.0,
            min_size: env.read(&COMPRESSION_MIN_SIZE)?.0,
            upstream: env.read(&COMPRESSION_UPSTREAM)?,
        })
    }
}

/// `PROXY_STATIC`: `/static/=/srv/static,/media/=/srv/media`; empty: no static files.
pub struct StaticRoots(pub Vec<StaticRoot>);

impl FromStr for StaticRoots {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut roots: Vec<StaticRoot> = Vec::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (prefix, dir) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair}: expected PREFIX=DIR, e.g. /static/=/srv/static"))?;
            let (prefix, dir) = (prefix.trim(), Path::new(dir.trim()));
            if !prefix.starts_with('/') || prefix.contains(['?', '#', '%', '\\']) {
                return Err(format!(
                    "{pair}: the prefix must be a plain path starting with /"
                ));
            }
            if prefix.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(format!("{pair}: the prefix has a dot segment"));
            }
            if !dir.is_absolute() {
                return Err(format!("{pair}: the folder must be an absolute path"));
            }
            let mut prefix = prefix.to_owned();
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            if roots.iter().any(|r| r.prefix == prefix) {
                return Err(format!("{prefix}: named twice"));
            }
            roots.push(StaticRoot {
                prefix,
                dir: dir.to_path_buf(),
            });
        }
        roots.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(StaticRoots(roots))
    }
}

/// `PROXY_COMPRESSION`: `zstd,br,gzip` (any order, a subset) or `off`.
pub struct Codings(pub Vec<Coding>);

impl FromStr for Codings {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("false") || s.is_empty() {
            return Ok(Codings(Vec::new()));
        }
        let mut out = Vec::new();
        for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let coding = match token.to_ascii_lowercase().as_str() {
                "zstd" => Coding::Zstd,
                "br" => Coding::Br,
                "gzip" => Coding::Gzip,
                _ => return Err(format!("{token}: expected zstd, br, gzip, or off")),
            };
            if out.contains(&coding) {
                return Err(format!("{token}: named twice"));
            }
            out.push(coding);
        }
        Ok(Codings(out))
    }
}

/// A header value setting.
pub struct Header(pub HeaderValue);

impl FromStr for Header {
    type Err = http::header::InvalidHeaderValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HeaderValue::from_str(s.trim()).map(Header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_roots_parse_longest_prefix_first() {
        let roots: StaticRoots = "/static/=/srv/static, /static/img=/srv/img"
            .parse()
            .expect("parses");
        assert_eq!(roots.0[0].prefix, "/static/img/");
        assert_eq!(roots.0[1].dir, Path::new("/srv/static"));
        let files = StaticFiles {
            roots: roots.0,
            cache_control: HeaderValue::from_static("no-cache"),
        };
        let (root, rest) = files.route("/static/img/a.png").expect("routed");
        assert_eq!((root.dir.as_path(), rest), (Path::new("/srv/img"), "a.png"));
        assert!(files.route("/staticx").is_none());
        assert!(files.route("/static").is_none());
        for bad in [
            "static=/srv",
            "/s/=rel",
            "/s/",
            "/a/=/x,/a=/y",
            "/../=/x",
            "/%2e/=/x",
        ] {
            assert!(bad.parse::<StaticRoots>().is_err(), "{bad}");
        }
    }

    #[test]
    fn check_names_roots_that_are_not_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let spec = format!(
            "/ok/={},/file/={},/gone/={}",
            dir.path().display(),
            file.display(),
            dir.path().join("gone").display()
        );
        let files = StaticFiles {
            roots: spec.parse::<StaticRoots>().expect("parses").0,
            cache_control: HeaderValue::from_static("no-cache"),
        };
        let problems: Vec<String> = files.check().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("/file/=") && p.contains("not a folder"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("PROXY_STATIC: /gone/="))
        );
    }

    #[test]
    fn codings_parse_in_server_order() {
        let c: Codings = "gzip, ZSTD".parse().expect("parses");
        assert_eq!(c.0, vec![Coding::Gzip, Coding::Zstd]);
        assert!("off".parse::<Codings>().expect("off").0.is_empty());
        assert!("gzip,deflate".parse::<Codings>().is_err());
        assert!("gzip,gzip".parse::<Codings>().is_err());
        let default: Codings = COMPRESSION.meta.default.parse().expect("the default");
        assert_eq!(default.0.len(), 3);
    }
}
