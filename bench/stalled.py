"""The stalled-downloader scenario (issue 26 item 1): clients that open HTTP/2 streams for a large
answer with SETTINGS_INITIAL_WINDOW_SIZE=0 (they take no byte) and PING every second, while
well-behaved clients (new HTTP/1.1 connections, `GET /healthz`) measure what is left for others.
Each contender is measured without and with the attackers: bystander req/s, requests served and
failed (each allowed 2 s).

Standalone (bench/run.sh and bench.py are untouched): the app serves a ~3.4 MB page (a large
`index.txt` template), each proxy binary given and nginx (HTTP/1.1 to the app, as the original
system) sit in front of it. Loopback only, bounded in time; writes results/stalled.{json,md}.

    python3 bench/stalled.py --app-bin target/release/app --proxy-bin target/release/proxy \
        [--before-bin OLD_PROXY] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

from reset_attack import drain, frame, get_block

BENCH = os.path.dirname(os.path.abspath(__file__))
PORTS = {"app": 26400, "nginx": 26401, "proxy": 26402, "proxy-http": 26403, "before": 26404, "before-http": 26405}
CONNECTIONS = 2  # attacking connections
STREAMS = 8  # never-read streams on each
PAGE_BYTES = 3_400_000

NGINX_CONF = """
worker_processes 1;
pid @@P@@/nginx.pid;
error_log @@P@@/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path @@P@@/tmp; proxy_temp_path @@P@@/tmp;
    fastcgi_temp_path @@P@@/tmp; uwsgi_temp_path @@P@@/tmp; scgi_temp_path @@P@@/tmp;
    server {
        listen 127.0.0.1:@@LISTEN@@ ssl http2;
        ssl_certificate @@CERT@@; ssl_certificate_key @@KEY@@;
        location / { proxy_pass https://127.0.0.1:@@APP@@; proxy_ssl_verify off; }
    }
}
"""


class Attackers:
    """`CONNECTIONS` connections of `STREAMS` window-0 streams for `/`, a PING each second."""

    def __init__(self, port: int) -> None:
        self.port, self.halt = port, threading.Event()
        self.threads = [threading.Thread(target=self.one, daemon=True) for _ in range(CONNECTIONS)]

    def __enter__(self) -> "Attackers":
        for t in self.threads:
            t.start()
        time.sleep(2)  # the app's answers reach the proxy and fill what they can
        return self

    def __exit__(self, *_: object) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(timeout=5)

    def one(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        block = get_block(f"localhost:{self.port}".encode(), b"/")
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            window_zero = struct.pack(">HI", 4, 0)
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, window_zero) + frame(4, 1, 0, b""))
            tls.sendall(b"".join(frame(1, 0x5, 1 + 2 * i, block) for i in range(STREAMS)))
            while not self.halt.wait(1.0):
                if not drain(tls):
                    return
                tls.sendall(frame(6, 0, 0, b"\0" * 8))


BYSTANDERS = 4
PAGE_CONNECTIONS = 10  # the unread-error-page scenario (issue 26 item 3)
PAGE_STREAMS = 128


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def unread_pages(port: int, pid: int) -> dict:
    """The proxy's RSS before and while `PAGE_CONNECTIONS` x `PAGE_STREAMS` window-0 streams wait
    for gzip-compressed error pages (`GET /nonexistent`, PINGs each second)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    block = get_block(f"localhost:{port}".encode(), b"/nonexistent")
    block += b"\x00\x0faccept-encoding\x04gzip"
    before = rss_kib(pid)
    conns = []
    try:
        for _ in range(PAGE_CONNECTIONS):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            tls = ctx.wrap_socket(raw, server_hostname="localhost")
            conns.append(tls)
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, struct.pack(">HI", 4, 0))
                        + frame(4, 1, 0, b""))
            tls.sendall(b"".join(frame(1, 0x5, 1 + 2 * i, block) for i in range(PAGE_STREAMS)))
        for _ in range(3):
            time.sleep(1)
            for tls in conns:
                drain(tls)
                tls.sendall(frame(6, 0, 0, b"\0" * 8))
        return {"streams": PAGE_CONNECTIONS * PAGE_STREAMS, "rss_before_kib": before, "rss_with_kib": rss_kib(pid)}
    finally:
        for tls in conns:
            tls.close()


def bystander(port: int, seconds: float) -> dict:
    """`BYSTANDERS` threads, each `GET /healthz` on a new HTTP/1.1 connection, back to back, each
    allowed 2 s, for `seconds`: req/s, requests served and failed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    counts = {"succeeded": 0, "failed": 0}
    lock, end = threading.Lock(), time.monotonic() + seconds

    def one() -> None:
        while time.monotonic() < end:
            try:
                c = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=ctx)
                c.request("GET", "/healthz", headers={"Host": "localhost"})
                r = c.getresponse()
                ok = r.status == 200 and r.read() == b"ok\n"
                c.close()
            except (OSError, http.client.HTTPException):
                ok = False
            with lock:
                counts["succeeded" if ok else "failed"] += 1

    threads = [threading.Thread(target=one) for _ in range(BYSTANDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"req_s": counts["succeeded"] / seconds, **counts}


def wait_port(port: int, proc: subprocess.Popen, name: str) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}); see its output above")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--app-bin", required=True)
    ap.add_argument("--proxy-bin", required=True)
    ap.add_argument("--before-bin", help="a proxy binary without the fix, measured the same way")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(BENCH, "results"))
    a = ap.parse_args()
    procs: list[subprocess.Popen] = []
    results: dict = {"connections": CONNECTIONS, "streams_each": STREAMS, "page_bytes": PAGE_BYTES, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="stalled-") as d:
        try:
            measure(a, d, procs, results)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    write(a, results)
    return 0


def measure(a: argparse.Namespace, d: str, procs: list[subprocess.Popen], results: dict) -> None:
    """Start the app, the proxies and nginx (into `procs`), then measure each contender."""
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    tpl = os.path.join(d, "templates")
    os.makedirs(tpl)
    line = "a line of a large page, as an app with a real answer sends it: 0123456789\n"
    with open(os.path.join(tpl, "index.txt"), "w") as f:
        f.write(line * (PAGE_BYTES // len(line)))
    env = dict(os.environ, APP_LISTEN=f"127.0.0.1:{PORTS['app']}", APP_ENV="production", APP_TLS_CERT=cert,
               APP_TLS_KEY=key, APP_TEMPLATES=tpl, APP_LOG="warn")
    procs.append(subprocess.Popen([a.app_bin], env=env))
    wait_port(PORTS["app"], procs[-1], "app")
    pids: dict[str, int] = {}
    contenders = {"proxy": a.proxy_bin} | ({"before": a.before_bin} if a.before_bin else {})
    for name, binary in contenders.items():
        logs = os.path.join(d, f"{name}-logs")
        os.makedirs(logs)
        env = dict(os.environ, PROXY_HTTP_LISTEN=f"127.0.0.1:{PORTS[name + '-http']}",
                   PROXY_HTTPS_LISTEN=f"127.0.0.1:{PORTS[name]}", PROXY_UPSTREAM=f"127.0.0.1:{PORTS['app']}",
                   PROXY_TLS_CERT=cert, PROXY_TLS_KEY=key, PROXY_TLS_GENERATE="false", PROXY_LOG_DIR=logs,
                   LOG_RETENTION="false", PROXY_LOG="warn", PROXY_WORKERS="1",
                   PROXY_KEEPALIVE_REQUESTS="1000000")
        procs.append(subprocess.Popen([binary], env=env))
        wait_port(PORTS[name], procs[-1], name)
        pids[name] = procs[-1].pid
    ng = os.path.join(d, "nginx")
    os.makedirs(os.path.join(ng, "tmp"))
    conf = NGINX_CONF
    for k, v in {"P": ng, "LISTEN": str(PORTS["nginx"]), "CERT": cert, "KEY": key, "APP": str(PORTS["app"])}.items():
        conf = conf.replace(f"@@{k}@@", v)
    with open(os.path.join(ng, "nginx.conf"), "w") as f:
        f.write(conf)
    procs.append(subprocess.Popen(["nginx", "-p", ng, "-c", os.path.join(ng, "nginx.conf"), "-g", "daemon off;",
                                   "-e", os.path.join(ng, "error.log")]))
    wait_port(PORTS["nginx"], procs[-1], "nginx")
    for name in [*contenders, "nginx"]:
        quiet = bystander(PORTS[name], a.seconds)
        with Attackers(PORTS[name]):
            attacked = bystander(PORTS[name], a.seconds)
        results["runs"][name] = {"alone": quiet, "attacked": attacked}
        print(f"[stalled] {name}: alone {quiet}, beside the attackers {attacked}", flush=True)
    for name, pid in pids.items():
        results["runs"][name]["unread_pages"] = unread_pages(PORTS[name], pid)
        print(f"[stalled] {name}: unread error pages {results['runs'][name]['unread_pages']}", flush=True)


def write(a: argparse.Namespace, results: dict) -> None:
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "stalled.json"), "w") as f:
        json.dump(results, f, indent=2)
    rows = ["| contender | alone: req/s | alone: failed | attacked: req/s | attacked: succeeded | attacked: failed |",
            "|---|---|---|---|---|---|"]
    for name, r in results["runs"].items():
        q, t = r["alone"], r["attacked"]
        rows.append(f"| {name} | {q['req_s']:.0f} | {q['failed']} | {t['req_s']:.0f} | {t['succeeded']} | {t['failed']} |")
    with open(os.path.join(a.out, "stalled.md"), "w") as f:
        mem = [f"| {n} | {r['unread_pages']['streams']} | {r['unread_pages']['rss_before_kib'] / 1024:.0f} MB | "
               f"{r['unread_pages']['rss_with_kib'] / 1024:.0f} MB |" for n, r in results["runs"].items() if "unread_pages" in r]
        f.write(f"Bystander `GET /healthz` ({BYSTANDERS} clients, a new HTTP/1.1 connection each, each allowed 2 s, {a.seconds} s) beside {CONNECTIONS} "
                f"connections x {STREAMS} never-read streams of a {PAGE_BYTES:,}-byte page (window 0, a PING a "
                "second); proxy: 1 worker.\n\n" + "\n".join(rows) + "\n")
        f.write(f"\nUnread error pages: {PAGE_CONNECTIONS} connections x {PAGE_STREAMS} streams of `GET /nonexistent`, "
                "`Accept-Encoding: gzip`, window 0, a PING a second, 3 s (the proxy's RSS; compression on).\n\n"
                "| proxy | streams | RSS before | RSS with them |\n|---|---|---|---|\n" + "\n".join(mem) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    raise SystemExit(main())
