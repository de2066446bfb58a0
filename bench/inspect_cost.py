#!/usr/bin/env python3
"""What the request inspector costs: the same proxy binary with PROXY_INSPECT_LISTEN empty (off)
and set (on, every exchange captured), in front of the real app, on loopback only.

  python3 bench/inspect_cost.py [--proxy-bin P] [--app-bin A] [--duration 6] [--rounds 3]

Scenarios (h2load, as bench/bench.py runs them): HTTP/1.1 keep-alive (32 connections, one request
at a time each) and HTTP/2 (32 connections x 16 streams), GET / of the app. Rounds alternate off
and on so drift on a shared machine hits both. Prints a Markdown table: median req/s and p50 per
mode and the on/off ratio. Writes nothing; never fails on slow numbers.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench import h2load_run  # noqa: E402  (the harness's own h2load runner and parser)

SCENARIOS = [
    {"id": "h1-keepalive", "title": "HTTP/1.1 keep-alive, 32 conns", "kind": "h2load", "h1": True,
     "conns": 32, "streams": 1, "path": "/", "ramp": 1.0},
    {"id": "h2-mux", "title": "HTTP/2, 32 conns x 16 streams", "kind": "h2load",
     "conns": 32, "streams": 16, "path": "/", "ramp": 1.0},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy-bin", default=str(ROOT / "target" / "release" / "proxy"))
    ap.add_argument("--app-bin", default=str(ROOT / "target" / "release" / "app"))
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="h2load threads")
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="inspect-cost-"))
    subprocess.run([a.proxy_bin, "cert", "generate", "--out", str(tmp)], check=True,
                   capture_output=True, env={"PROXY_LOG_DIR": str(tmp)})
    cert, key = str(tmp / "localhost.crt"), str(tmp / "localhost.key")
    app_port = free_port()
    app = subprocess.Popen([a.app_bin], env={"APP_LISTEN": f"127.0.0.1:{app_port}", "APP_ENV": "production",
                                             "APP_LOG": "warn", "APP_TLS_CERT": cert, "APP_TLS_KEY": key},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(app_port)
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for r in range(a.rounds):
            for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                port = free_port()
                logs = tmp / f"logs-{mode}"
                logs.mkdir(exist_ok=True)
                env = {"PROXY_HTTPS_LISTEN": f"127.0.0.1:{port}", "PROXY_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
                       "PROXY_UPSTREAM": f"127.0.0.1:{app_port}", "PROXY_TLS_CERT": cert, "PROXY_TLS_KEY": key,
                       "PROXY_TLS_GENERATE": "false", "PROXY_LOG_DIR": str(logs), "LOG_RETENTION": "false",
                       "PROXY_LOG": "warn", "PROXY_KEEPALIVE_REQUESTS": "1000000",
                       "PROXY_INSPECT_LISTEN": f"127.0.0.1:{free_port()}" if mode == "on" else ""}
                proxy = subprocess.Popen([a.proxy_bin], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_port(port)
                    for sc in SCENARIOS:
                        res = h2load_run(sc, port, a.duration, a.threads, str(tmp))
                        results.setdefault((sc["id"], mode), []).append(res)
                        print(f"round {r + 1} {mode:3} {sc['id']:13} {res['rps']:9.0f} req/s  "
                              f"p50 {res['p50_ms']:.2f} ms  errors {res['errors']}", flush=True)
                finally:
                    proxy.terminate()
                    proxy.wait(timeout=20)
    finally:
        app.terminate()
        app.wait(timeout=20)
    print(f"\n{a.rounds} rounds x {a.duration:g} s, medians; {os.cpu_count()} CPUs (shared machine)\n")
    print("| scenario | off req/s | on req/s | on/off | off p50 | on p50 | p50 delta |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for sc in SCENARIOS:
        off, on = results[(sc["id"], "off")], results[(sc["id"], "on")]
        rps_off = statistics.median(x["rps"] for x in off)
        rps_on = statistics.median(x["rps"] for x in on)
        p50_off = statistics.median(x["p50_ms"] for x in off)
        p50_on = statistics.median(x["p50_ms"] for x in on)
        print(f"| {sc['title']} | {rps_off:,.0f} | {rps_on:,.0f} | {rps_on / rps_off:.2f}x | "
              f"{p50_off:.2f} ms | {p50_on:.2f} ms | {p50_on - p50_off:+.2f} ms |")


if __name__ == "__main__":
    main()
