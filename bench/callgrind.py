#!/usr/bin/env python3
"""Instructions per request in the proxy, and in HAProxy by the same method (callgrind):
noise-free where req/s on shared cores is not. The contender runs under `valgrind
--tool=callgrind` with instrumentation off and one thread (PROXY_WORKERS=1, HAProxy `nbthread 1`);
h2load warms its connections, then instrumentation is switched on for exactly N (and 2N) requests
(HTTP/1.1 keep-alive, and HTTP/2 multiplexed) and the contender's instructions (Ir) are divided
by N. The upstream app runs natively and is not counted. Loopback only; needs valgrind and h2load.

    python3 bench/callgrind.py [--proxy-bin target/profiling/proxy] [--requests 2000]
                               [--contenders proxy,proxy-h1up,haproxy]
                               [--modes baseline,inspector,routes-50] [--out DIR]

--modes runs the proxy in bench/feature_cost.py's modes (inspector on, 50 routes) beside the
baseline: what routing and capture cost in instructions, where req/s on shared cores cannot
resolve a 2 % budget. --out writes callgrind.md and callgrind.json there.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import feature_cost  # noqa: E402
import peers  # noqa: E402

CONTENDERS = ("proxy", "proxy-h1up", "haproxy")


def total_ir(out_dir: str) -> int:
    total = 0
    for path in glob.glob(os.path.join(out_dir, "callgrind.out*")):
        found = 0
        with open(path, errors="replace") as f:
            for line in f:
                m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
                if m:
                    found = max(found, int(m.group(1)))
        total += found
    return total


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, timeout=60, check=False)


def valgrind(d: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=no",
            f"--callgrind-out-file={d}/callgrind.out.%p"]


def start(bench: B.Bench, who: str, kind: str, d: str, mode: str = "baseline"):
    """The contender under callgrind, one thread, the proxy in feature_cost's `mode`; returns
    (process, port)."""
    if who == "haproxy":
        try:
            argv = peers.haproxy_argv(d, bench.ports["haproxy"], bench.ports["app"], bench.cert, bench.key, threads=1)
        except peers.PeerError as e:
            raise B.BenchError(str(e)) from e
        proc = B.PROCS.start("haproxy", valgrind(d) + argv, None, os.path.join(d, "stdout.log"))
        B.wait_ready("haproxy", bench.ports["haproxy"], "/", proc, 60)
        return proc, bench.ports["haproxy"]
    real_bin = bench.a.proxy_bin
    wrapper = os.path.join(d, "proxy-under-callgrind.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec " + " ".join(valgrind(d)) + f" {real_bin} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    bench.a.proxy_bin = wrapper
    extra = {"PROXY_WORKERS": "1"}
    if mode != "baseline":
        spare = [bench.a.port_base + 100 + i for i in range(49)]  # nothing listens there
        extra.update(feature_cost.mode_env(mode, bench.ports["app"], spare, bench.a.port_base + 99))
    if who == "proxy-h1up":
        extra["PROXY_UPSTREAM_HTTP2"] = "false"
    try:
        proc = bench.start_proxy(bench.ports["app"], "/", f"cg-{who}-{kind}", extra=extra)
    finally:
        bench.a.proxy_bin = real_bin
    return proc, bench.ports["proxy"]


def measure(bench: B.Bench, who: str, kind: str, n: int, conns: int, mode: str = "baseline") -> float:
    d = os.path.join(bench.run_dir, f"cg-{who}-{kind}-{mode}")
    os.makedirs(d, exist_ok=True)
    proc, port = start(bench, who, kind, d, mode)
    try:
        # The name the 50-route table serves the app under (feature_cost.HOST); the same for all.
        url = f"https://{feature_cost.HOST}:{port}/"
        argv = ["h2load", "-t", "1", "-c", str(conns)] + (["--h1"] if kind == "h1" else ["-m", "8"])
        B.run_cmd(argv + ["-n", str(conns * 20), url], 300)  # warm: handshakes, pools, caches
        pid = proc.pid  # the wrapper execs valgrind

        def counted(requests: int) -> int:
            for f in glob.glob(os.path.join(d, "callgrind.out*")):
                os.unlink(f)
            control(pid, "-i", "on")
            B.run_cmd(argv + ["-n", str(requests), url], 900)
            control(pid, "-i", "off")
            control(pid, "-d")
            time.sleep(1.0)
            return total_ir(d)

        # Two runs on as many new connections, n and 2n requests: the difference is n requests
        # exactly, the handshakes and connection set-up cancel out.
        ir = counted(2 * n) - counted(n)
    finally:
        B.PROCS.stop(proc, grace=20)
    return ir / n


MODES = feature_cost.MODES  # the proxy modes it compares, as feature_cost.py defines them


def table(rows: list[dict]) -> list[str]:
    """Instructions per request, and each mode against the proxy's baseline."""
    base = {r["protocol"]: r["instructions"] for r in rows
            if r["contender"] == "proxy" and r["mode"] == "baseline"}
    out = ["| contender | mode | protocol | instructions per request | against the baseline |",
           "| --- | --- | --- | ---: | ---: |"]
    for r in rows:
        b = base.get(r["protocol"]) if r["contender"] == "proxy" and r["mode"] != "baseline" else None
        vs = f"{r['instructions'] / b:.3f}× ({100 * (r['instructions'] / b - 1):+.1f} %)" if b else "—"
        out.append(f"| {r['contender']} | {r['mode']} | {r['protocol']} | {r['instructions']:,} | {vs} |")
    return out


def write(a: argparse.Namespace, rows: list[dict]) -> None:
    commit = subprocess.run(["git", "-C", B.ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "callgrind.json"), "w") as f:
        json.dump({"date": when, "commit": commit, "requests": a.requests, "conns": a.conns,
                   "proxy_bin": a.proxy_bin, "rows": rows}, f, indent=1)
    md = [f"# Instructions per request (callgrind)", "",
          f"`python3 bench/callgrind.py` at {when}, commit `{commit}` (`{a.proxy_bin}`): the contender "
          f"under `valgrind --tool=callgrind`, one thread; {a.requests} and then {2 * a.requests} requests "
          f"on {a.conns} keep-alive connections, h2load to `https://{feature_cost.HOST}/`, the difference "
          "divided by the requests (handshakes cancel out). The app behind runs natively and is not "
          "counted. Modes as in `feature_cost.py`: `inspector` = `PROXY_INSPECT_LISTEN` set (every "
          "exchange captured), `routes-50` = its 50-entry `PROXY_ROUTES`. Counts are repeatable; "
          "seconds on shared cores are not.", ""] + table(rows) + [""]
    with open(os.path.join(a.out, "callgrind.md"), "w") as f:
        f.write("\n".join(md))
    print(f"[callgrind] wrote {a.out}/callgrind.md and callgrind.json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy-bin", default=os.path.join(B.ROOT, "target", "profiling", "proxy"))
    ap.add_argument("--app-bin", default=os.path.join(B.ROOT, "target", "release", "app"))
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--port-base", type=int, default=28000)
    ap.add_argument("--contenders", default="proxy", help="comma-separated subset of: " + ", ".join(CONTENDERS))
    ap.add_argument("--modes", default="baseline",
                    help="the proxy's modes (bench/feature_cost.py): subset of " + ", ".join(MODES))
    ap.add_argument("--out", help="write callgrind.md and callgrind.json to this folder")
    a = ap.parse_args()
    who = [c for c in a.contenders.split(",") if c]
    if not who or any(c not in CONTENDERS for c in who):
        ap.error(f"--contenders: a comma-separated subset of {', '.join(CONTENDERS)}")
    modes = [m for m in a.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes: a comma-separated subset of {', '.join(MODES)}")
    for tool in ("valgrind", "callgrind_control", "h2load", "openssl"):
        if not shutil.which(tool):
            print(f"[callgrind] error: `{tool}` not found", file=sys.stderr)
            return 2
    ns = argparse.Namespace(port_base=a.port_base, app_bin=a.app_bin, proxy_bin=a.proxy_bin, contenders=["proxy"])
    bench = B.Bench(ns)
    bench.ports = {k: v for k, v in bench.ports.items() if k in ("app", "static", "proxy", "proxy-http", "haproxy")}
    bench.run_dir = os.path.join(B.WORK, "callgrind")
    bench.tls = os.path.join(bench.run_dir, "tls")
    bench.cert = os.path.join(bench.tls, "cert.pem")
    bench.key = os.path.join(bench.tls, "key.pem")
    rows: list[dict] = []
    try:
        bench.prepare()
        bench.start_app()
        for c in who:
            for mode in (modes if c == "proxy" else ["baseline"]):
                for kind in ("h1", "h2"):
                    per = measure(bench, c, kind, a.requests, a.conns, mode)
                    rows.append({"contender": c, "mode": mode, "protocol": kind, "instructions": round(per)})
                    print(f"[callgrind] {c} {mode} {kind}: {per:,.0f} instructions per request "
                          f"({a.requests} requests on {a.conns} keep-alive connections; handshakes not counted)",
                          flush=True)
        if a.out:
            write(a, rows)
    except B.BenchError as e:
        print(f"[callgrind] FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        B.PROCS.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
