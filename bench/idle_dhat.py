#!/usr/bin/env python3
"""Where an idle keep-alive connection's heap goes: the proxy under `valgrind --tool=dhat`
(PROXY_WORKERS=1, a throwaway `proxy cert generate` pair) in front of the app (native), N idle
TLS connections opened as bench/idle.py opens them (one `GET /` each, then held), closed, then
SIGTERM so DHAT writes its profile. Two runs (a small and a large N) and their difference per
connection at t-gmax, by allocation site (the first frame outside std/alloc/bytes/hashbrown) and
by crate: what each connection holds, without what every run holds. Loopback only.

    python3 bench/idle_dhat.py --proxy-bin target/profiling/proxy --app-bin target/profiling/app \\
        [--protos h1,h2] [--counts 100,1100] [--out bench/work/dhat]

The bytes are those requested; glibc rounds each block up (16 bytes, 8 of header) and a large
block's untouched pages are not resident, so bench/idle.py's RSS figure is lower for big buffers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402
import idle as I  # noqa: E402

# Frames of these are the allocator's plumbing: the site is their first caller.
INTERNAL = {"std", "alloc", "bytes", "hashbrown", "smallvec", "slab", "indexmap", "?"}


# --------------------------------------------------------------------------------------------
# running


def run_once(a: argparse.Namespace, proto: str, n: int, out: str) -> None:
    run = os.path.join(a.out, f"run-{proto}-{n}")
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(os.path.join(run, "logs"))
    B.run_cmd([a.proxy_bin, "cert", "generate", "--out", os.path.join(run, "tls")], 60)
    cert, key = os.path.join(run, "tls", "localhost.crt"), os.path.join(run, "tls", "localhost.key")
    app_port, port, http_port = a.port_base, a.port_base + 445, a.port_base + 80
    env = dict(os.environ, APP_LISTEN=f"127.0.0.1:{app_port}", APP_ENV="production",
               APP_TLS_CERT=cert, APP_TLS_KEY=key, APP_LOG="warn")
    app = B.PROCS.start("app", [a.app_bin], env, os.path.join(run, "app.log"))
    try:
        B.wait_ready("app", app_port, "/", app, 20)
        env = dict(os.environ, PROXY_HTTP_LISTEN=f"127.0.0.1:{http_port}", PROXY_HTTPS_LISTEN=f"127.0.0.1:{port}",
                   PROXY_UPSTREAM=f"127.0.0.1:{app_port}", PROXY_TLS_CERT=cert, PROXY_TLS_KEY=key,
                   PROXY_TLS_GENERATE="false", PROXY_LOG_DIR=os.path.join(run, "logs"), LOG_RETENTION="false",
                   PROXY_LOG="warn", PROXY_KEEPALIVE_REQUESTS="1000000", PROXY_WORKERS="1")
        argv = ["valgrind", "--tool=dhat", "--fullpath-after=", f"--dhat-out-file={out}", a.proxy_bin]
        px = B.PROCS.start("proxy", argv, env, os.path.join(run, "proxy.log"))
        B.wait_ready("proxy", port, "/", px, 120)
        loop = asyncio.new_event_loop()
        try:
            warm, _ = loop.run_until_complete(I.open_idle(port, proto, 16, 60.0))
            loop.run_until_complete(I.close_all(warm))
            time.sleep(1)
            writers, failed = loop.run_until_complete(I.open_idle(port, proto, n, 120.0))
            print(f"[idle-dhat] {proto} {n}: {len(writers)} held, {failed} failed", flush=True)
            loop.run_until_complete(asyncio.sleep(3))
            # Closed before the SIGTERM: the drain must not be the heap's peak.
            loop.run_until_complete(I.close_all(writers))
            loop.run_until_complete(asyncio.sleep(3))
        finally:
            loop.close()
        os.killpg(px.pid, signal.SIGTERM)
        px.wait(120)
        B.PROCS.live.remove(px)
    finally:
        B.PROCS.stop_all()


# --------------------------------------------------------------------------------------------
# reading DHAT's profile


def crate_of(frame: str) -> str:
    m = re.search(r"\(([^()]*)\)$", frame)
    f = m.group(1) if m else ""
    if f.startswith("in "):
        return "alloc" if "valgrind" in f else "?"
    if f.startswith("/rustc/"):
        return "std"
    m = re.search(r"/registry/src/[^/]+/([A-Za-z0-9_-]+?)-\d+\.\d+\.\d+[^/]*/", f)
    if m:
        c = m.group(1).replace("-", "_")
        return "aws_lc" if c.startswith("aws_lc") else c
    m = re.search(r"/crates/([a-z]+)/", f)
    if m:
        return "ours:" + m.group(1)
    return "aws_lc" if re.search(r"\.[ch]:\d+$", f) else "?"


def site_name(frame: str) -> str:
    m = re.match(r"^0x[0-9A-Fa-f]+: (.*?)(?: \(([^()]*)\))?$", frame)
    name, where = (m.group(1), m.group(2) or "") if m else (frame, "")
    where = re.sub(r"^.*/registry/src/[^/]+/|^.*/(?=crates/)", "", where)
    return f"{re.sub(r'<.*>', '<…>', name)} ({where})"


def load(path: str) -> dict[str, list]:
    """Site → [bytes, blocks, glibc bytes, crate chain] live at t-gmax."""
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    sites: dict[str, list] = collections.defaultdict(lambda: [0, 0, 0, ""])
    for pp in d["pps"]:
        gb, gbk = pp.get("gb", 0), pp.get("gbk", 0)
        if not gb and not gbk:
            continue
        frames = [d["ftbl"][i] for i in pp["fs"]]
        crates = [crate_of(f) for f in frames]
        at = next((i for i, c in enumerate(crates) if c not in INTERNAL), len(frames) - 1)
        chain: list[str] = []
        for c in crates[at:]:
            if c not in INTERNAL and c not in chain:
                chain.append(c)
        chunk = max(32, (gb // gbk + 8 + 15) & ~15) if gbk else 0  # glibc chunk of the mean block
        s = sites[site_name(frames[at])]
        s[0] += gb
        s[1] += gbk
        s[2] += chunk * gbk
        s[3] = ">".join(chain[:4])
    return sites


def table(small: str, n_small: int, big: str, n_big: int, rows: int) -> str:
    sa, sb = load(small), load(big)
    n = n_big - n_small
    empty = [0, 0, 0, ""]
    diff = []
    for key in set(sa) | set(sb):
        va, vb = sa.get(key, empty), sb.get(key, empty)
        diff.append(((vb[0] - va[0]) / n, (vb[1] - va[1]) / n, (vb[2] - va[2]) / n, key, vb[3] or va[3]))
    diff.sort(key=lambda r: -abs(r[0]))
    total = sum(r[0] for r in diff)
    out = [f"per connection at t-gmax: {total:,.0f} B requested, {sum(r[2] for r in diff):,.0f} B as glibc chunks", "",
           "| B/conn | blocks/conn | glibc B/conn | crates (site, then its callers) | site |",
           "| ---: | ---: | ---: | --- | --- |"]
    out += [f"| {r[0]:,.0f} | {r[1]:.2f} | {r[2]:,.0f} | {r[4]} | `{r[3]}` |" for r in diff[:rows] if abs(r[0]) >= 8]
    by: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in diff:
        c = r[4].split(">")[0] if r[4] else "?"
        for i in range(3):
            by[c][i] += r[i]
    out += ["", "| allocating crate | B/conn | blocks/conn | glibc B/conn |", "| --- | ---: | ---: | ---: |"]
    out += [f"| {c} | {v[0]:,.0f} | {v[1]:.2f} | {v[2]:,.0f} |" for c, v in sorted(by.items(), key=lambda x: -x[1][0])
            if abs(v[0]) >= 1]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy-bin", default=os.path.join(B.ROOT, "target", "profiling", "proxy"))
    ap.add_argument("--app-bin", default=os.path.join(B.ROOT, "target", "profiling", "app"))
    ap.add_argument("--protos", default="h1,h2")
    ap.add_argument("--counts", default="100,1100", help="the small and the large N")
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--port-base", type=int, default=23000)
    ap.add_argument("--out", default=os.path.join(B.WORK, "dhat"))
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        print("[idle-dhat] error: `valgrind` not found", file=sys.stderr)
        return 2
    small, big = (int(x) for x in a.counts.split(","))
    os.makedirs(a.out, exist_ok=True)
    try:
        for proto in [p for p in a.protos.split(",") if p in ("h1", "h2")]:
            files = []
            for n in (small, big):
                files.append(os.path.join(a.out, f"dhat-{proto}-{n}.json"))
                run_once(a, proto, n, files[-1])
            text = table(files[0], small, files[1], big, a.rows)
            with open(os.path.join(a.out, f"sites-{proto}.md"), "w", encoding="utf-8") as f:
                f.write(text)
            print(f"\n## {proto}\n\n{text}", flush=True)
    except B.BenchError as e:
        print(f"[idle-dhat] FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
