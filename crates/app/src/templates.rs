//! The page template: built in, or a folder loaded once (production) or watched and re-read on
//! every save (development, like Flask's debug reloader).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use minijinja::Environment;
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};

use crate::config::{Mode, TEMPLATES};

/// The name of the page template inside the folder.
pub const INDEX: &str = "index.txt";

/// The default page, compiled in from the repo's live copy.
pub const BUILTIN_INDEX: &str = include_str!("../../../conf/app/templates/index.txt");

/// A template problem that stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{TEMPLATES}={}: not a readable folder: {source}", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{TEMPLATES}={}: {}", path.display(), describe(source))]
    Broken {
        path: PathBuf,
        #[source]
        source: minijinja::Error,
    },
    #[error("{TEMPLATES}={}: cannot watch the folder: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify_debouncer_full::notify::Error,
    },
}

/// "index.txt line 3: syntax error: unexpected end of input" plus minijinja's source excerpt.
pub fn describe(err: &minijinja::Error) -> String {
    let mut out = String::new();
    match (err.name(), err.line()) {
        (Some(name), Some(line)) => out.push_str(&format!("{name} line {line}: ")),
        (Some(name), None) => out.push_str(&format!("{name}: ")),
        _ => {}
    }
    out.push_str(&err.kind().to_string());
    if let Some(detail) = err.detail() {
        out.push_str(": ");
        out.push_str(detail);
    }
    out
}

/// The current template set; cheap to clone, swapped atomically on reload.
#[derive(Clone)]
pub struct Templates {
    env: Arc<ArcSwap<Environment<'static>>>,
    folder: Option<PathBuf>,
    /// Keeps the watcher alive while the templates are in use.
    _watcher: Option<Arc<dyn Send + Sync>>,
}

impl Templates {
    /// Load the built-in template or the folder. In production a broken template is an error;
    /// in development it is reported on the page until fixed, and the folder is watched.
    pub fn load(
        folder: Option<&Path>,
        mode: Mode,
        debounce: Duration,
    ) -> Result<Self, TemplateError> {
        let Some(folder) = folder else {
            let mut env = Environment::new();
            env.set_keep_trailing_newline(true);
            env.add_template(INDEX, BUILTIN_INDEX)
                .map_err(|source| TemplateError::Broken {
                    path: PathBuf::from("(built-in)"),
                    source,
                })?;
            return Ok(Templates {
                env: Arc::new(ArcSwap::from_pointee(env)),
                folder: None,
                _watcher: None,
            });
        };
        std::fs::read_dir(folder).map_err(|source| TemplateError::Folder {
            path: folder.to_owned(),
            source,
        })?;
        let env = folder_env(folder);
        if mode == Mode::Production {
            env.get_template(INDEX)
                .map_err(|source| TemplateError::Broken {
                    path: folder.to_owned(),
                    source,
                })?;
        }
        let shared = Arc::new(ArcSwap::from_pointee(env));
        let watcher = match mode {
            Mode::Production => None,
            Mode::Development => Some(watch(folder, shared.clone(), debounce)?),
        };
        Ok(Templates {
            env: shared,
            folder: Some(folder.to_owned()),
            _watcher: watcher,
        })
    }

    /// Render the page with `ctx`; the error (file, line, message) on failure.
    pub fn render(&self, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
        let env = self.env.load();
        env.get_template(INDEX)?.render(ctx)
    }

    /// The watched or loaded folder, if any.
    pub fn folder(&self) -> Option<&Path> {
        self.folder.as_deref()
    }
}

/// A fresh environment that reads templates from `folder` on first use (and caches them).
fn folder_env(folder: &Path) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_loader(minijinja::path_loader(folder));
    env
}

/// Watch the folder (not the files: editors save by rename) and swap in a fresh environment on
/// every change, so the next request re-reads the template.
fn watch(
    folder: &Path,
    shared: Arc<ArcSwap<Environment<'static>>>,
    debounce: Duration,
) -> Result<Arc<dyn Send + Sync>, TemplateError> {
    let dir = folder.to_owned();
    let watch_err = |source| TemplateError::Watch {
        path: folder.to_owned(),
        source,
    };
    let mut debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| match res {
        Ok(events)
            if events
                .iter()
                .any(|e| e.kind.is_modify() || e.kind.is_create() || e.kind.is_remove()) =>
        {
            shared.store(Arc::new(folder_env(&dir)));
            tracing::info!(folder = %dir.display(), "templates changed; reloaded");
        }
        Ok(_) => {}
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "template watcher error");
            }
        }
    })
    .map_err(watch_err)?;
    debouncer
        .watch(folder, RecursiveMode::NonRecursive)
        .map_err(watch_err)?;
    Ok(Arc::new(std::sync::Mutex::new(debouncer)))
}
