//! From a request path to a file that is certainly inside its root: percent-decoding, refusal of
//! encoded separators, NUL, dot segments and dotfiles, symlinks resolved (the real path must stay
//! under the real root), folders to their `index.html`, and the precompressed sibling (`.zst`,
//! `.br`, `.gz`) the client accepts, checked the same way. Blocking file-system calls: run on
//! the blocking pool, once per request.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::config::Coding;

/// The file a request names.
#[derive(Debug)]
pub struct Found {
    /// The real path of the file to send (the sibling when one is chosen).
    pub path: PathBuf,
    pub meta: Metadata,
    /// The real path of the file the request named (its extension gives the type).
    pub named: PathBuf,
    /// The coding of the precompressed sibling sent instead, if any.
    pub coding: Option<Coding>,
}

/// What a request path comes to.
#[derive(Debug)]
pub enum Resolved {
    File(Box<Found>),
    /// A folder with an `index.html`, named without the trailing `/`: redirect to add it.
    AddSlash,
    /// Nothing to serve (also: anything outside the root, a dotfile, a folder without index).
    NotFound,
    /// The file exists but the proxy may not read it.
    Forbidden,
}

/// Resolve `rest` (the request path after the root's prefix, still percent-encoded) under
/// `dir`. `siblings`: the precompressed codings the client accepts, best first.
pub fn resolve(dir: &Path, rest: &str, siblings: &[Coding]) -> Resolved {
    let Some(relative) = relative_path(rest) else {
        return Resolved::NotFound;
    };
    let root = match std::fs::canonicalize(dir) {
        Ok(root) => root,
        Err(e) => return miss(&e),
    };
    // Siblings sit next to the name asked for (an index: next to it).
    let mut base = root.join(&relative);
    let (mut named, mut meta) = match inside(&root, &base) {
        Ok(found) => found,
        Err(e) => return miss(&e),
    };
    let slash = rest.is_empty() || rest.ends_with('/');
    let folder = meta.is_dir();
    if folder {
        base = named.join("index.html");
        match inside(&root, &base) {
            Ok((_, m)) if m.is_file() && !slash => {
                return Resolved::AddSlash;
            }
            Ok((path, m)) => (named, meta) = (path, m),
            Err(e) => return miss(&e),
        }
    }
    if !meta.is_file() || (slash && !folder) {
        // A file named as a folder (`a.txt/`), a folder without an index, FIFOs, sockets and
        // devices are never read.
        return Resolved::NotFound;
    }
    for &coding in siblings {
        let mut name = base.clone().into_os_string();
        name.push(coding.extension());
        if let Ok((path, m)) = inside(&root, Path::new(&name))
            && m.is_file()
        {
            return Resolved::File(Box::new(Found {
                path,
                meta: m,
                named,
                coding: Some(coding),
            }));
        }
    }
    Resolved::File(Box::new(Found {
        path: named.clone(),
        meta,
        named,
        coding: None,
    }))
}

/// The decoded relative path, or `None` when it is refused: an encoded `/` or `\`, a NUL, a
/// backslash, a dot segment, a dotfile (any segment starting with `.`).
fn relative_path(rest: &str) -> Option<PathBuf> {
    let lower = rest.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return None;
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(rest).collect();
    if decoded.contains(&0) || decoded.contains(&b'\\') {
        return None;
    }
    let mut out = PathBuf::new();
    for segment in decoded.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        if segment.starts_with(b".") {
            return None;
        }
        out.push(OsStr::from_bytes(segment));
    }
    // `out` holds normal components only: no root, no prefix, no dot.
    out.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(out)
}

/// The real path of `path` and its metadata, when it stays under `root` (itself real) and no
/// component below the root is a dotfile; `NotFound` otherwise.
fn inside(root: &Path, path: &Path) -> io::Result<(PathBuf, Metadata)> {
    let real = std::fs::canonicalize(path)?;
    let below = real
        .strip_prefix(root)
        .map_err(|_| io::Error::from(io::ErrorKind::NotFound))?;
    let dotted = below
        .components()
        .any(|c| c.as_os_str().as_bytes().starts_with(b"."));
    if dotted {
        return Err(io::ErrorKind::NotFound.into());
    }
    let meta = std::fs::metadata(&real)?;
    Ok((real, meta))
}

fn miss(e: &io::Error) -> Resolved {
    if e.kind() == io::ErrorKind::PermissionDenied {
        Resolved::Forbidden
    } else {
        Resolved::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_paths() {
        for rest in [
            "a%2fb",
            "a%2Fb",
            "a%5cb",
            "a\\b",
            "a%00b",
            ".env",
            "a/.git/config",
            "%2e%2e/x",
            "a/%2ehidden",
        ] {
            assert!(relative_path(rest).is_none(), "{rest}");
        }
        assert_eq!(
            relative_path("css//a%20b.css").expect("ok"),
            PathBuf::from("css/a b.css")
        );
        assert_eq!(relative_path("").expect("ok"), PathBuf::new());
    }
}
