#!/usr/bin/env python3
"""On-demand certificate latency: how long the first TLS handshake for a new name under
`localhost` takes (the proxy issues that name's certificate during it), against a handshake for
a name its own certificate covers. The client is Python's ssl (OpenSSL) verifying against the
`ca.crt` the proxy created, so every handshake measured is a verified one and the certificate
shown must name exactly the name asked for. Loopback only, standard library only.

Each sample is one new TCP connection + full handshake (no resumption), one after the other:
  - "new name": n<i>-<run>.localhost, never seen before: issued on demand (key generation,
    signing, the CA's own check) while the handshake waits;
  - "same name again": the same name, now from the in-memory cache;
  - "covered": localhost, the proxy's own certificate.
  - "covered, issuance off": localhost on a second proxy with PROXY_TLS_ISSUE_CACHE=0 (the
    ClientHello is not read ahead there), interleaved with the above: what reading the
    ClientHello first costs every other handshake.
Then the new-name measurement with `--concurrency` handshakes for distinct new names in flight
at once (the issuances run on blocking threads, not on the event loop).

  python3 bench/issue_latency.py [--proxy-bin target/release/proxy] [--names 200]
                                  [--concurrency 8] [--out bench/results]

Writes issue-latency.json and issue-latency.md in --out.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(binary: str, work: str, names: int, issue: bool = True) -> tuple[subprocess.Popen, int]:
    https, http = free_port(), free_port()
    tls = os.path.join(work, "tls")
    os.makedirs(tls)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PROXY_HTTP_LISTEN": f"127.0.0.1:{http}",
        "PROXY_HTTPS_LISTEN": f"127.0.0.1:{https}",
        "PROXY_TLS_CERT": os.path.join(tls, "localhost.crt"),
        "PROXY_TLS_KEY": os.path.join(tls, "localhost.key"),
        "PROXY_LOG_DIR": os.path.join(work, "logs"),
        "LOG_RETENTION": "false",
        "PROXY_ACCESS_LOG": "false",
        "PROXY_UPSTREAM": "127.0.0.1:9",  # never asked: handshakes only
        "PROXY_TLS_ISSUE_RATE": str(min(10_000, 10 * names)),
        "PROXY_TLS_ISSUE_CACHE": str(min(10_000, 10 * names)) if issue else "0",
    }
    os.makedirs(env["PROXY_LOG_DIR"])
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"proxy exited with {proc.returncode}; see {env['PROXY_LOG_DIR']}")
        try:
            socket.create_connection(("127.0.0.1", https), timeout=0.2).close()
            if os.path.exists(os.path.join(tls, "ca.crt")):
                return proc, https
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("proxy did not start within 20 s")


def handshake_ms(ctx: ssl.SSLContext, port: int, name: str) -> float:
    """One verified handshake for `name`; its duration in ms (TCP connect included)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            took = (time.perf_counter() - started) * 1000
            sans = [v for (k, v) in tls.getpeercert().get("subjectAltName", ()) if k == "DNS"]
    if name not in sans:
        sys.exit(f"{name}: shown a certificate for {sans}")
    return took


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(pick(0.99), 2),
        "max_ms": round(ordered[-1], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy-bin", default=os.path.join(ROOT, "target/release/proxy"))
    ap.add_argument("--names", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="issue-latency-")
    off_work = tempfile.mkdtemp(prefix="issue-latency-off-")
    proc, port = start_proxy(args.proxy_bin, work, args.names)
    off_proc, off_port = start_proxy(args.proxy_bin, off_work, args.names, issue=False)
    try:
        ctx = ssl.create_default_context(cafile=os.path.join(work, "tls/ca.crt"))
        ctx.set_alpn_protocols(["http/1.1"])
        off_ctx = ssl.create_default_context(cafile=os.path.join(off_work, "tls/ca.crt"))
        off_ctx.set_alpn_protocols(["http/1.1"])
        run = os.getpid()
        for _ in range(20):  # warm-up: the client's and the proxies' first handshakes
            handshake_ms(ctx, port, "localhost")
            handshake_ms(off_ctx, off_port, "localhost")
        new, again, covered, covered_off = [], [], [], []
        # Interleaved, so both proxies see the same machine load.
        for i in range(args.names):
            name = f"n{i}-{run}.localhost"
            new.append(handshake_ms(ctx, port, name))
            again.append(handshake_ms(ctx, port, name))
            covered.append(handshake_ms(ctx, port, "localhost"))
            covered_off.append(handshake_ms(off_ctx, off_port, "localhost"))
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            names = [f"c{i}-{run}.localhost" for i in range(args.names)]
            parallel = list(pool.map(lambda n: handshake_ms(ctx, port, n), names))
    finally:
        for p in (proc, off_proc):
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(off_work, ignore_errors=True)
    result = {
        "what": "first verified TLS handshake for a new *.localhost name (certificate issued "
        "on demand) vs the same name again and a covered name; Python ssl client, loopback",
        "proxy_bin": args.proxy_bin,
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "new_name": summary(new),
        "same_name_again": summary(again),
        "covered_name": summary(covered),
        f"new_name_{args.concurrency}_concurrent": summary(parallel),
        "covered_name_issuance_off": summary(covered_off),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "issue-latency.json"), "w") as f:
        json.dump(result, f, indent=2)
    rows = [k for k in result if isinstance(result[k], dict)]
    lines = [
        "# On-demand certificate issuance: handshake latency",
        "",
        f"`python3 bench/issue_latency.py --names {args.names} --concurrency {args.concurrency}`"
        f" ({result['cpus']} CPUs, load {result['load_avg_1m']} at the end)",
        "",
        "| handshake | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    for k in rows:
        s = result[k]
        lines.append(f"| {k.replace('_', ' ')} | {s['n']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |")
    with open(os.path.join(args.out, "issue-latency.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
