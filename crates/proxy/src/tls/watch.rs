//! Reload triggers for [`CertStore`] besides SIGHUP (which `signals` owns): the shared folder
//! watch (`crate::watch`) on the keypair's folder(s) and a daily expiry check. Each reload
//! re-reads through the configured paths; a refused pair is logged and the previous one keeps
//! serving.

use std::time::Duration;

use common::tls::CertInfo;
use time::OffsetDateTime;

use super::store::{CertStore, EXPIRY_WARNING_DAYS, Reloaded, fmt_time};
use crate::config::TlsFiles;
use crate::watch::{Periodic, Reload};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Reload for CertStore {
    const WHAT: &'static str = "TLS keypair";

    /// The pair's files.
    fn watched(&self) -> Vec<std::path::PathBuf> {
        vec![self.files().cert.clone(), self.files().key.clone()]
    }

    fn reload_logged(&self, trigger: &str) {
        CertStore::reload_logged(self, trigger);
    }

    /// A daily warning about an upcoming expiry.
    fn every(&self) -> Periodic<Self> {
        Some((DAY, CertStore::check_expiry))
    }
}

impl CertStore {
    /// Reload and log the outcome; `trigger` says what caused it (`SIGHUP`, `folder change`).
    pub fn reload_logged(&self, trigger: &str) {
        let was_refused = self.last_reload_error().is_some();
        match self.reload() {
            Ok(Reloaded::Changed {
                previous_fingerprint,
                info,
                warnings,
            }) => {
                tracing::info!(
                    "TLS keypair reloaded ({trigger}): subject {}, SANs [{}], valid until {}, \
                     SHA-256 fingerprint {} (was {previous_fingerprint})",
                    info.subject,
                    info.sans.join(", "),
                    fmt_time(info.not_after),
                    info.fingerprint,
                );
                for w in warnings {
                    tracing::warn!("{w}");
                }
            }
            Ok(Reloaded::Unchanged) if was_refused => tracing::info!(
                "TLS keypair files are valid again ({trigger}), still the pair served: SHA-256 \
                 fingerprint {}",
                self.fingerprint()
            ),
            Ok(Reloaded::Unchanged) => tracing::debug!("TLS keypair unchanged ({trigger})"),
            Err(e) => tracing::error!(
                "new TLS keypair refused ({trigger}), still serving SHA-256 fingerprint {}: {e}",
                self.fingerprint()
            ),
        }
    }

    /// Warn when the served certificate expires within [`EXPIRY_WARNING_DAYS`].
    fn check_expiry(&self) {
        match expiry_notice(&self.info(), self.files(), OffsetDateTime::now_utc()) {
            Some((true, text)) => tracing::error!("{text}"),
            Some((false, text)) => tracing::warn!("{text}"),
            None => {}
        }
    }
}

/// The daily notice for the served leaf, if any: `(expired, text)`.
fn expiry_notice(info: &CertInfo, files: &TlsFiles, now: OffsetDateTime) -> Option<(bool, String)> {
    let cert = files.cert.display();
    let days_left = (info.not_after - now).whole_days();
    if info.expired_at(now) {
        Some((
            true,
            format!(
                "the served TLS certificate ({cert}) expired on {}; replace the pair",
                fmt_time(info.not_after)
            ),
        ))
    } else if days_left < EXPIRY_WARNING_DAYS {
        Some((
            false,
            format!(
                "the served TLS certificate ({cert}) expires in {days_left} days (on {}); \
                 replace the pair soon",
                fmt_time(info.not_after)
            ),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Arc;

    use std::path::Path;
    use std::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    use testkit::Pair;

    fn open(files: TlsFiles) -> Arc<CertStore> {
        CertStore::open(files, common::tls::provider()).expect("open")
    }

    /// A store on pair `a` in a fresh folder, with its watcher running.
    fn watched(dir: &Path, a: &Pair) -> (Arc<CertStore>, CancellationToken) {
        fs::write(dir.join("localhost.crt"), &a.cert).expect("write cert");
        fs::write(dir.join("localhost.key"), &a.key).expect("write key");
        let store = open(TlsFiles::in_dir(dir));
        let stop = CancellationToken::new();
        crate::watch::spawn_reloader(Arc::clone(&store), stop.clone());
        (store, stop)
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < DEADLINE, "gave up waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_fingerprint(store: &CertStore, want: &str) {
        wait_for("the new fingerprint", || store.fingerprint() == want).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_place_write_is_picked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (Pair::new("a.test"), Pair::new("b.test"));
        let (store, stop) = watched(dir.path(), &a);
        fs::write(dir.path().join("localhost.crt"), &b.cert).expect("write");
        fs::write(dir.path().join("localhost.key"), &b.key).expect("write");
        wait_fingerprint(&store, &b.fingerprint).await;
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rename_over_is_picked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (Pair::new("a.test"), Pair::new("b.test"));
        let (store, stop) = watched(dir.path(), &a);
        for (name, text) in [("localhost.key", &b.key), ("localhost.crt", &b.cert)] {
            let tmp = dir.path().join(format!("{name}.new"));
            fs::write(&tmp, text).expect("write");
            fs::rename(&tmp, dir.path().join(name)).expect("rename");
        }
        wait_fingerprint(&store, &b.fingerprint).await;
        stop.cancel();
    }

    /// Kubernetes secret volumes: `name -> ..data/name`, `..data -> ..<timestamp>`, and an update
    /// renames a new `..data` symlink over the old one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kubernetes_symlink_swap_is_picked_up_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let publish = |version: &str, p: &Pair| {
            let v = root.join(version);
            fs::create_dir(&v).expect("mkdir");
            fs::write(v.join("localhost.crt"), &p.cert).expect("write");
            fs::write(v.join("localhost.key"), &p.key).expect("write");
            std::os::unix::fs::symlink(version, root.join("..data_tmp")).expect("symlink");
            fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap");
        };
        let (a, b, c) = (
            Pair::new("a.test"),
            Pair::new("b.test"),
            Pair::new("c.test"),
        );
        publish("..v1", &a);
        for name in ["localhost.crt", "localhost.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).expect("link");
        }
        let store = open(TlsFiles::in_dir(root));
        assert_eq!(store.fingerprint(), a.fingerprint);
        let stop = CancellationToken::new();
        crate::watch::spawn_reloader(Arc::clone(&store), stop.clone());
        publish("..v2", &b);
        fs::remove_dir_all(root.join("..v1")).expect("rm old");
        wait_fingerprint(&store, &b.fingerprint).await;
        publish("..v3", &c);
        fs::remove_dir_all(root.join("..v2")).expect("rm old");
        wait_fingerprint(&store, &c.fingerprint).await;
        stop.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broken_pair_is_refused_then_a_good_one_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (
            Pair::new("a.test"),
            Pair::new("b.test"),
            Pair::new("c.test"),
        );
        let (store, stop) = watched(dir.path(), &a);
        // Mismatched: b's certificate with c's key.
        fs::write(dir.path().join("localhost.crt"), &b.cert).expect("write");
        fs::write(dir.path().join("localhost.key"), &c.key).expect("write");
        wait_for("the refusal", || store.last_reload_error().is_some()).await;
        let err = store.last_reload_error().unwrap_or_default();
        assert!(
            err.contains("PROXY_TLS_KEY=") && err.contains("does not match"),
            "{err}"
        );
        assert_eq!(store.fingerprint(), a.fingerprint);
        fs::write(dir.path().join("localhost.crt"), &c.cert).expect("write");
        wait_fingerprint(&store, &c.fingerprint).await;
        assert_eq!(store.last_reload_error(), None);
        stop.cancel();
    }

    #[test]
    fn daily_check_warns_within_14_days_and_errors_once_expired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(TlsFiles::in_dir(dir.path()));
        let (info, files) = (store.info(), store.files());
        let at = |days_before_end: i64| info.not_after - time::Duration::days(days_before_end);
        assert_eq!(expiry_notice(&info, files, at(30)), None);
        let (expired, text) = expiry_notice(&info, files, at(10)).expect("warning");
        assert!(!expired && text.contains("expires in 10 days"), "{text}");
        let (expired, text) = expiry_notice(&info, files, at(-1)).expect("error");
        assert!(expired && text.contains("expired on"), "{text}");
    }
}
