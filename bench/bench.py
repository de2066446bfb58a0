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
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

import peers  # bench/peers.py
import tlsprobe  # bench/tlsprobe.py
from docker_info import docker_section
from loadgen import h2load_run, wrk_run
# also what idle.py, callgrind.py and the tests take from here (one place for the harness's parts)
from procs import (PROCS, BenchError, Sampler, cpu_seconds, log_tail, port_free, rss_kib,  # noqa: F401
                   run_cmd, tree_pids, wait_ready)

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
WORK = os.path.join(BENCH, "work")

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
    MAX_ERROR_RATE of its requests in a scenario (never slow numbers). Where errors are the
    measurement (`errors_measured`), only our own contenders fail the run."""
    out = []
    measured = {s["id"]: s.get("errors_measured", False) for s in SCENARIOS}
    for sid, s in results["scenarios"].items():
        for c, v in s["summary"].items():
            tries = v["ok"] + v["errors"]
            if v["error_detail"].get("h2load_hung", 0) >= v["rounds"] and c not in OURS:
                continue  # a peer left h2load's requests unanswered: reported as unmeasured, not a harness failure
            if v["ok"] == 0 and c not in OURS and measured.get(sid):
                continue  # a peer that collapses under the attack is the finding, reported as 0 req/s
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
