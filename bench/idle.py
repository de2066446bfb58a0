#!/usr/bin/env python3
"""Idle-memory scenario: N keep-alive TLS connections (HTTP/1.1 or HTTP/2) that each made one
request and then sit idle; the RSS delta per connection, our proxy against tuned nginx (its
workers' RSS summed). Driven by bench/run.sh after bench.py (same open-file limit); python3
standard library only (asyncio + ssl). Loopback only; every contender is started fresh per
(protocol, N) so freed-but-kept allocator memory of an earlier step does not hide a delta.

Writes idle.json and idle.md next to latest.* in --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (bench/bench.py: processes, TLS material, contenders)

CONTENDERS = ["nginx-tuned", "proxy"]
CONCURRENCY = 64  # handshakes in flight while connections are set up
SETTLE_S = 1.0  # after the last connection is up, before the RSS is read


# --------------------------------------------------------------------------------------------
# clients: one request per connection, then hold it open


def client_ctx(alpn: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    return ctx


async def h1_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return lines[0].split(" ")[1] == "200"


def h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


# HPACK, static table only: :method GET, :scheme https, :path /, :authority localhost (literal)
H2_REQUEST = bytes([0x82, 0x87, 0x84, 0x41, 9]) + b"localhost"


async def h2_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(0x4, 0, 0, b"")
                 + h2_frame(0x1, 0x5, 1, H2_REQUEST))  # HEADERS, END_STREAM | END_HEADERS
    await writer.drain()
    ok = False
    while True:
        head = await reader.readexactly(9)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await reader.readexactly(length)
        if kind == 0x4 and not flags & 0x1:  # SETTINGS: ack
            writer.write(h2_frame(0x4, 0x1, 0, b""))
        elif kind == 0x6 and not flags & 0x1:  # PING: answer
            writer.write(h2_frame(0x6, 0x1, 0, payload))
        elif kind == 0x7:  # GOAWAY
            return False
        elif stream == 1 and kind == 0x1:
            ok = True  # response HEADERS (status not decoded: errors show as GOAWAY/RST)
        elif stream == 1 and kind == 0x3:
            return False
        if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:
            await writer.drain()
            return ok


async def open_idle(port: int, proto: str, n: int, timeout: float) -> tuple[list, int]:
    """Open n connections, one request each; return the open writers and the failures."""
    ctx = client_ctx("h2" if proto == "h2" else "http/1.1")
    sem = asyncio.Semaphore(CONCURRENCY)
    writers: list = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), timeout)
                ok = await asyncio.wait_for((h2_request if proto == "h2" else h1_request)(reader, writer), timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError, ValueError, IndexError):
                failed += 1
                return
            writers.append(writer)
            if not ok:
                failed += 1

    await asyncio.gather(*(one() for _ in range(n)))
    return writers, failed


async def close_all(writers: list) -> None:
    for w in writers:
        w.transport.abort()
    await asyncio.sleep(0)


# --------------------------------------------------------------------------------------------
# measuring


def rss_of(c: str, pid: int) -> int:
    """KiB: the proxy's process; nginx's workers summed (its master holds no connection)."""
    pids = B.tree_pids(pid)
    if c.startswith("nginx"):
        pids = pids[1:]
    return sum(B.rss_kib(p) for p in pids)


def measure(bench: B.Bench, c: str, proto: str, n: int) -> dict:
    port = bench.ports[c]
    tag = f"idle-{proto}-{n}"
    if c == "proxy":
        proc = bench.start_proxy(bench.ports["app"], "/", tag)
    else:
        proc = bench.start_nginx(f"{c}-{tag}", "nginx.conf.template", port, bench.ports["app"], True, "/")
    try:
        loop = asyncio.new_event_loop()
        try:
            # warm: the upstream connection(s), TLS session caches, first-request allocations
            w, _ = loop.run_until_complete(open_idle(port, proto, 16, 10.0))
            loop.run_until_complete(close_all(w))
            time.sleep(0.3)
            before = rss_of(c, proc.pid)
            t0 = time.monotonic()
            writers, failed = loop.run_until_complete(open_idle(port, proto, n, 30.0))
            setup_s = time.monotonic() - t0
            loop.run_until_complete(asyncio.sleep(SETTLE_S))
            after = rss_of(c, proc.pid)
            if os.environ.get("IDLE_HOOK"):  # e.g. a debugger attaching to inspect the heap
                os.system(os.environ["IDLE_HOOK"].replace("{pid}", str(proc.pid)))
            if proc.poll() is not None:
                raise B.BenchError(f"{c} died holding {n} idle connections:\n{B.log_tail(proc.bench_log)}")
            loop.run_until_complete(close_all(writers))
        finally:
            loop.close()
    finally:
        B.PROCS.stop(proc)
    held = n - failed
    return {"contender": c, "proto": proto, "n": n, "held": held, "failed": failed,
            "rss_before_kib": before, "rss_after_kib": after, "setup_s": setup_s,
            "kib_per_conn": (after - before) / held if held else float("nan")}


# --------------------------------------------------------------------------------------------
# report


def markdown(rows: list[dict], counts: list[int], rounds: int) -> str:
    out = ["# Idle keep-alive TLS connections: memory per connection", "",
           f"Each connection made one request (`GET /`, answered by the app through the contender) and then sat idle "
           f"for {SETTLE_S:g} s; RSS delta after / before, divided by the connections held "
           f"(proxy: its process; nginx-tuned: its workers summed). Median of {rounds} round(s), "
           f"a fresh contender per measurement. KiB = 1,024 bytes.", "",
           "| protocol | connections | nginx-tuned KiB/conn | proxy KiB/conn | proxy/nginx | failed (nginx / proxy) |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for proto in ("h1", "h2"):
        for n in counts:
            cell = {}
            for c in CONTENDERS:
                rs = [r for r in rows if r["contender"] == c and r["proto"] == proto and r["n"] == n]
                if rs:
                    cell[c] = (statistics.median(r["kib_per_conn"] for r in rs), sum(r["failed"] for r in rs))
            if len(cell) < 2:
                continue
            (ng, ngf), (px, pxf) = cell["nginx-tuned"], cell["proxy"]
            ratio = px / ng if ng > 0 else float("nan")
            out.append(f"| {proto} | {n:,} | {ng:.1f} | {px:.1f} | {ratio:.2f}× | {ngf} / {pxf} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 connections only, 1 round")
    ap.add_argument("--counts", default=None, help="comma-separated connection counts (default 1000,5000,10000)")
    ap.add_argument("--protos", default="h1,h2")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--rounds", type=int, default=None, help="default 1 (quick) or 2")
    ap.add_argument("--app-bin", default=os.path.join(B.ROOT, "target", "release", "app"))
    ap.add_argument("--proxy-bin", default=os.path.join(B.ROOT, "target", "release", "proxy"))
    # Below Linux's ephemeral range (32768-60999): 10,000 client connections leave as many
    # TIME_WAIT ports behind, which must not collide with the next contender's listener.
    ap.add_argument("--port-base", type=int, default=29000)
    ap.add_argument("--out", default=os.path.join(B.BENCH, "results"))
    a = ap.parse_args()
    counts = [int(x) for x in (a.counts or ("1000" if a.quick else "1000,5000,10000")).split(",")]
    rounds = a.rounds or (1 if a.quick else 2)
    protos = [p for p in a.protos.split(",") if p in ("h1", "h2")]
    contenders = [c for c in CONTENDERS if c in a.contenders.split(",")]
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile != resource.RLIM_INFINITY:
        skipped = [n for n in counts if n + 1000 > nofile]
        counts = [n for n in counts if n + 1000 <= nofile]
        if skipped:
            print(f"[idle] open-file limit {nofile}: skipping {skipped} connections (ulimit -n 11000 for 10,000)",
                  file=sys.stderr)
        if not counts:
            return 2
    for name, path in (("app", a.app_bin), ("proxy", a.proxy_bin)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            print(f"[idle] error: {name} binary not found at {path}", file=sys.stderr)
            return 2
    ns = argparse.Namespace(port_base=a.port_base, app_bin=a.app_bin, proxy_bin=a.proxy_bin,
                            contenders=contenders)
    bench = B.Bench(ns)
    bench.ports = {k: v for k, v in bench.ports.items() if k in ("app", "static", *contenders, "proxy-http")}
    bench.run_dir = os.path.join(B.WORK, "idle")
    bench.tls = os.path.join(bench.run_dir, "tls")
    bench.cert = os.path.join(bench.tls, "cert.pem")
    bench.key = os.path.join(bench.tls, "key.pem")
    rows: list[dict] = []
    t0 = time.monotonic()
    try:
        bench.prepare()
        bench.start_app()
        for rnd in range(rounds):
            for proto in protos:
                for n in counts:
                    for c in contenders:  # alternating, round by round
                        r = measure(bench, c, proto, n)
                        rows.append(r)
                        print(f"[idle] round {rnd + 1}/{rounds} {proto} {n:>6,} {c:<12} "
                              f"{r['kib_per_conn']:6.1f} KiB/conn  (RSS {r['rss_before_kib'] / 1024:.1f} -> "
                              f"{r['rss_after_kib'] / 1024:.1f} MiB, {r['failed']} failed, set up in {r['setup_s']:.1f} s)",
                              flush=True)
    except B.BenchError as e:
        print(f"[idle] FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        B.PROCS.stop_all()
    os.makedirs(a.out, exist_ok=True)
    for name, content in (("idle.json", json.dumps({"rows": rows, "counts": counts, "rounds": rounds,
                                                     "elapsed_s": time.monotonic() - t0}, indent=1) + "\n"),
                          ("idle.md", markdown(rows, counts, rounds))):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            f.write(content)
        print(f"[idle] wrote {os.path.relpath(os.path.join(a.out, name), os.getcwd())}")
    if any(r["held"] == 0 for r in rows):
        print("[idle] FAILED: a contender held no connection", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
