#!/usr/bin/env python3
"""What the routing table and the request inspector cost the request path, each against the
same baseline: one proxy binary, started with PROXY_UPSTREAM as its only route and the inspector
off, in front of the real app, on loopback only. bench/run.sh runs it after idle.py.

  python3 bench/feature_cost.py [--quick] [--rounds 5] [--duration 5] [--threads 1]
                                [--out DIR] [--proxy-bin P] [--app-bin A]

Modes, a fresh proxy per mode and round; the order rotates round by round, so drift on a
shared machine hits every mode alike:
  baseline   PROXY_UPSTREAM only (the `*` route), PROXY_INSPECT_LISTEN empty
  inspector  the baseline with PROXY_INSPECT_LISTEN set: every exchange is captured
  routes-50  PROXY_ROUTES with 50 entries, PROXY_UPSTREAM unset: the load's `localhost` route to
             the app beside 9 `localhost/pN/` prefixes (tried first: the longest prefix wins),
             10 names with `/api/` (strip) and `/api/v2/` prefixes and 10 `*.teamN.localhost`
             wildcards, all but the load's to ports nothing listens on
Scenarios: h2load to https://localhost:PORT/ (its :authority, Host and SNI name the route),
HTTP/1.1 keep-alive (32 connections) and HTTP/2 (32 connections x 16 streams), GET /.
Before measuring, each proxy must answer GET / from the app (the app's echo of
X-Forwarded-Proto: https); routes-50 must also answer 404 for a name no route serves.

Budgets, req/s median against the baseline's: 50 routes <= 2 % slower; inspector on <= 10 %;
inspector off is the baseline itself (the same binary, nothing captured).

Writes feature-cost.md (a table per comparison) and feature-cost.json (every run's numbers, the
medians, date, commit, load average at start and end) in --out; prints the tables. Exits 1 when
a mode does not start or answer as above, a run's errors pass 1 %, or the proxy logs an error
-- never because numbers are slow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (processes, readiness, the error-rate limit)
from loadgen import h2load_run  # noqa: E402

FULL_ROUNDS, FULL_DURATION = 5, 5.0
HOST = "localhost"  # the load's URL host: the name its route serves (/etc/hosts: 127.0.0.1)

SCENARIOS = [
    {"id": "h1-keepalive", "title": "HTTP/1.1 keep-alive, 32 conns", "kind": "h2load", "h1": True,
     "conns": 32, "streams": 1, "path": "/", "ramp": 1.0, "host": HOST},
    {"id": "h2-mux", "title": "HTTP/2, 32 conns x 16 streams", "kind": "h2load",
     "conns": 32, "streams": 16, "path": "/", "ramp": 1.0, "host": HOST},
]
MODES = ("baseline", "inspector", "routes-50")
# Each comparison: a mode against the baseline, and its budget (the largest req/s cost allowed).
COMPARISONS = [
    {"id": "routing", "mode": "routes-50", "title": "Routing: 50 routes against 1",
     "base": "1 route", "feature": "50 routes", "budget": 0.02,
     "budget_text": "routing cost ≤ 2 %",
     "what": "1 route: `PROXY_UPSTREAM` only (the `*` route). 50 routes: `PROXY_ROUTES` with the load's "
             "`localhost` route among 49 others (9 `localhost/pN/` prefixes, 10 names with `/api/` and "
             "`/api/v2/` prefixes, 10 `*.teamN.localhost` wildcards), `PROXY_UPSTREAM` unset."},
    {"id": "inspector", "mode": "inspector", "title": "Inspector capture: on against off",
     "base": "off", "feature": "on", "budget": 0.10,
     "budget_text": "capture on ≤ 10 %; off = baseline",
     "what": "Off: `PROXY_INSPECT_LISTEN` empty, the baseline itself (the same binary: off costs nothing "
             "by construction). On: `PROXY_INSPECT_LISTEN` set, every exchange captured (the ring fills "
             "to `PROXY_INSPECT_ENTRIES` and sheds)."},
]
ERROR_LEVELS = ("[error]", "[crit]", "[alert]", "[emerg]")


# --------------------------------------------------------------------------------------------
# what each mode runs


def spare_ports(n: int) -> list[int]:
    """n distinct loopback ports nothing listens on (bound together, then released)."""
    held = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def route_entries(app_port: int, spare: list[int]) -> list[str]:
    """PROXY_ROUTES of routes-50: 49 entries to the `spare` ports, then the load's route."""
    ports = iter(spare)
    out = []
    for i in range(10):
        out += [f"svc{i}.localhost=http://127.0.0.1:{next(ports)}",
                f"svc{i}.localhost/api/=http://127.0.0.1:{next(ports)} strip",
                f"svc{i}.localhost/api/v2/=http://127.0.0.1:{next(ports)}",
                f"*.team{i}.localhost=http://127.0.0.1:{next(ports)}"]
    out += [f"{HOST}/p{i}/=http://127.0.0.1:{next(ports)}" for i in range(9)]
    out.append(f"{HOST}=https://127.0.0.1:{app_port}")
    return out


def mode_env(mode: str, app_port: int, spare: list[int], inspect_port: int) -> dict[str, str]:
    """The settings that make `mode` (the rest is common to every mode)."""
    upstream = {"PROXY_UPSTREAM": f"127.0.0.1:{app_port}"}
    if mode == "baseline":
        return {**upstream, "PROXY_INSPECT_LISTEN": ""}
    if mode == "inspector":
        return {**upstream, "PROXY_INSPECT_LISTEN": f"127.0.0.1:{inspect_port}"}
    if mode == "routes-50":
        return {"PROXY_ROUTES": ",".join(route_entries(app_port, spare)), "PROXY_INSPECT_LISTEN": ""}
    raise ValueError(f"unknown mode {mode}")


def round_order(rnd: int) -> list[str]:
    """Round r runs the modes rotated by r: each mode takes every position in turn."""
    k = rnd % len(MODES)
    return list(MODES[k:] + MODES[:k])


# --------------------------------------------------------------------------------------------
# verdicts and report


def verdict(base_rps: float | None, rps: float | None, budget: float, overlap: bool = False) -> dict:
    """The feature's req/s against the baseline's: ratio, cost (1 - ratio; negative: faster) and
    whether the cost is within `budget` (None when either side measured nothing). A median cost
    over budget while the feature's best round still reaches the baseline's worst (`overlap`) is
    no finding: `within` None and `noise` True (on shared cores the rounds' spread can exceed a
    2 % budget; bench/callgrind.py --modes counts instructions instead)."""
    if not base_rps or rps is None or math.isnan(base_rps) or math.isnan(rps):
        return {"ratio": None, "cost": None, "within": None, "noise": False}
    r = rps / base_rps
    within = round(1 - r, 9) <= budget
    if not within and overlap:
        return {"ratio": r, "cost": 1 - r, "within": None, "noise": True}
    return {"ratio": r, "cost": 1 - r, "within": within, "noise": False}


def medians(rows: list[dict], mode: str, sid: str) -> dict | None:
    rs = [r for r in rows if r["mode"] == mode and r["scenario"] == sid]
    if not rs:
        return None
    p50 = [r["p50_ms"] for r in rs if not math.isnan(r["p50_ms"])]
    rps = [r["rps"] for r in rs]
    return {"rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p50_ms": statistics.median(p50) if p50 else float("nan"), "runs": len(rs)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for c in COMPARISONS:
        scs = []
        for sc in SCENARIOS:
            base, feat = medians(rows, "baseline", sc["id"]), medians(rows, c["mode"], sc["id"])
            overlap = bool(base and feat and feat["rps_max"] >= base["rps_min"])
            v = verdict(base and base["rps"], feat and feat["rps"], c["budget"], overlap)
            scs.append({"id": sc["id"], "title": sc["title"], "baseline": base, "feature": feat, **v})
        out.append({**c, "scenarios": scs, "within": overall([s["within"] for s in scs]),
                    "noise": any(s["noise"] for s in scs)})
    return out


def overall(within: list[bool | None]) -> bool | None:
    """A comparison is over budget when a scenario is; within when every scenario is measured and within."""
    if False in within:
        return False
    return None if None in within or not within else True


def fmt_verdict(within: bool | None, noise: bool = False) -> str:
    if within is None and noise:
        return NOISE_MARK
    return {True: "✅ within", False: "❌ over", None: "— n/a"}[within]


NOISE_MARK = "〜 unresolved: over at the median, within the rounds' spread"


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f} %"


def comparison_table(c: dict) -> list[str]:
    def cell(m: dict | None, key: str, f: str) -> str:
        return "—" if m is None or math.isnan(m[key]) else format(m[key], f)

    def rps(m: dict | None) -> str:  # the median, and the rounds' range when there are several
        spread = f" ({m['rps_min']:,.0f}–{m['rps_max']:,.0f})" if m and m["runs"] > 1 else ""
        return cell(m, "rps", ",.0f") + spread

    base, feat = c["base"], c["feature"]
    L = [f"## {c['title']}", "", c["what"], "", f"Budget: {c['budget_text']} (req/s, median against the baseline's).",
         "", f"| scenario | {base} req/s (rounds) | {feat} req/s (rounds) | {feat}/{base} | cost | budget "
         f"| verdict | {base} p50 ms | {feat} p50 ms | p50 delta |",
         "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for s in c["scenarios"]:
        b, f = s["baseline"], s["feature"]
        ratio = "—" if s["ratio"] is None else f"{s['ratio']:.3f}×"
        delta = "—" if b is None or f is None or math.isnan(b["p50_ms"]) or math.isnan(f["p50_ms"]) \
            else f"{f['p50_ms'] - b['p50_ms']:+.2f}"
        L.append(f"| {s['title']} | {rps(b)} | {rps(f)} | {ratio} | "
                 f"{pct(s['cost'])} | ≤ {100 * c['budget']:g} % | {fmt_verdict(s['within'], s['noise'])} | "
                 f"{cell(b, 'p50_ms', '.2f')} | {cell(f, 'p50_ms', '.2f')} | {delta} |")
    return L + [""]


def markdown(res: dict) -> str:
    env = res["env"]
    L = ["# What routing and the inspector cost", ""]
    if env["mode"] == "quick":
        L += ["> **Quick smoke run** (1 round of 1 s): it only shows that every mode starts and answers "
              "through the app. Its numbers are noise; the verdicts mean nothing.", ""]
    la0, la1 = env["loadavg_start"], env["loadavg_end"]
    L += [f"`{env['command']}` started {env['date']}, "
          f"commit `{env['commit']}`, in {env['wall_s']:.0f} s. Machine: {env['host']}; load average "
          f"(1/5/15 min) {la0[0]:.2f} / {la0[1]:.2f} / {la0[2]:.2f} at start, {la1[0]:.2f} / {la1[1]:.2f} / "
          f"{la1[2]:.2f} at the end. {env['rounds']} round(s) × {env['duration']:g} s (after a 1 s warm-up) per "
          f"mode and scenario, h2load ({env['threads']} thread(s)) to https://{HOST}:PORT/, the mode order "
          f"rotating round by round; medians over rounds. The same proxy binary in every mode, in front of the "
          f"real app, on loopback.", ""]
    for c in res["comparisons"]:
        L += comparison_table(c)
    L += ["A cost is 1 − feature req/s ÷ baseline req/s (negative: the feature's runs were faster, i.e. noise). "
          "Client, proxy and app share the CPUs: only a difference well beyond the spread of the rounds "
          "(`feature-cost.json`) means something: a median over budget whose rounds still overlap the "
          "baseline's is marked unresolved. The noise-free measure of the same modes is instructions per "
          "request: `python3 bench/callgrind.py --modes baseline,inspector,routes-50` "
          "(`callgrind.md`).", ""]
    return "\n".join(L)


# --------------------------------------------------------------------------------------------
# running


def get(port: int, host: str, timeout: float = 5.0) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", "/", headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def check_answers(mode: str, port: int) -> None:
    """The app answers GET / through the proxy (its echo of X-Forwarded-Proto); with routes, a name
    no route serves gets 404 (the 50-entry table, not a `*` route, is what serves)."""
    try:
        status, body = get(port, HOST)
        if status != 200 or b"X-Forwarded-Proto: https" not in body:
            raise B.BenchError(f"{mode}: GET https://{HOST}/ answered {status}, not the app: {body[:200]!r}")
        if mode == "routes-50":
            status, _ = get(port, "unrouted.example")
            if status != 404:
                raise B.BenchError(f"{mode}: a name no route serves answered {status}, expected 404")
    except (OSError, http.client.HTTPException) as e:
        raise B.BenchError(f"{mode}: GET / through the proxy failed: {e}") from e


def log_lines(logs: str) -> tuple[list[str], list[str]]:
    """The proxy's error.log: (warnings, errors or worse)."""
    try:
        with open(os.path.join(logs, "error.log"), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return [], []
    return [x for x in lines if "[warn]" in x], [x for x in lines if any(lv in x for lv in ERROR_LEVELS)]


class Run:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.work = os.path.join(B.WORK, "feature-cost")
        self.rows: list[dict] = []
        self.logs: list[dict] = []

    def prepare(self) -> None:
        if os.path.isdir(self.work):
            shutil.rmtree(self.work)
        os.makedirs(os.path.join(self.work, "bin"))
        self.cert, self.key = os.path.join(self.work, "cert.pem"), os.path.join(self.work, "key.pem")
        B.run_cmd(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", self.cert,
                   "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], 60)
        for attr in ("app_bin", "proxy_bin"):  # run copies: a rebuild meanwhile changes nothing here
            dst = os.path.join(self.work, "bin", attr[:-4])
            shutil.copy2(getattr(self.a, attr), dst)
            setattr(self, attr, dst)
        self.spare = spare_ports(49)

    def start_app(self) -> None:
        self.app_port = spare_ports(1)[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "PROXY_"))}
        env.update({"APP_LISTEN": f"127.0.0.1:{self.app_port}", "APP_ENV": "production", "APP_LOG": "warn",
                    "APP_TLS_CERT": self.cert, "APP_TLS_KEY": self.key})
        p = B.PROCS.start("app", [self.app_bin], env, os.path.join(self.work, "app.log"))
        B.wait_ready("app", self.app_port, "/", p, 20)

    def measure(self, mode: str, rnd: int) -> None:
        d = os.path.join(self.work, f"{mode}-{rnd + 1}")
        logs = os.path.join(d, "logs")
        os.makedirs(logs)
        port, http_port, inspect_port = spare_ports(3)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "PROXY_"))}
        env.update({"PROXY_HTTPS_LISTEN": f"127.0.0.1:{port}", "PROXY_HTTP_LISTEN": f"127.0.0.1:{http_port}",
                    "PROXY_TLS_CERT": self.cert, "PROXY_TLS_KEY": self.key, "PROXY_TLS_GENERATE": "false",
                    "PROXY_LOG_DIR": logs, "LOG_RETENTION": "false", "PROXY_LOG": "warn",
                    # h2load never reconnects after the GOAWAY that ends 1,000 requests (nghttp2#1197)
                    "PROXY_KEEPALIVE_REQUESTS": "1000000"})
        env.update(mode_env(mode, self.app_port, self.spare, inspect_port))
        p = B.PROCS.start(f"proxy-{mode}", [self.proxy_bin], env, os.path.join(d, "stdout.log"))
        try:
            B.wait_ready(f"proxy ({mode})", port, "/", p, 20)
            check_answers(mode, port)
            for sc in SCENARIOS:
                res = h2load_run(sc, port, self.a.duration, self.a.threads, d)
                self.rows.append({"round": rnd + 1, "mode": mode, "scenario": sc["id"], **res})
                print(f"[feature-cost] round {rnd + 1}/{self.a.rounds} {mode:9} {sc['id']:12} {res['rps']:9,.0f} req/s"
                      f"  p50 {res['p50_ms']:6.2f} ms  errors {res['errors']}", flush=True)
        finally:
            B.PROCS.stop(p)
        warns, errors = log_lines(logs)
        self.logs.append({"round": rnd + 1, "mode": mode, "warnings": len(warns), "errors": errors[:20],
                          "first_warnings": warns[:5]})

    def failures(self) -> list[str]:
        bad = []
        for r in self.rows:
            total = r["ok"] + r["errors"]
            if r["ok"] == 0:
                bad.append(f"no successful response from {r['mode']} in {r['scenario']} (round {r['round']})")
            elif r["errors"] > B.MAX_ERROR_RATE * total:
                bad.append(f"{r['mode']} in {r['scenario']} (round {r['round']}): {r['errors']:,} errors "
                           f"of {total:,} requests")
        for lg in self.logs:
            bad += [f"{lg['mode']} (round {lg['round']}) logged: {e}" for e in lg["errors"]]
        return bad


def command(a: argparse.Namespace) -> str:
    """The command line, binaries and output folder left out."""
    words = ["python3 bench/feature_cost.py"] + (["--quick"] if a.quick else [])
    if not a.quick or (a.rounds, a.duration) != (1, 1.0):
        words += [f"--rounds {a.rounds}", f"--duration {a.duration:g}"]
    return " ".join(words + ([f"--threads {a.threads}"] if a.threads != 1 else []))


def environment(a: argparse.Namespace) -> dict:
    commit = subprocess.run(["git", "-C", B.ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    # bench/results is what run.sh's earlier steps just wrote, not a change to what is measured.
    dirty = subprocess.run(["git", "-C", B.ROOT, "status", "--porcelain", "--untracked-files=no", "--",
                            ".", ":(exclude)bench/results"],
                           capture_output=True, text=True)
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": (commit.stdout.strip() or "?") + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
            "host": f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs",
            "h2load": B.tool_version(["h2load", "--version"]),
            "command": command(a),
            "mode": "quick" if a.quick else "full", "rounds": a.rounds, "duration": a.duration,
            "threads": a.threads, "proxy_bin": a.proxy_bin, "app_bin": a.app_bin,
            "loadavg_start": list(os.getloadavg())}


def write(res: dict, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    for name, content in (("feature-cost.json", json.dumps(res, indent=1) + "\n"),
                          ("feature-cost.md", markdown(res))):
        path = os.path.join(out, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(path + ".tmp", path)
        print(f"[feature-cost] wrote {os.path.relpath(path, os.getcwd())}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s")
    ap.add_argument("--rounds", type=int, help=f"rounds (default {FULL_ROUNDS}; quick 1)")
    ap.add_argument("--duration", type=float, help=f"seconds per measured run (default {FULL_DURATION:g}; quick 1)")
    ap.add_argument("--threads", type=int, default=1, help="h2load threads (default 1)")
    ap.add_argument("--app-bin", default=os.path.join(B.ROOT, "target", "release", "app"))
    ap.add_argument("--proxy-bin", default=os.path.join(B.ROOT, "target", "release", "proxy"))
    ap.add_argument("--out", default=os.path.join(B.BENCH, "results"), help="where feature-cost.md/.json go")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else FULL_ROUNDS)
    a.duration = a.duration or (1.0 if a.quick else FULL_DURATION)
    if a.rounds < 1 or a.duration <= 0:
        ap.error("--rounds must be >= 1 and --duration > 0")
    for name, path in (("app", a.app_bin), ("proxy", a.proxy_bin)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            print(f"[feature-cost] error: {name} binary not found at {path}", file=sys.stderr)
            return 2
    for tool in ("h2load", "openssl"):
        if not shutil.which(tool):
            print(f"[feature-cost] error: `{tool}` not found (apt-get install -y nghttp2-client openssl)",
                  file=sys.stderr)
            return 2

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    env = environment(a)
    run = Run(a)
    t0 = time.monotonic()
    try:
        run.prepare()
        run.start_app()
        for rnd in range(a.rounds):
            for mode in round_order(rnd):
                run.measure(mode, rnd)
    except B.BenchError as e:
        print(f"[feature-cost] FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[feature-cost] interrupted; stopping everything it started", file=sys.stderr)
        return 130
    finally:
        B.PROCS.stop_all()
    env["loadavg_end"] = list(os.getloadavg())
    env["wall_s"] = time.monotonic() - t0
    res = {"env": env, "comparisons": summarise(run.rows), "runs": run.rows, "proxy_logs": run.logs}
    print()
    print(markdown(res))
    write(res, a.out)
    bad = run.failures()
    if bad:
        print(f"[feature-cost] FAILED: {'; '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
