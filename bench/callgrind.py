#!/usr/bin/env python3
"""Instructions per request in the proxy, and in HAProxy by the same method (callgrind):
noise-free where req/s on shared cores is not. The contender runs under `valgrind
--tool=callgrind` with instrumentation off and one thread (PROXY_WORKERS=1, HAProxy `nbthread 1`);
h2load warms its connections, then instrumentation is switched on for exactly N (and 2N) requests
(HTTP/1.1 keep-alive, and HTTP/2 multiplexed) and the contender's instructions (Ir) are divided
by N. The upstream app runs natively and is not counted. Loopback only; needs valgrind and h2load.

    python3 bench/callgrind.py [--proxy-bin target/profiling/proxy] [--requests 2000]
                               [--contenders proxy,proxy-h1up,haproxy]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
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


def start(bench: B.Bench, who: str, kind: str, d: str):
    """The contender under callgrind, one thread; returns (process, port)."""
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
    if who == "proxy-h1up":
        extra["PROXY_UPSTREAM_HTTP2"] = "false"
    try:
        proc = bench.start_proxy(bench.ports["app"], "/", f"cg-{who}-{kind}", extra=extra)
    finally:
        bench.a.proxy_bin = real_bin
    return proc, bench.ports["proxy"]


def measure(bench: B.Bench, who: str, kind: str, n: int, conns: int) -> float:
    d = os.path.join(bench.run_dir, f"cg-{who}-{kind}")
    os.makedirs(d, exist_ok=True)
    proc, port = start(bench, who, kind, d)
    try:
        url = f"https://127.0.0.1:{port}/"
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy-bin", default=os.path.join(B.ROOT, "target", "profiling", "proxy"))
    ap.add_argument("--app-bin", default=os.path.join(B.ROOT, "target", "release", "app"))
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--port-base", type=int, default=28000)
    ap.add_argument("--contenders", default="proxy", help="comma-separated subset of: " + ", ".join(CONTENDERS))
    a = ap.parse_args()
    who = [c for c in a.contenders.split(",") if c]
    if not who or any(c not in CONTENDERS for c in who):
        ap.error(f"--contenders: a comma-separated subset of {', '.join(CONTENDERS)}")
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
    try:
        bench.prepare()
        bench.start_app()
        for c in who:
            for kind in ("h1", "h2"):
                per = measure(bench, c, kind, a.requests, a.conns)
                print(f"[callgrind] {c} {kind}: {per:,.0f} instructions per request "
                      f"({a.requests} requests on {a.conns} keep-alive connections; handshakes not counted)", flush=True)
    except B.BenchError as e:
        print(f"[callgrind] FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        B.PROCS.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
