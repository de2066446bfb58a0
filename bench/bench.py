#!/usr/bin/env python3
"""Benchmark harness: our `proxy` against nginx (as the original system had it, and tuned),
HAProxy and Caddy (bench/peers.py), with the app reached directly as the ceiling. Driven by
bench/run.sh (which installs the tools and raises the open-file limit); python3 standard library
only.

Everything listens on 127.0.0.1 only. Every process started here is started in its own process
group and killed on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

import peers  # bench/peers.py
import tlsprobe  # bench/tlsprobe.py

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
WORK = os.path.join(BENCH, "work")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")

CONTENDERS = ["direct", "nginx", "nginx-tuned", "haproxy", "caddy", "proxy", "proxy-h1up"]
OURS = ("proxy", "proxy-h1up")

# A contender whose errors exceed this share of its answered + failed requests in any scenario
# fails the run (the report is still written): a contender that answers mostly errors measures
# nothing. Stated in the report's Method section.
MAX_ERROR_RATE = 0.01

# The TLS probe's load: requests over client connections (HTTP/1.1), through the relays.
PROBE_REQUESTS, PROBE_CONNS = 400, 8

# Full-run defaults (the committed results use them): rounds, seconds per run, warm-up seconds.
FULL_ROUNDS, FULL_DURATION, FULL_WARMUP = 3, 6.0, 2.0


class BenchError(Exception):
    """A contender could not start or answered nothing: the run fails."""


# --------------------------------------------------------------------------------------------
# processes


class Procs:
    """Every process group started by the harness, so they can all be killed on any exit."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen] = []
        self.containers: list[str] = []

    def start(self, name: str, argv: list[str], env: dict | None, log: str) -> subprocess.Popen:
        out = open(log, "ab")
        try:
            p = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise BenchError(f"{name}: cannot start {argv[0]}: {e}") from e
        finally:
            out.close()
        p.bench_name = name  # type: ignore[attr-defined]
        p.bench_log = log  # type: ignore[attr-defined]
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # nginx: fast shutdown; workers are in the group
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        else:
            # the leader is gone; make sure nothing it left in its group survives
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.live)):
            self.stop(p, grace=3.0)
        for c in list(self.containers):
            subprocess.run(["docker", "rm", "-f", c], capture_output=True, timeout=30)
            self.containers.remove(c)


PROCS = Procs()


def log_tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    | " + line for line in lines[-n:])
    except OSError:
        return "    | (no log)"


def https_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_ready(name: str, port: int, path: str, proc: subprocess.Popen | None, timeout: float) -> None:
    """Wait until https://127.0.0.1:port/path answers 200, or fail with the process's log."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(
                f"{name} exited with status {proc.returncode} before answering "
                f"(log {proc.bench_log}):\n{log_tail(proc.bench_log)}"  # type: ignore[attr-defined]
            )
        try:
            status, _ = https_get(port, path)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as e:
            last = str(e) or type(e).__name__
        time.sleep(0.05)
    tail = log_tail(proc.bench_log) if proc is not None else ""  # type: ignore[attr-defined]
    raise BenchError(f"{name} did not answer 200 on https://127.0.0.1:{port}{path} within {timeout:.0f}s ({last})\n{tail}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# --------------------------------------------------------------------------------------------
# /proc sampling: peak RSS (summed over a process tree) and CPU time


def tree_pids(root: int) -> list[int]:
    pids = [root]
    i = 0
    while i < len(pids):
        pid = pids[i]
        i += 1
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE // 1024
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


class Sampler(threading.Thread):
    """Polls VmRSS of a process tree every `interval` seconds; keeps the peak of the sum (all
    processes) and of the children only (nginx's workers)."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak_total = 0
        self.peak_children = 0
        self.stop_ev = threading.Event()

    def sample(self) -> None:
        pids = tree_pids(self.root)
        rss = [rss_kib(p) for p in pids]
        self.peak_total = max(self.peak_total, sum(rss))
        self.peak_children = max(self.peak_children, sum(rss[1:]))

    def run(self) -> None:
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.interval)

    def finish(self) -> None:
        self.stop_ev.set()
        self.join()
        self.sample()


# --------------------------------------------------------------------------------------------
# load generators


def pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def run_cmd(argv: list[str], timeout: float) -> str:
    try:
        p = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, start_new_session=True
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f}s: {' '.join(argv)}") from e
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with {p.returncode}:\n{out[-2000:]}")
    return out


def wrk_run(sc: dict, port: int, duration: float, threads: int) -> dict:
    argv = ["wrk", "-t", str(min(threads, sc["conns"])), "-c", str(sc["conns"]), "-d", f"{duration:g}s",
            "--timeout", "5s", "-s", os.path.join(BENCH, "wrk-report.lua")]
    for h in sc.get("headers", []):
        argv += ["-H", h]
    argv.append(f"https://127.0.0.1:{port}{sc['path']}")
    out = run_cmd(argv, duration + 60)
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if not m:
        raise BenchError(f"wrk printed no summary:\n{out[-2000:]}")
    j = json.loads(m.group(1))
    secs = j["duration_us"] / 1e6
    socket_errors = j["connect"] + j["read"] + j["write"] + j["timeout"]
    return {
        "requests": j["requests"],
        "ok": max(0, j["requests"] - j["status"]),
        "rps": j["requests"] / secs if secs else 0.0,
        "p50_ms": j["p50_us"] / 1000.0,
        "p99_ms": j["p99_us"] / 1000.0,
        "errors": j["status"] + socket_errors,
        "error_detail": {k: j[k] for k in ("status", "connect", "read", "write", "timeout") if j[k]},
        "bytes": j["bytes"],
    }


H2_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s")
H2_REQS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")
H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


class H2loadHung(Exception):
    pass


def h2load_once(argv: list[str], log: str, timeout: float, measured: float | None = None) -> tuple[float, float, dict, list[float]]:
    """Runs h2load once; returns (seconds, req/s, counts, latencies in ms).

    With a warm-up (`measured` = the -D duration), h2load's req/s covers the measured part only
    while "finished in" includes the warm-up, and its log holds every request: only those started
    in the last `measured` seconds are kept for the latency percentiles."""
    if os.path.exists(log):
        os.unlink(log)
    try:
        out = run_cmd(argv + [f"--log-file={log}"], timeout)
    except BenchError as e:
        if isinstance(e.__cause__, subprocess.TimeoutExpired) or " exited with -" in str(e):
            raise H2loadHung() from e  # hung, or killed by a signal (libev assertion at shutdown)
        raise
    m = H2_FINISHED.search(out)
    r = H2_REQS.search(out)
    s = H2_STATUS.search(out)
    if not (m and r and s):
        raise BenchError(f"cannot parse h2load output:\n{out[-2000:]}")
    secs = float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[m.group(2)]
    rps = float(m.group(3))
    done, failed, errored, timeouts = int(r.group(3)), int(r.group(5)), int(r.group(6)), int(r.group(7))
    n2xx = int(s.group(1))
    rows = []
    try:
        with open(log) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    rows.append((int(parts[0]), int(parts[2]) / 1000.0))
    except (OSError, ValueError):
        pass
    if measured and rows:
        first = max(t for t, _ in rows) - int(measured * 1e6)
        rows = [(t, v) for t, v in rows if t >= first]
    # `done` includes failed requests; a failed request has no status code. Count each bad
    # request once: everything done that was not a 2xx (or, if larger, h2load's failed count).
    non2xx = int(s.group(2)) + int(s.group(3)) + int(s.group(4))
    counts = {"done": done, "ok": n2xx, "errors": max(done - n2xx, failed), "non2xx": non2xx,
              "failed": failed, "errored": errored, "timeout": timeouts}
    return secs, rps, counts, [v for _, v in rows]


def h2load_run(sc: dict, port: int, duration: float, threads: int, scratch: str) -> dict:
    url = f"https://127.0.0.1:{port}{sc['path']}"
    log = os.path.join(scratch, "h2load.log")
    base = ["h2load", "-t", str(min(threads, sc["conns"]))]
    if sc["kind"] == "h2load-newconn":
        # Each client makes exactly one request on its own new connection (full TLS handshake:
        # h2load keeps no session between clients). Bursts of `conns` clients, repeated until
        # `duration` is spent; the rate is requests / time h2load itself measured.
        argv = base + ["--h1", "-c", str(sc["conns"]), "-n", str(sc["conns"])] + [url]
        total_secs, counts, lat = 0.0, {}, []  # type: ignore[var-annotated]
        t_end = time.monotonic() + duration
        while True:
            secs, _, c, lt = h2load_once(argv, log, 60)
            total_secs += secs
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            lat.extend(lt)
            if time.monotonic() >= t_end:
                break
        rps = counts["done"] / total_secs if total_secs else 0.0
    else:
        argv = base + (["--h1"] if sc.get("h1") else []) + ["-c", str(sc["conns"]), "-m", str(sc.get("streams", 1)),
                                                            "-D", f"{duration:g}"]
        # Quick runs too: with less, 1,000 handshakes on busy shared cores may not be done in time.
        ramp = sc.get("ramp", 0.0)
        if ramp:
            # connections are set up (and requests made) during the warm-up, which is not counted
            argv.append(f"--warm-up-time={ramp:g}")
        argv.append(url)
        # h2load 1.52 sometimes never exits after "Stopped all clients" in a -D run, or aborts
        # there on a libev assertion (seen with 1,000 connections): such a run is run again.
        for attempt in range(1, 4):
            try:
                _, rps, counts, lat = h2load_once(argv, log, duration + ramp + max(8.0, duration), duration if ramp else None)
                break
            except H2loadHung:
                print(f"[bench]     h2load hung or crashed after its run (h2load quirk); retry {attempt}/3", flush=True)
        else:
            # The load generator failed, not the contender: record the run as unmeasured (it
            # shows as `h2load_hung` in the errors column) rather than abort the whole run.
            print(f"[bench]     h2load hung 3 times in a row; this run is unmeasured: {' '.join(argv)}", flush=True)
            return {"requests": 0, "ok": 0, "rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                    "errors": 0, "error_detail": {"h2load_hung": 1}}
    lat.sort()
    errors = counts["errors"]
    detail = {k: counts[k] for k in ("non2xx", "failed", "errored", "timeout") if counts[k]}
    return {
        "requests": counts["done"],
        "ok": counts["ok"],
        "rps": rps,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "errors": errors,
        "error_detail": detail,
    }


# --------------------------------------------------------------------------------------------
# scenarios

SCENARIOS = [
    {"id": "h1-keepalive", "title": "HTTP/1.1 keep-alive, small GET, 64 conns", "kind": "wrk",
     "conns": 64, "path": "/", "upstream": "app"},
    {"id": "h1-newconn", "title": "HTTP/1.1, new TLS connection per request (full handshake), 64 clients",
     "kind": "h2load-newconn", "conns": 64, "path": "/", "upstream": "app"},
    {"id": "h1-resume", "title": "HTTP/1.1, new connection per request, TLS session resumed, 32 conns",
     "kind": "wrk", "conns": 32, "path": "/", "upstream": "app", "headers": ["Connection: close"]},
    {"id": "h2-mux", "title": "HTTP/2 multiplexed, 32 conns x 16 streams", "kind": "h2load",
     "conns": 32, "streams": 16, "path": "/", "upstream": "app"},
    {"id": "h1-1mib", "title": "HTTP/1.1 keep-alive, 1 MiB responses (static upstream), 16 conns", "kind": "wrk",
     "conns": 16, "path": "/1m.bin", "upstream": "static"},
    # A 100 KiB stylesheet served by the contender itself (nginx `alias`, our PROXY_STATIC); the
    # "direct" column is the static upstream nginx serving the same file, uncompressed.
    {"id": "static-100k", "title": "HTTP/1.1 keep-alive, 100 KiB static file, 64 conns", "kind": "wrk",
     "conns": 64, "path": "/static/100k.css", "upstream": "static", "skip": {"haproxy": "serves no files"}},
    {"id": "static-100k-gzip", "title": "HTTP/1.1 keep-alive, 100 KiB static file, gzip, 64 conns", "kind": "wrk",
     "conns": 64, "path": "/static/100k.css", "upstream": "static", "headers": ["Accept-Encoding: gzip"],
     "skip": {"haproxy": "serves no files"}},
    # h2load rather than wrk: its uncounted warm-up lets all 1,000 TLS handshakes finish first,
    # so the run measures 1,000 established keep-alive connections, not the connection ramp.
    {"id": "h1-1000conns", "title": "HTTP/1.1 keep-alive, 1,000 concurrent connections", "kind": "h2load",
     "h1": True, "conns": 1000, "path": "/", "upstream": "app", "ramp": 3.0},
    # bench/reset_attack.py: a cancel flood (HEADERS, 2 ms, RST_STREAM) beside this client. The
    # bystander's errors are what it measures: the error-rate limit holds for ours only.
    {"id": "h2-reset-attack", "title": "HTTP/2 bystander (4 conns x 4 streams) during a stream-cancel flood",
     "kind": "reset-attack", "conns": 4, "streams": 4, "path": "/", "upstream": "app", "errors_measured": True},
]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.run_dir = os.path.join(WORK, "run")
        self.tls = os.path.join(self.run_dir, "tls")
        self.cert = os.path.join(self.tls, "cert.pem")
        self.key = os.path.join(self.tls, "key.pem")
        b = args.port_base
        self.ports = {"app": b, "static": b + 1, "probe-up": b + 2, "probe-client": b + 3,
                      "nginx": b + 443, "nginx-tuned": b + 444,
                      "proxy": b + 445, "proxy-http": b + 80,
                      "proxy-h1up": b + 446, "proxy-h1up-http": b + 81,
                      "haproxy": b + 447, "caddy": b + 448}
        self.notes: list[str] = []

    # ---- setup

    def prepare(self) -> None:
        if os.path.isdir(self.run_dir):
            shutil.rmtree(self.run_dir)
        os.makedirs(self.tls)
        busy = [f"{k}={p}" for k, p in self.ports.items() if not port_free(p)]
        if busy:
            raise BenchError(f"ports already in use on 127.0.0.1: {', '.join(busy)} "
                             f"(another bench run? pick others with --port-base)")
        # One throwaway RSA 2048 self-signed certificate (like the original's localhost.crt),
        # used by the app, the static upstream, both nginx contenders and the proxy.
        run_cmd(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                 "-out", self.cert, "-days", "30", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], 60)
        os.chmod(self.key, 0o644)  # throwaway key; readable by non-root container users too
        # Run copies: a rebuild in the shared target/ during a long run must not change contenders.
        bindir = os.path.join(self.run_dir, "bin")
        os.makedirs(bindir)
        for attr in ("app_bin", "proxy_bin"):
            src = getattr(self.a, attr)
            if attr == "proxy_bin" and not {"proxy", "proxy-h1up"} & set(self.a.contenders):
                continue
            dst = os.path.join(bindir, attr.replace("_bin", ""))
            shutil.copy2(src, dst)
            setattr(self.a, attr, dst)
        docroot = os.path.join(self.run_dir, "static-docroot")
        os.makedirs(docroot)
        with open(os.path.join(docroot, "1m.bin"), "wb") as f:
            f.write(os.urandom(1 << 20))
        # The static-100k scenarios' file: CSS-like text that compresses about as real CSS does.
        os.makedirs(os.path.join(docroot, "static"))
        rng = random.Random(100)
        words = ["margin", "padding", "color", "display", "flex", "grid", "border", "auto", "none"]
        css = []
        while sum(map(len, css)) < 100 * 1024:
            css.append(f".c{rng.randrange(10**6)} {{ {rng.choice(words)}: {rng.randrange(999)}px "
                       f"#{rng.randrange(1 << 24):06x}; }}\n")
        with open(os.path.join(docroot, "static", "100k.css"), "w") as f:
            f.write("".join(css)[:100 * 1024])

    def render_nginx(self, template: str, prefix: str, listen: int, upstream: int, tuned: bool) -> str:
        for d in ("logs", "tmp"):
            os.makedirs(os.path.join(prefix, d), exist_ok=True)
        with open(os.path.join(BENCH, template)) as f:
            conf = f.read()
        tuned_up = tuned_loc = tuned_log = ""
        # Both: no cap at 1,000 requests per client connection (h1 and h2): h2load never
        # reconnects after the GOAWAY that ends them (nghttp2#1197), so a run would measure the cap.
        keepalive = "    keepalive_requests 1000000;\n    http2_max_requests 1000000;"
        if tuned:
            # nginx at its best: a pool of idle upstream keep-alive connections, HTTP/1.1 to the
            # upstream, and a buffered access log (the proxy buffers its own).
            tuned_log = " buffer=64k flush=1s"
            tuned_up = "        keepalive 512;\n        keepalive_requests 1000000;"
            tuned_loc = ("            proxy_http_version 1.1;\n"
                         "            proxy_set_header Connection \"\";")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        nofile = 65536 if nofile == resource.RLIM_INFINITY else nofile
        subst = {"PREFIX": prefix, "NOFILE": str(nofile), "LISTEN": f"127.0.0.1:{listen}", "UPSTREAM": f"127.0.0.1:{upstream}",
                 "CERT": self.cert, "KEY": self.key, "DOCROOT": os.path.join(self.run_dir, "static-docroot"),
                 "KEEPALIVE": keepalive, "TUNED_ACCESS_LOG": tuned_log, "TUNED_UPSTREAM": tuned_up, "TUNED_LOCATION": tuned_loc}
        for k, v in subst.items():
            conf = conf.replace(f"@@{k}@@", v)
        left = re.findall(r"@@[A-Z_]+@@", conf)
        if left:
            raise BenchError(f"{template}: unfilled placeholders {left}")
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        run_cmd(["nginx", "-t", "-q", "-p", prefix, "-c", path, "-e", os.path.join(prefix, "logs", "error.log")], 30)
        return path

    def start_nginx(self, name: str, template: str, listen: int, upstream: int, tuned: bool,
                    path: str) -> subprocess.Popen:
        prefix = os.path.join(self.run_dir, name)
        conf = self.render_nginx(template, prefix, listen, upstream, tuned)
        p = PROCS.start(name, ["nginx", "-p", prefix, "-c", conf, "-e", os.path.join(prefix, "logs", "error.log")],
                        None, os.path.join(prefix, "stdout.log"))
        wait_ready(name, listen, path, p, 15)
        return p

    def start_app(self) -> subprocess.Popen:
        env = dict(os.environ)
        env.update({"APP_LISTEN": f"127.0.0.1:{self.ports['app']}", "APP_ENV": "production",
                    "APP_TLS_CERT": self.cert, "APP_TLS_KEY": self.key, "APP_LOG": "warn"})
        d = os.path.join(self.run_dir, "app")
        os.makedirs(d)
        p = PROCS.start("app", [self.a.app_bin], env, os.path.join(d, "stdout.log"))
        wait_ready("app", self.ports["app"], "/", p, 20)
        return p

    def start_proxy(self, upstream: int, path: str, tag: str, name: str = "proxy",
                    extra: dict | None = None) -> subprocess.Popen:
        d = os.path.join(self.run_dir, f"{name}-{tag}")
        logs = os.path.join(d, "logs")
        os.makedirs(logs, exist_ok=True)
        env = dict(os.environ)
        env.update({"PROXY_HTTP_LISTEN": f"127.0.0.1:{self.ports[name + '-http']}",
                    "PROXY_HTTPS_LISTEN": f"127.0.0.1:{self.ports[name]}",
                    "PROXY_UPSTREAM": f"127.0.0.1:{upstream}",
                    "PROXY_TLS_CERT": self.cert, "PROXY_TLS_KEY": self.key, "PROXY_TLS_GENERATE": "false",
                    "PROXY_LOG_DIR": logs, "LOG_RETENTION": "false", "PROXY_LOG": "warn",
                    # The static-100k scenarios (nginx: the /static/ location of its template).
                    "PROXY_STATIC": f"/static/={os.path.join(self.run_dir, 'static-docroot', 'static')}",
                    # As nginx-tuned (keepalive_requests): h2load never reconnects an HTTP/2
                    # connection after the GOAWAY that ends its 1,000 requests (nghttp2#1197).
                    "PROXY_KEEPALIVE_REQUESTS": "1000000"})
        env.update(extra or {})
        p = PROCS.start(name, [self.a.proxy_bin], env, os.path.join(d, "stdout.log"))
        wait_ready(name, self.ports[name], path, p, 20)
        return p

    def start_peer(self, c: str, tag: str, upstream: int, path: str) -> subprocess.Popen:
        """HAProxy or Caddy (bench/peers.py), started fresh in its own prefix."""
        prefix = os.path.join(self.run_dir, f"{c}-{tag}")
        try:
            if c == "haproxy":
                argv, env = peers.haproxy_argv(prefix, self.ports[c], upstream, self.cert, self.key), None
            else:
                argv = peers.caddy_argv(prefix, self.ports[c], upstream, self.cert, self.key,
                                        os.path.join(self.run_dir, "static-docroot"))
                env = peers.caddy_env(prefix)
        except peers.PeerError as e:
            raise BenchError(f"{c}: {e}") from e
        p = PROCS.start(c, argv, env, os.path.join(prefix, "stdout.log"))
        wait_ready(c, self.ports[c], path, p, 20)
        return p

    def contenders_for(self, sc: dict) -> list[str]:
        return [c for c in self.a.contenders if c not in sc.get("skip", {})]

    def start_contenders(self, sc: dict) -> dict[str, subprocess.Popen | None]:
        up = self.ports[sc["upstream"]]
        tag = sc["id"]
        procs: dict[str, subprocess.Popen | None] = {}
        for c in self.contenders_for(sc):
            if c in peers.TOOLS:
                procs[c] = self.start_peer(c, tag, up, sc["path"])
            elif c == "direct":
                procs[c] = None
            elif c in ("nginx", "nginx-tuned"):
                procs[c] = self.start_nginx(f"{c}-{tag}", "nginx.conf.template", self.ports[c], up,
                                            c == "nginx-tuned", sc["path"])
            elif c == "proxy":
                procs[c] = self.start_proxy(up, sc["path"], tag)
            elif c == "proxy-h1up":
                # The same binary with PROXY_UPSTREAM_HTTP2=false: HTTP/1.1 to the upstream over
                # the keep-alive pool, as nginx does (the default, auto, uses HTTP/2).
                procs[c] = self.start_proxy(up, sc["path"], tag, "proxy-h1up",
                                            {"PROXY_UPSTREAM_HTTP2": "false"})
        return procs

    def tls_probe(self) -> dict[str, dict]:
        """What each contender negotiates on its client side (with h2load's TLS stack) and on its
        upstream side (with the app), through bench/tlsprobe.py relays, and how many upstream
        connections it opens for PROBE_REQUESTS requests on PROBE_CONNS client connections (the
        upstream keep-alive reuse check): printed and reported."""
        up = tlsprobe.Relay(self.ports["probe-up"], self.ports["app"])
        up.start()
        out: dict[str, dict] = {}
        try:
            for c in self.a.contenders:  # one at a time, so the upstream relay sees only its own
                before = len(up.seen)
                others = {o: "probed alone" for o in self.a.contenders if o != c}
                procs = self.start_contenders({"id": "tls-probe", "upstream": "probe-up", "path": "/", "skip": others})
                client = tlsprobe.Relay(self.ports["probe-client"], self.contender_port(c, {"upstream": "probe-up"}))
                client.start()
                try:
                    run_cmd(["h2load", "--h1", "-c", str(PROBE_CONNS), "-n", str(PROBE_REQUESTS),
                             f"https://127.0.0.1:{self.ports['probe-client']}/"], 60)
                    time.sleep(0.2)
                finally:
                    client.stop()
                    if procs[c] is not None:
                        PROCS.stop(procs[c])  # type: ignore[arg-type]
                with up.lock:
                    mine = up.seen[before:]
                ups = tlsprobe.summarize(mine)
                out[c] = {"client": client.summary(), "upstream": "—" if c == "direct" else ups,
                          "upstream_conns": None if c == "direct" else len(mine)}
                print(f"[bench] TLS {c:<12} client side: {out[c]['client']}; upstream side: {out[c]['upstream']}"
                      + ("" if c == "direct" else f"; {len(mine)} upstream connection(s) for {PROBE_REQUESTS} requests"),
                      flush=True)
        finally:
            up.stop()
        return out

    # ---- measuring

    def contender_port(self, c: str, sc: dict) -> int:
        return self.ports[sc["upstream"]] if c == "direct" else self.ports[c]

    def one_run(self, sc: dict, c: str, proc: subprocess.Popen | None, duration: float) -> dict:
        port = self.contender_port(c, sc)
        scratch = os.path.join(self.run_dir, "load")
        os.makedirs(scratch, exist_ok=True)
        sampler = Sampler(proc.pid) if proc is not None else None
        cpu0 = cpu_seconds(tree_pids(proc.pid)) if proc is not None else 0.0
        if sampler:
            sampler.start()
        try:
            if sc["kind"] == "wrk":
                r = wrk_run(sc, port, duration, self.a.threads)
            elif sc["kind"] == "reset-attack":
                import reset_attack  # bench/reset_attack.py

                r = reset_attack.run(sc, port, duration, self.a.threads, scratch, h2load_run)
            else:
                r = h2load_run(sc, port, duration, self.a.threads, scratch)
        finally:
            if sampler:
                sampler.finish()
        if proc is not None:
            if proc.poll() is not None:
                raise BenchError(f"{c} died during {sc['id']} (exit {proc.returncode}):\n"
                                 f"{log_tail(proc.bench_log)}")  # type: ignore[attr-defined]
            r["cpu_s"] = cpu_seconds(tree_pids(proc.pid)) - cpu0
            r["rss_kib"] = sampler.peak_total  # type: ignore[union-attr]
            r["rss_children_kib"] = sampler.peak_children  # type: ignore[union-attr]
        return r

    def run(self) -> dict:
        a = self.a
        self.prepare()
        results: dict = {"scenarios": {}}
        print(f"[bench] starting upstreams on 127.0.0.1:{self.ports['app']} (app) and :{self.ports['static']} (static)",
              flush=True)
        self.start_app()
        self.start_nginx("static", "static-upstream.conf.template", self.ports["static"], 0, False, "/1m.bin")
        t0 = time.monotonic()
        results["tls"] = self.tls_probe()
        for sc in [s for s in SCENARIOS if s["id"] in a.scenarios]:
            print(f"[bench] {sc['id']}: {sc['title']}", flush=True)
            here = self.contenders_for(sc)
            procs = self.start_contenders(sc)
            try:
                # A contender on which h2load hung (its requests left unanswered) is not run
                # again in this scenario: each hang costs three timeouts.
                hung: dict[str, dict] = {}
                if a.warmup > 0:
                    for c in here:
                        r = self.one_run(sc, c, procs[c], a.warmup)
                        if "h2load_hung" in r["error_detail"]:
                            hung[c] = r
                runs: dict[str, list[dict]] = {c: [] for c in here}
                for rnd in range(a.rounds):
                    for c in here:  # A B C D, A B C D, ...
                        r = dict(hung[c]) if c in hung else self.one_run(sc, c, procs[c], a.duration)
                        if "h2load_hung" in r["error_detail"]:
                            hung[c] = r
                        runs[c].append(r)
                        print(f"[bench]   round {rnd + 1}/{a.rounds} {c:<12} {r['rps']:>10.0f} req/s  "
                              f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  errors {r['errors']}"
                              + (f"  rss {r['rss_kib'] / 1024:.1f} MiB" if "rss_kib" in r else ""), flush=True)
            finally:
                for c in reversed(here):
                    if procs.get(c) is not None:
                        PROCS.stop(procs[c])  # type: ignore[arg-type]
            results["scenarios"][sc["id"]] = {"title": sc["title"], "runs": runs, "skipped": sc.get("skip", {}),
                                              "summary": {c: summarize(runs[c]) for c in here}}
        results["elapsed_s"] = time.monotonic() - t0
        return results


def failures(results: dict) -> list[str]:
    """Why the run fails: a contender that answered nothing, or whose errors exceed
    MAX_ERROR_RATE of its requests in a scenario (never slow numbers)."""
    out = []
    measured = {s["id"]: s.get("errors_measured", False) for s in SCENARIOS}
    for sid, s in results["scenarios"].items():
        for c, v in s["summary"].items():
            tries = v["ok"] + v["errors"]
            if v["error_detail"].get("h2load_hung", 0) >= v["rounds"] and c not in OURS:
                continue  # a peer left h2load's requests unanswered: reported as unmeasured, not a harness failure
            if v["ok"] == 0:
                out.append(f"no successful response from {c} in {sid}")
            elif v["errors"] > MAX_ERROR_RATE * tries and (c in OURS or not measured.get(sid)):
                out.append(f"{c} in {sid}: {v['errors']:,} errors in {tries:,} requests "
                           f"({100 * v['errors'] / tries:.1f} %, more than {100 * MAX_ERROR_RATE:g} %)")
    return out


def summarize(runs: list[dict]) -> dict:
    s = {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "ok": sum(r["ok"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "rounds": len(runs),
    }
    detail: dict[str, int] = {}
    for r in runs:
        for k, v in r["error_detail"].items():
            detail[k] = detail.get(k, 0) + v
    s["error_detail"] = detail
    if runs and "rss_kib" in runs[0]:
        s["rss_kib"] = max(r["rss_kib"] for r in runs)
        s["rss_children_kib"] = max(r["rss_children_kib"] for r in runs)
        s["cpu_ms_per_1k"] = statistics.median(
            1e6 * r["cpu_s"] / r["requests"] if r["requests"] else float("nan") for r in runs)
    return s


# --------------------------------------------------------------------------------------------
# docker (optional)


def docker_section(bench: Bench) -> dict:
    """Image sizes and container start-to-first-200, when Docker and the images are there."""
    out: dict = {"available": False, "note": "", "images": [], "startup": []}
    if not shutil.which("docker"):
        out["note"] = "docker is not installed: section skipped."
        return out
    try:
        p = subprocess.run(["docker", "images", "--format", "{{.Repository}}\t{{.Tag}}\t{{.Size}}\t{{.ID}}"],
                           capture_output=True, timeout=30, text=True)
    except subprocess.TimeoutExpired:
        out["note"] = "`docker images` timed out: section skipped."
        return out
    if p.returncode != 0:
        out["note"] = f"docker daemon not reachable ({p.stderr.strip()[:200]}): section skipped."
        return out
    imgs = []
    for line in p.stdout.splitlines():
        repo, tag, size, iid = (line.split("\t") + ["", "", "", ""])[:4]
        if repo.startswith("containerize-") or "/containerize-" in repo:
            imgs.append({"repo": repo, "tag": tag, "size": size, "id": iid})
    if not imgs:
        out["note"] = ("no containerize-* images found (build them with `docker/build.sh all --prebuilt`): "
                       "section skipped.")
        return out
    out["available"] = True
    out["images"] = imgs
    certdir = os.path.join(bench.run_dir, "tls")
    # one image per service for the start-up timing: the `latest` tag, else the newest one
    chosen: dict[str, dict] = {}
    for img in imgs:  # `docker images` lists the newest first
        kind = "app" if img["repo"].endswith("containerize-app") else \
               "proxy" if img["repo"].endswith("containerize-proxy") else None
        if kind and (kind not in chosen or (img["tag"] == "latest" and chosen[kind]["tag"] != "latest")):
            chosen[kind] = img
    for kind, img in sorted(chosen.items()):
        ref = f"{img['repo']}:{img['tag']}" if img["tag"] != "<none>" else img["id"]
        port = bench.ports["proxy"] + 100 if kind == "proxy" else bench.ports["app"] + 100
        name = f"containerize-bench-{kind}-{os.getpid()}"
        envs = {"app": {"APP_LISTEN": f"127.0.0.1:{port}", "APP_ENV": "production", "APP_LOG": "warn",
                        "APP_TLS_CERT": "/bench-tls/cert.pem", "APP_TLS_KEY": "/bench-tls/key.pem"},
                "proxy": {"PROXY_HTTPS_LISTEN": f"127.0.0.1:{port}",
                          "PROXY_HTTP_LISTEN": f"127.0.0.1:{bench.ports['proxy-http'] + 100}",
                          "PROXY_UPSTREAM": f"127.0.0.1:{bench.ports['app']}",
                          "PROXY_TLS_CERT": "/bench-tls/cert.pem", "PROXY_TLS_KEY": "/bench-tls/key.pem",
                          "PROXY_TLS_GENERATE": "false", "LOG_RETENTION": "false", "PROXY_LOG": "warn",
                          "PROXY_LOG_DIR": "/bench-logs", "PROXY_KEEPALIVE_REQUESTS": "1000000"}}[kind]
        # host network: the container listens on the host's 127.0.0.1 only, no port publishing
        logdir = os.path.join(bench.run_dir, f"docker-{kind}-logs")
        os.makedirs(logdir, exist_ok=True)
        os.chmod(logdir, 0o777)  # the images run as uid 1000 and are FROM scratch (no writable /tmp)
        argv = ["docker", "run", "-d", "--rm", "--name", name, "--network", "host",
                "-v", f"{certdir}:/bench-tls:ro", "-v", f"{logdir}:/bench-logs"]
        for k, v in envs.items():
            argv += ["-e", f"{k}={v}"]
        argv.append(ref)
        entry = {"image": ref, "kind": kind}
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            entry["error"] = r.stderr.strip()[:300]
            out["startup"].append(entry)
            continue
        PROCS.containers.append(name)
        deadline = t0 + 30
        ok = False
        while time.monotonic() < deadline:
            try:
                if https_get(port, "/", 1.0)[0] == 200:
                    ok = True
                    break
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.01)
        t1 = time.monotonic()
        if ok:
            entry["first_200_ms"] = (t1 - t0) * 1000
        else:
            logs = subprocess.run(["docker", "logs", "--tail", "5", name], capture_output=True, text=True, timeout=30)
            entry["error"] = "no 200 within 30 s: " + (logs.stdout + logs.stderr).strip()[-300:]
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=30)
        PROCS.containers.remove(name)
        out["startup"].append(entry)
    return out


# --------------------------------------------------------------------------------------------
# main


def tool_version(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (p.stdout + p.stderr).strip().splitlines()
        return text[0].strip() if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def environment(args: argparse.Namespace) -> dict:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            cpu = m.group(1) if m else "?"
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu})",
        "commit": (commit.stdout.strip() or "?") + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
        "nginx": tool_version(["nginx", "-v"]),
        "haproxy": tool_version(["haproxy", "-v"]) if "haproxy" in args.contenders else None,
        "caddy": ("Caddy " + tool_version(["caddy", "version"])) if "caddy" in args.contenders else None,
        "wrk": tool_version(["wrk", "-v"]),
        "h2load": tool_version(["h2load", "--version"]),
        "openssl": tool_version(["openssl", "version"]),
        "mode": "quick (smoke check)" if args.quick else "full",
        "tls_probe": f"h2load --h1, {PROBE_REQUESTS} requests on {PROBE_CONNS} connections, through byte relays on "
                     "both sides of each contender, one contender at a time",
        "rounds": args.rounds, "duration": args.duration, "warmup": args.warmup, "threads": args.threads,
        "contenders": args.contenders, "app_bin": args.app_bin, "proxy_bin": args.proxy_bin if any(c.startswith("proxy") for c in args.contenders) else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s, no warm-up")
    ap.add_argument("--rounds", type=int, help=f"rounds per scenario (default {FULL_ROUNDS}; quick 1)")
    ap.add_argument("--duration", type=float, help=f"seconds per measured run (default {FULL_DURATION:g}; quick 1)")
    ap.add_argument("--warmup", type=float, help=f"warm-up seconds per contender and scenario (default {FULL_WARMUP:g}; quick 0)")
    ap.add_argument("--threads", type=int, default=min(4, max(1, os.cpu_count() or 1)),
                    help="wrk/h2load threads (default: CPUs, at most 4)")
    ap.add_argument("--scenarios", default=",".join(s["id"] for s in SCENARIOS),
                    help="comma-separated subset of: " + ", ".join(s["id"] for s in SCENARIOS))
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset of: " + ", ".join(CONTENDERS))
    ap.add_argument("--no-proxy", action="store_true", help="leave our proxy out (e.g. before it exists)")
    ap.add_argument("--app-bin", default=os.path.join(ROOT, "target", "release", "app"))
    ap.add_argument("--proxy-bin", default=os.path.join(ROOT, "target", "release", "proxy"))
    # Below Linux's ephemeral range (32768-60999): a client socket of the 1,000-connection runs must
    # never hold the port the next contender listens on (seen: "Address already in use").
    ap.add_argument("--port-base", type=int, default=26000, help="app on BASE, static upstream BASE+1, "
                    "TLS probes BASE+2 and +3, nginx BASE+443, nginx-tuned +444, proxy +445, proxy-h1up +446, "
                    "haproxy +447, caddy +448 (all 127.0.0.1)")
    ap.add_argument("--out", default=os.path.join(BENCH, "results"), help="where latest.md/.svg/.json go")
    ap.add_argument("--no-docker", action="store_true", help="skip the optional Docker section")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else FULL_ROUNDS)
    a.duration = a.duration or (1.0 if a.quick else FULL_DURATION)
    a.warmup = a.warmup if a.warmup is not None else (0.0 if a.quick else FULL_WARMUP)
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    a.contenders = [c.strip() for c in a.contenders.split(",") if c.strip()]
    if a.no_proxy:
        a.contenders = [c for c in a.contenders if not c.startswith("proxy")]
    bad = [s for s in a.scenarios if s not in {x["id"] for x in SCENARIOS}] + \
          [c for c in a.contenders if c not in CONTENDERS]
    if bad or not a.contenders or not a.scenarios:
        ap.error(f"unknown or empty scenarios/contenders: {bad}")
    a.contenders = [c for c in CONTENDERS if c in a.contenders]  # fixed A B C D order
    if a.rounds < 1 or a.duration <= 0:
        ap.error("--rounds must be >= 1 and --duration > 0")
    for tool in ["nginx", "wrk", "h2load", "openssl"] + [peers.TOOLS[c] for c in a.contenders if c in peers.TOOLS]:
        if not shutil.which(tool):
            print(f"[bench] error: `{tool}` not found (bench/run.sh installs it: "
                  f"apt-get install -y nginx wrk nghttp2-client haproxy caddy)", file=sys.stderr)
            return 2
    for name, path in (("app", a.app_bin), ("proxy", a.proxy_bin)):
        if name == "proxy" and not any(c.startswith("proxy") for c in a.contenders):
            continue
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            print(f"[bench] error: {name} binary not found at {path} "
                  f"(cargo build --release -p {name}, or pass --{name}-bin)", file=sys.stderr)
            return 2

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    bench = Bench(a)
    env = environment(a)
    t0 = time.monotonic()
    try:
        results = bench.run()
        results["docker"] = {"available": False, "note": "skipped (--no-docker).", "images": [], "startup": []} \
            if a.no_docker else docker_section(bench)
    except BenchError as e:
        print(f"[bench] FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[bench] interrupted; stopping everything it started", file=sys.stderr)
        return 130
    finally:
        PROCS.stop_all()
    results["env"] = env
    results["env"]["wall_s"] = time.monotonic() - t0

    import report  # bench/report.py

    os.makedirs(a.out, exist_ok=True)
    paths = report.write_all(results, a.out)
    for p in paths:
        print(f"[bench] wrote {os.path.relpath(p, os.getcwd())}")

    bad = failures(results)
    if bad:
        print(f"[bench] FAILED: {'; '.join(bad)}", file=sys.stderr)
        return 1
    print(f"[bench] done in {results['env']['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
