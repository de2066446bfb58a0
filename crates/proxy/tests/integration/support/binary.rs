//! The real `proxy` binary as a child process: keypair and logs in fresh temp folders, listeners
//! on 127.0.0.1:0, the HTTPS address read off its "proxy listening" line, its later stdout
//! forwarded line by line (so it never blocks on a full pipe). Dropping it kills the child.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;

/// A running `proxy` binary.
pub struct SpawnedProxy {
    pub child: Child,
    pub https: SocketAddr,
    /// The folder given as `PROXY_LOG_DIR`.
    pub log_dir: PathBuf,
    /// The keypair folder (`localhost.crt`/`localhost.key`, generated on start).
    pub tls_dir: PathBuf,
    /// stdout up to and including the "proxy listening" line.
    pub startup: String,
    /// Every later stdout line, in order; closed once the child's stdout ends.
    pub lines: UnboundedReceiver<String>,
    _temp: tempfile::TempDir,
}

/// Start the binary with these settings on top of the defaults (listeners on 127.0.0.1:0, temp
/// keypair and log folders, `LOG_RETENTION=false`, `PROXY_LOG=info`, `NO_COLOR=1`; nothing else
/// from this process's environment) and wait until it listens.
pub async fn spawn_proxy(envs: &[(&str, &str)]) -> SpawnedProxy {
    start(Command::new(env!("CARGO_BIN_EXE_proxy")), envs).await
}

/// As [`spawn_proxy`], under `ulimit -n fd_limit`.
pub async fn spawn_proxy_with_fd_limit(fd_limit: u32, envs: &[(&str, &str)]) -> SpawnedProxy {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {fd_limit} && exec \"$0\""))
        .arg(env!("CARGO_BIN_EXE_proxy"));
    start(cmd, envs).await
}

async fn start(mut cmd: Command, envs: &[(&str, &str)]) -> SpawnedProxy {
    let temp = tempfile::tempdir().expect("tempdir");
    let (log_dir, tls_dir) = (temp.path().join("logs"), temp.path().join("tls"));
    std::fs::create_dir(&log_dir).expect("mkdir");
    std::fs::create_dir(&tls_dir).expect("mkdir");
    cmd.env_clear()
        .envs([
            ("PROXY_HTTP_LISTEN", "127.0.0.1:0"),
            ("PROXY_HTTPS_LISTEN", "127.0.0.1:0"),
            ("LOG_RETENTION", "false"),
            ("PROXY_LOG", "info"),
            ("NO_COLOR", "1"),
        ])
        .env("PROXY_TLS_CERT", tls_dir.join("localhost.crt"))
        .env("PROXY_TLS_KEY", tls_dir.join("localhost.key"))
        .env("PROXY_LOG_DIR", &log_dir)
        // Later settings of the same name win.
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start the proxy binary");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut startup = String::new();
    let https = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = stdout.next_line().await.expect("stdout") {
            startup.push_str(&line);
            startup.push('\n');
            if line.contains("proxy listening")
                && let Some((_, rest)) = line.split_once(" https=")
            {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                return addr.parse::<SocketAddr>().expect("https addr");
            }
        }
        panic!("the proxy exited before listening:\n{startup}");
    })
    .await
    .expect("the proxy starts listening");
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let _ = tx.send(line);
        }
    });
    SpawnedProxy {
        child,
        https,
        log_dir,
        tls_dir,
        startup,
        lines,
        _temp: temp,
    }
}

impl SpawnedProxy {
    /// `https://localhost:PORT{path}` on the HTTPS listener.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.https.port(), path)
    }

    /// Send `sig` to the child.
    pub fn signal(&self, sig: rustix::process::Signal) {
        let raw = i32::try_from(self.child.id().expect("running")).expect("pid");
        let pid = rustix::process::Pid::from_raw(raw).expect("pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    /// Wait for the child to exit (after a signal), at most `within`.
    pub async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("the proxy exits in time")
            .expect("wait")
    }

    /// Take stdout lines until one contains `needle` (true) or `within` passes or stdout ends
    /// (false); also the lines taken, for the failure message.
    pub async fn wait_for_line(&mut self, needle: &str, within: Duration) -> (bool, String) {
        let mut taken = String::new();
        let found = tokio::time::timeout(within, async {
            while let Some(line) = self.lines.recv().await {
                taken.push_str(&line);
                taken.push('\n');
                if line.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        (found, taken)
    }

    /// The stdout lines not yet taken from [`SpawnedProxy::lines`], up to the end of stdout
    /// (call it once the child has exited).
    pub async fn rest_of_stdout(&mut self) -> String {
        let mut rest = String::new();
        while let Some(line) = self.lines.recv().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    }
}

impl Drop for SpawnedProxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
