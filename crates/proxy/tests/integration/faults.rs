//! Load and fault tests (issue 8), loopback only and bounded in time and count:
//! - slowloris: 300 connections (a third of them HTTP/2) trickling header bytes while normal
//!   requests keep getting 200s; the slow ones are closed at the (short) header timeout;
//! - upstream failure under load: steady requests while the app is stopped and started again;
//!   only requests overlapping the outage get 502 pages, the proxy recovers by itself;
//! - shutdown under load: the real binary gets SIGTERM with requests in flight; every one is
//!   answered, every one is in the access log, the exit status is 0.
//!
//! Each prints its numbers (sent, answered by status, lost). They run one at a time (a shared
//! lock) so their timings do not compete on small CI machines.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::binary::spawn_proxy;
use crate::support::upstream::TestUpstream;
use crate::support::{TestApp, TestProxy, eventually};
use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls(addr: SocketAddr, alpn: &[u8]) -> std::io::Result<Tls> {
    let cfg = common::client::insecure_client_config(&[alpn]).expect("client config");
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
}

/// A client that opens a new connection per request (so the proxy's keep-alive handling cannot
/// blur the counts) with a per-request bound: no answer in 10 s counts as lost.
fn fresh_client(h2: bool) -> reqwest::Client {
    let b = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10));
    let b = if h2 {
        b
    } else {
        b.http1_only().pool_max_idle_per_host(0)
    };
    b.build().expect("client")
}

/// Status counts, with `lost` for transport errors and timeouts.
#[derive(Default, Debug)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn add(&mut self, r: &Result<u16, String>) {
        let key = match r {
            Ok(s) => s.to_string(),
            Err(_) => "lost".to_owned(),
        };
        *self.0.entry(key).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }

    fn get(&self, k: &str) -> usize {
        self.0.get(k).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sent {}", self.total())?;
        for (k, v) in &self.0 {
            write!(f, ", {k}: {v}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Slowloris
// ---------------------------------------------------------------------------------------------

/// What happened to one trickling connection.
struct Slow {
    h2: bool,
    /// Closed by the proxy (EOF or reset) before we gave up.
    closed: bool,
    /// From our handshake completing to the close.
    after: Duration,
    /// Bytes the proxy wrote back (a 408 would show here).
    answer: Vec<u8>,
    trickled: usize,
}

/// HTTP/2 preface, empty SETTINGS, and the 9-byte head of a HEADERS frame whose 4 KiB block
/// (END_HEADERS, END_STREAM, stream 1) then trickles in.
fn h2_slow_start() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0x00, 0x10, 0x00, 0x1, 0x5, 0, 0, 0, 1]);
    out
}

async fn slow_connection(
    addr: SocketAddr,
    gate: Arc<tokio::sync::Semaphore>,
    h2: bool,
) -> Option<Slow> {
    let s = {
        let _permit = gate.acquire().await.expect("gate");
        tls(addr, if h2 { b"h2" } else { b"http/1.1" }).await.ok()?
    };
    let opened = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(s);
    let trickled = Arc::new(AtomicUsize::new(0));
    let count = trickled.clone();
    let writer = tokio::spawn(async move {
        let start = if h2 {
            h2_slow_start()
        } else {
            b"GET /id HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".to_vec()
        };
        if wr.write_all(&start).await.is_err() {
            return;
        }
        loop {
            if wr.write_all(b"a").await.is_err() || wr.flush().await.is_err() {
                return;
            }
            count.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let after = opened.elapsed();
    writer.abort();
    Some(Slow {
        h2,
        closed,
        after,
        answer,
        trickled: trickled.load(Ordering::Relaxed),
    })
}

/// One worker of well-behaved traffic: requests to `url` (a fresh client each, HTTP/2 or not)
/// until `done`; every status or error.
async fn normal_traffic(url: String, h2: bool, done: Arc<AtomicBool>) -> Vec<Result<u16, String>> {
    let c = fresh_client(h2);
    let mut results = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let r = c
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string());
        results.push(r);
    }
    results
}

/// Print what the slow connections met; their close times after the handshake, sorted.
fn report_slowloris(
    slow: usize,
    opened: &[&Slow],
    normal: &Tally,
    started: Instant,
) -> Vec<Duration> {
    let closed = opened.iter().filter(|s| s.closed).count();
    let answered = opened
        .iter()
        .filter(|s| !s.h2 && !s.answer.is_empty())
        .count();
    let h2_count = opened.iter().filter(|s| s.h2).count();
    let mut afters: Vec<Duration> = opened.iter().map(|s| s.after).collect();
    afters.sort();
    let trickled: usize = opened.iter().map(|s| s.trickled).sum();
    eprintln!(
        "slowloris: {slow} slow connections ({h2_count} HTTP/2), {} opened, {closed} closed by \
         the proxy (close after handshake: min {:?}, median {:?}, max {:?}), {answered} HTTP/1.1 \
         ones got bytes back \
         ({:?}), {trickled} header bytes trickled; normal requests: {normal}; took {:?}",
        opened.len(),
        afters.first(),
        afters.get(afters.len() / 2),
        afters.last(),
        opened
            .iter()
            .find(|s| !s.h2 && !s.answer.is_empty())
            .map(|s| String::from_utf8_lossy(&s.answer).into_owned()),
        started.elapsed()
    );
    afters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_while_normal_requests_keep_working() {
    let _serial = SERIAL.lock().await;
    const SLOW: usize = 300;
    let header_timeout = Duration::from_secs(1);
    let up = TestUpstream::start("a").await;
    let proxy = TestProxy::start(
        &up.addr.to_string(),
        &[
            ("PROXY_HEADER_TIMEOUT", "1s"),
            ("PROXY_KEEPALIVE_TIMEOUT", "30s"),
        ],
    )
    .await;
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let slow: Vec<_> = (0..SLOW)
        .map(|i| tokio::spawn(slow_connection(proxy.https, gate.clone(), i % 3 == 2)))
        .collect();

    // Normal traffic, two workers, until every slow connection is settled.
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = [false, true]
        .into_iter()
        .map(|h2| tokio::spawn(normal_traffic(proxy.url("/id"), h2, done.clone())))
        .collect();

    let mut outcomes = Vec::new();
    for t in slow {
        outcomes.push(t.await.expect("slow task"));
    }
    done.store(true, Ordering::SeqCst);
    let mut normal = Tally::default();
    let mut errors = Vec::new();
    for w in workers {
        for r in w.await.expect("worker") {
            normal.add(&r);
            if let Err(e) = r {
                errors.push(e);
            }
        }
    }
    let opened: Vec<&Slow> = outcomes.iter().flatten().collect();
    let closed = opened.iter().filter(|s| s.closed).count();
    let afters = report_slowloris(SLOW, &opened, &normal, started);
    assert_eq!(opened.len(), SLOW, "not every slow connection got in");
    assert_eq!(closed, SLOW, "slow connections left open");
    assert!(
        afters[0] >= header_timeout - Duration::from_millis(50),
        "closed before the header timeout: {:?}",
        afters[0]
    );
    assert!(
        opened
            .iter()
            .all(|s| s.h2 || s.answer.is_empty() || s.answer.starts_with(b"HTTP/1.1 408 ")),
        "unexpected answer to a slow header"
    );
    assert!(errors.is_empty(), "normal requests failed: {errors:?}");
    assert!(
        normal.total() >= 10,
        "too few normal requests to tell: {normal}"
    );
    assert_eq!(normal.get("200"), normal.total(), "{normal}");
}

// ---------------------------------------------------------------------------------------------
// Upstream failure under load
// ---------------------------------------------------------------------------------------------

struct Outcome {
    start: Instant,
    end: Instant,
    result: Result<u16, String>,
    page: bool,
}

/// One load worker for the outage test: requests until `done`, each with its timing and
/// whether the answer was the proxy's own page. Two workers reuse connections to the proxy
/// (HTTP/1.1 keep-alive, HTTP/2), two open a new one per request.
async fn outage_load(i: usize, url: String, done: Arc<AtomicBool>) -> Vec<Outcome> {
    let c = match i {
        0 => crate::support::client_h1(),
        1 => crate::support::client(),
        _ => fresh_client(false),
    };
    let mut out = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let start = Instant::now();
        let (result, page) = match c.get(&url).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let page = resp.headers().contains_key("x-request-id")
                    && resp
                        .headers()
                        .get("cache-control")
                        .is_some_and(|v| v == "no-store");
                match resp.bytes().await {
                    Ok(_) => (Ok(status), page),
                    Err(e) => (Err(format!("body: {e}")), page),
                }
            }
            Err(e) => (Err(e.to_string()), false),
        };
        out.push(Outcome {
            start,
            end: Instant::now(),
            result,
            page,
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

/// The outage test's requests sorted by when they ran, and what was wrong with any of them.
struct Phases {
    before: Tally,
    during: Tally,
    after: Tally,
    bad: Vec<String>,
    longest: Duration,
}

/// Before the outage and after recovery every request is a 200; overlapping it, a 200 or the
/// 502 page.
fn phases(all: &[Outcome], down_at: Instant, up_at: Instant) -> Phases {
    let mut p = Phases {
        before: Tally::default(),
        during: Tally::default(),
        after: Tally::default(),
        bad: Vec::new(),
        longest: Duration::ZERO,
    };
    for o in all {
        p.longest = p.longest.max(o.end - o.start);
        if o.end < down_at {
            p.before.add(&o.result);
            if o.result != Ok(200) {
                p.bad.push(format!("before the outage: {:?}", o.result));
            }
        } else if o.start > up_at {
            p.after.add(&o.result);
            if o.result != Ok(200) {
                p.bad.push(format!(
                    "after recovery (+{:?}): {:?}",
                    o.start - up_at,
                    o.result
                ));
            }
        } else {
            p.during.add(&o.result);
            match &o.result {
                Ok(200) => {}
                Ok(502) if o.page => {}
                other => p
                    .bad
                    .push(format!("during the outage: {other:?} (page: {})", o.page)),
            }
        }
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_outage_under_load_gives_502s_only_during_the_outage() {
    let _serial = SERIAL.lock().await;
    let mut app = TestApp::start().await;
    let addr = app.addr;
    let proxy = TestProxy::start(
        &addr.to_string(),
        &[
            ("PROXY_UPSTREAM_TIMEOUT", "5s"),
            ("PROXY_UPSTREAM_CONNECT_TIMEOUT", "1s"),
        ],
    )
    .await;
    let done = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| tokio::spawn(outage_load(i, proxy.url("/"), done.clone())))
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let down_at = Instant::now();
    app.stop().await;
    // Confirm the port is really closed.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the app still accepts"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _app = TestApp::start_on(&addr.to_string()).await;
    let up_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    done.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for w in workers {
        all.extend(
            tokio::time::timeout(Duration::from_secs(15), w)
                .await
                .expect("workers finish (nothing hangs)")
                .expect("worker"),
        );
    }

    let Phases {
        before,
        during,
        after,
        bad,
        longest,
    } = phases(&all, down_at, up_at);
    eprintln!(
        "upstream outage: before: {before}; overlapping the outage ({:?}): {during}; \
         after recovery: {after}; longest request {longest:?}",
        up_at - down_at
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(during.get("502") > 0, "no request met the outage: {during}");
    assert!(before.total() > 0 && after.total() > 0, "too little load");
}

// ---------------------------------------------------------------------------------------------
// Shutdown under load (the real binary, a real SIGTERM)
// ---------------------------------------------------------------------------------------------

/// An HTTPS upstream that holds every request until released (or 15 s), counting arrivals.
struct Gate {
    addr: SocketAddr,
    arrived: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
    stop: CancellationToken,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Gate {
    async fn start() -> Gate {
        let tls = crate::support::upstream::tls_server_config(&[b"http/1.1"]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let arrived = Arc::new(AtomicUsize::new(0));
        let (release, rx) = tokio::sync::watch::channel(false);
        let stop = CancellationToken::new();
        let count = arrived.clone();
        tokio::spawn(common::server::serve(
            listener,
            common::server::Transport::Tls(tokio_rustls::TlsAcceptor::from(tls)),
            common::server::Limits::default(),
            move |_| {
                let count = count.clone();
                let rx = rx.clone();
                hyper::service::service_fn(move |_req| {
                    let count = count.clone();
                    let mut rx = rx.clone();
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|r| *r))
                            .await;
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"done",
                        ))))
                    }
                })
            },
            stop.clone().cancelled_owned(),
        ));
        Gate {
            addr,
            arrived,
            release,
            stop,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_and_logs_every_request_and_exits_0() {
    let _serial = SERIAL.lock().await;
    const H1: usize = 30;
    const H2: usize = 30;
    let gate = Gate::start().await;
    let mut proxy = spawn_proxy(&[
        ("PROXY_UPSTREAM", &gate.addr.to_string()),
        ("PROXY_DRAIN_TIMEOUT", "20s"),
    ])
    .await;

    let h1c = fresh_client(false);
    let h2c = crate::support::client();
    let requests: Vec<_> = (0..H1 + H2)
        .map(|i| {
            let c = if i < H1 { h1c.clone() } else { h2c.clone() };
            let url = proxy.url(&format!("/work?i={i}"));
            tokio::spawn(async move {
                let r = c.get(url).send().await.map_err(|e| e.to_string())?;
                let status = r.status().as_u16();
                let body = r.text().await.map_err(|e| format!("body: {e}"))?;
                Ok::<_, String>((status, body))
            })
        })
        .collect();
    let all_in = eventually(Duration::from_secs(20), || async {
        gate.arrived.load(Ordering::SeqCst) == H1 + H2
    })
    .await;
    assert!(
        all_in,
        "only {} of {} requests reached the upstream",
        gate.arrived.load(Ordering::SeqCst),
        H1 + H2
    );

    proxy.signal(rustix::process::Signal::TERM);
    let (noticed, seen) = proxy
        .wait_for_line("SIGTERM received", Duration::from_secs(10))
        .await;
    assert!(noticed, "no 'SIGTERM received' on stdout:\n{seen}");
    // No new connections once draining (the listener is closed)...
    let refused = eventually(Duration::from_secs(5), || async {
        TcpStream::connect(proxy.https).await.is_err()
    })
    .await;
    assert!(refused, "still accepting connections while draining");
    // ...but everything in flight completes.
    let _ = gate.release.send(true);
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    for (i, t) in requests.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("answered in time (nothing hangs)")
            .expect("task");
        tally.add(&r.as_ref().map(|(s, _)| *s).map_err(Clone::clone));
        match r {
            Ok((200, body)) if body == "done" => {}
            other => problems.push(format!("request {i}: {other:?}")),
        }
    }
    let status = proxy.exit_status(Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(proxy.log_dir.join("access.log")).expect("access.log");
    let log_lines: Vec<&str> = log.lines().collect();
    let mut per_request = vec![0usize; H1 + H2];
    for l in &log_lines {
        if let Some(i) = l
            .split_once("/work?i=")
            .and_then(|(_, r)| r.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            && l.contains("\" 200 ")
        {
            per_request[i] += 1;
        }
    }
    let logged_once = per_request.iter().filter(|&&n| n == 1).count();
    eprintln!(
        "shutdown under load: {tally} (lost = no answer); {} access-log lines, {logged_once} \
         requests logged exactly once with 200; exit status {status}",
        log_lines.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(status.success(), "exit status {status}");
    assert_eq!(log_lines.len(), H1 + H2, "{log}");
    assert_eq!(logged_once, H1 + H2, "{per_request:?}");
}
