//! Every declared setting (proxy and app) is documented where users read it: README's tables with
//! the declared default, `docker-compose.yml`'s anchors, `docker-stack.yml`'s, and the k8s
//! ConfigMaps, each listing exactly the declared settings; a value other than the default says
//! why in a comment on its line. And a variable's name is written in one source file only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::setting::Meta;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn declared() -> Vec<Meta> {
    proxy::settings::ALL
        .iter()
        .chain(app::config::ALL)
        .copied()
        .collect()
}

fn is_setting(name: &str) -> bool {
    (name.starts_with("PROXY_") || name.starts_with("APP_") || name == "LOG_RETENTION")
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// `| `NAME` | default | …` rows of README's tables: (name, default cell).
fn readme_rows(readme: &str) -> Vec<(String, String)> {
    readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let default = cells.get(2)?;
            is_setting(name).then(|| (name.to_owned(), default.to_string()))
        })
        .collect()
}

/// Every problem of README's tables against the declarations.
fn readme_problems(readme: &str, all: &[Meta]) -> Vec<String> {
    let rows = readme_rows(readme);
    let mut problems = Vec::new();
    for m in all {
        if !rows.iter().any(|(n, _)| n == m.name) {
            problems.push(format!(
                "README: {} has no row in the settings tables",
                m.name
            ));
        }
    }
    for (name, cell) in &rows {
        let Some(m) = all.iter().find(|m| m.name == name) else {
            problems.push(format!("README: {name} is documented but not declared"));
            continue;
        };
        let ok = match m.default {
            "" => cell.starts_with("*(") && cell.ends_with(")*"),
            d => *cell == format!("`{d}`"),
        };
        if !ok {
            problems.push(format!(
                "README: {name}: default cell {cell} is not the declared default {:?} \
                 (an empty default is written *(…)*)",
                m.default
            ));
        }
    }
    problems
}

/// `NAME: value  # comment` lines between `start` and the next blank line (or `---`).
fn yaml_settings(text: &str, start: &str) -> Vec<(String, String, bool)> {
    let Some(rest) = text.split(start).nth(1) else {
        return Vec::new();
    };
    rest.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && l.trim() != "---")
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            if !is_setting(name) {
                return None;
            }
            let (value, comment) = match value.split_once(" #") {
                Some((v, c)) => (v, !c.trim().is_empty()),
                None => (value, false),
            };
            let value = value.trim().trim_matches('"').to_owned();
            Some((name.to_owned(), value, comment))
        })
        .collect()
}

/// Every problem of one environment block against the declarations with `prefix`.
fn block_problems(file: &str, block: &str, prefix: &str, all: &[Meta]) -> Vec<String> {
    let text = read(file);
    let found = yaml_settings(&text, block);
    let want: BTreeSet<&str> = all
        .iter()
        .map(|m| m.name)
        .filter(|n| n.starts_with(prefix) || (prefix == "PROXY_" && *n == "LOG_RETENTION"))
        .collect();
    let have: BTreeSet<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut problems: Vec<String> = want
        .difference(&have)
        .map(|n| format!("{file} {block}: {n} is missing"))
        .chain(
            have.difference(&want)
                .map(|n| format!("{file} {block}: {n} is not a declared setting")),
        )
        .collect();
    for (name, value, commented) in &found {
        let Some(m) = all.iter().find(|m| m.name == name) else {
            continue;
        };
        if value != m.default && !commented {
            problems.push(format!(
                "{file}: {name}: {value:?} is not the default {:?} and no comment says why",
                m.default
            ));
        }
    }
    problems
}

#[test]
fn every_declared_setting_is_documented_with_its_default() {
    let all = declared();
    let mut problems = readme_problems(&read("README.md"), &all);
    for (file, block, prefix) in [
        ("docker-compose.yml", "x-app-environment:", "APP_"),
        ("docker-compose.yml", "x-proxy-environment:", "PROXY_"),
        ("docker-stack.yml", "x-app-environment:", "APP_"),
        ("docker-stack.yml", "x-proxy-environment:", "PROXY_"),
        ("deploy/k8s/app.yaml", "name: app-environment", "APP_"),
        ("deploy/k8s/proxy.yaml", "name: proxy-environment", "PROXY_"),
    ] {
        problems.extend(block_problems(file, block, prefix, &all));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself fails on an undocumented setting and on a wrong default.
#[test]
fn an_undocumented_setting_or_a_wrong_default_is_found() {
    let mut all = declared();
    all.push(Meta {
        name: "PROXY_NEW_THING",
        default: "1s",
        help: "new",
        secret: false,
    });
    let readme = read("README.md");
    let problems = readme_problems(&readme, &all);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("PROXY_NEW_THING has no row")),
        "{problems:?}"
    );
    let wrong = readme.replace(
        "| `PROXY_UPSTREAM_TIMEOUT` | `60s` |",
        "| `PROXY_UPSTREAM_TIMEOUT` | `30s` |",
    );
    assert!(
        readme_problems(&wrong, &declared())
            .iter()
            .any(|p| p.contains("PROXY_UPSTREAM_TIMEOUT: default cell `30s`")),
    );
    let compose = "x-proxy-environment: &p\n  PROXY_LOG: debug\n\n";
    assert_eq!(
        yaml_settings(compose, "x-proxy-environment:"),
        [("PROXY_LOG".into(), "debug".into(), false)]
    );
}

/// Lines of `file` outside test code: up to its `#[cfg(test)]`; none for a test file.
fn code_lines(path: &Path) -> Vec<String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name == "tests.rs" || name.ends_with("_tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(str::to_owned)
        .collect()
}

/// Files under `dir` with `prefix` inside a string literal (an odd number of quotes before it).
fn files_naming(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let quoted = code_lines(&path).iter().any(|line| {
                    line.match_indices(prefix)
                        .any(|(i, _)| line[..i].replace("\\\"", "").matches('"').count() % 2 == 1)
                });
                if quoted {
                    out.push(path);
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_variable_name_is_written_in_one_source_file() {
    let proxy = files_naming(&root().join("crates/proxy/src"), "PROXY_");
    assert_eq!(
        proxy,
        [root().join("crates/proxy/src/config/settings.rs")],
        "PROXY_ names belong in config/settings.rs only"
    );
    let app = files_naming(&root().join("crates/app/src"), "APP_");
    assert_eq!(app, [root().join("crates/app/src/config.rs")]);
}
