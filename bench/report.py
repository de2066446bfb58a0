"""Writes bench/results/latest.{md,svg,json} from the results bench.py collected, and the
README's performance block (bench/readme_block.py) from the committed ones.

    python3 bench/report.py [bench/results/latest.json]   redraw latest.md/.svg from a saved run
    python3 bench/report.py --readme README.md            rewrite README's generated block
    python3 bench/report.py --check README.md             exit 1 if that block is not up to date
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
import sys

LABEL = {
    "direct": "direct (no proxy)",
    "nginx": "nginx (as original)",
    "nginx-tuned": "nginx (tuned)",
    "proxy": "proxy (ours)",
    "proxy-h1up": "proxy, HTTP/1.1 upstream",
    "haproxy": "HAProxy",
    "caddy": "Caddy",
}
COLOR = {"direct": "#9e9e9e", "nginx": "#f4b183", "nginx-tuned": "#d9622b", "proxy": "#2f6fd0", "proxy-h1up": "#7aa6e8",
         "haproxy": "#3a9e5c", "caddy": "#9b59b6"}

# The tuned peers of issue 27: the proxy's targets are against the best of those measured.
PEERS = ("nginx-tuned", "haproxy", "caddy")
HEADLINE = ("h1-keepalive", "h1-newconn", "h2-mux")

# The targets from issue 7, all against tuned nginx (nginx at its best).
# (id, text, scenario, kind, threshold)
TARGETS = [
    ("h1-ka", "h1 keep-alive req/s ≥ 1.3× nginx-tuned", "h1-keepalive", "rps_vs_tuned", 1.3),
    ("newconn", "new-connection req/s ≥ 1.0× nginx-tuned", "h1-newconn", "rps_vs_tuned", 1.0),
    ("h2", "h2 req/s ≥ 2× nginx-tuned", "h2-mux", "rps_vs_tuned", 2.0),
    ("p99", "p99 no worse than nginx-tuned (every scenario)", None, "p99", 1.0),
    ("direct", "proxy/direct ≥ 0.5 on h1 keep-alive", "h1-keepalive", "rps_vs_direct", 0.5),
    ("rss", "peak RSS at 1,000 conns ≤ ½ of nginx-tuned's workers combined", "h1-1000conns", "rss", 0.5),
]


def fmt_int(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.2f}×"


def mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def evaluate_targets(res: dict) -> list[dict]:
    sc = res["scenarios"]
    out = []
    for _tid, text, sid, kind, thr in TARGETS:
        row = {"text": text, "measured": "—", "status": "n/a", "why": ""}
        if kind == "p99":
            worse, checked = [], []
            for s_id, s in sc.items():
                su = s["summary"]
                if "proxy" in su and "nginx-tuned" in su:
                    p, n = su["proxy"]["p99_ms"], su["nginx-tuned"]["p99_ms"]
                    checked.append(s_id)
                    if not (p <= n):
                        worse.append(f"{s_id} {fmt_ms(p)} vs {fmt_ms(n)} ms")
            if not checked:
                row["why"] = "proxy or nginx-tuned not measured"
            else:
                row["status"] = "met" if not worse else "not met"
                row["measured"] = "worse in: " + "; ".join(worse) if worse else f"no worse in {len(checked)} scenarios"
            out.append(row)
            continue
        s = sc.get(sid)
        su = s["summary"] if s else {}
        if "proxy" not in su:
            row["why"] = f"proxy not measured in {sid}"
            out.append(row)
            continue
        if kind in ("rps_vs_tuned", "rss") and "nginx-tuned" not in su:
            row["why"] = f"nginx-tuned not measured in {sid}"
            out.append(row)
            continue
        if kind == "rps_vs_direct" and "direct" not in su:
            row["why"] = f"direct not measured in {sid}"
            out.append(row)
            continue
        if kind == "rps_vs_tuned":
            r = ratio(su["proxy"]["rps"], su["nginx-tuned"]["rps"])
            row["measured"] = f"{fmt_ratio(r)} ({fmt_int(su['proxy']['rps'])} vs {fmt_int(su['nginx-tuned']['rps'])} req/s)"
            ok = r is not None and r >= thr
        elif kind == "rps_vs_direct":
            r = ratio(su["proxy"]["rps"], su["direct"]["rps"])
            row["measured"] = f"{fmt_ratio(r)} ({fmt_int(su['proxy']['rps'])} vs {fmt_int(su['direct']['rps'])} req/s)"
            ok = r is not None and r >= thr
        else:  # rss
            p = su["proxy"].get("rss_kib")
            n = su["nginx-tuned"].get("rss_children_kib")
            r = ratio(p, n)
            row["measured"] = f"{fmt_ratio(r)} ({mib(p)} MiB vs {mib(n)} MiB)"
            ok = r is not None and r <= thr
        row["status"] = "met" if ok else "not met"
        out.append(row)
    return out


def best_peer(su: dict, key: str, lower: bool) -> tuple[str | None, float | None]:
    """The best tuned peer measured in a scenario's summary for `key` (lowest if `lower`)."""
    vals = [(c, su[c].get(key)) for c in PEERS if c in su and su[c].get(key) is not None
            and not math.isnan(su[c][key])]
    if not vals:
        return None, None
    return (min if lower else max)(vals, key=lambda cv: cv[1])


def peer_targets(res: dict, idle: dict | None) -> list[dict]:
    """Issue 27's targets: req/s >= every peer, p99 <= the best peer's, CPU per request <= the
    best peer's (h1 keep-alive, new connection, h2), idle memory per connection <= nginx's."""
    out = []
    sc = res["scenarios"]
    for key, what, lower, fmt in (("rps", "req/s ≥ best peer", False, fmt_int), ("p99_ms", "p99 ≤ best peer", True, fmt_ms),
                                  ("cpu_ms_per_1k", "CPU/request ≤ best peer", True, fmt_ms)):
        for sid in HEADLINE:
            su = sc.get(sid, {}).get("summary", {})
            row = {"text": f"{sid}: {what}", "measured": "—", "status": "n/a", "why": ""}
            peer, val = best_peer(su, key, lower)
            mine = su.get("proxy", {}).get(key)
            if peer is None or mine is None:
                row["why"] = "proxy or peers not measured"
            else:
                r = ratio(mine, val)
                row["measured"] = f"{fmt_ratio(r)}: {fmt(mine)} vs {fmt(val)}, {LABEL[peer]}"
                row["status"] = "met" if (mine <= val if lower else mine >= val) else "not met"
            out.append(row)
    for proto in ("h1", "h2"):
        row = {"text": f"idle {proto} connection memory ≤ nginx-tuned's", "measured": "—", "status": "n/a", "why": ""}
        per = idle_per_conn(idle, proto)
        if not per:
            row["why"] = "idle-memory scenario not run"
        else:
            n = max(per)
            px, ng = per[n].get("proxy"), per[n].get("nginx-tuned")
            if px is None or ng is None:
                row["why"] = "proxy or nginx-tuned not measured"
            else:
                row["measured"] = f"{fmt_ratio(ratio(px, ng))}: {px:.1f} vs {ng:.1f} KiB at {n:,} connections"
                row["status"] = "met" if px <= ng else "not met"
        out.append(row)
    return out


def idle_per_conn(idle: dict | None, proto: str) -> dict[int, dict[str, float]]:
    """{connections: {contender: median KiB per connection}} from idle.json's rows."""
    out: dict[int, dict[str, float]] = {}
    for r in (idle or {}).get("rows", []):
        if r["proto"] == proto:
            out.setdefault(r["n"], {}).setdefault(r["contender"], []).append(r["kib_per_conn"])  # type: ignore[arg-type]
    return {n: {c: statistics.median(v) for c, v in cs.items()} for n, cs in out.items()}  # type: ignore[arg-type]


def duration_text(env: dict, idle: dict | None) -> str:
    """How long the run took, from the times the harness recorded."""
    def mins(s: float) -> str:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    text = f"{mins(env['wall_s'])} for the throughput scenarios"
    if idle and "elapsed_s" in idle:
        text += f" + {mins(idle['elapsed_s'])} for the idle-memory scenario"
    elif idle:
        text += " (the idle-memory scenario's time was not recorded in this run)"
    return text


def tls_rows(res: dict) -> list[str]:
    tls = res.get("tls")
    if not tls:
        return ["Not probed in this run (the TLS probe came with issue 27)."]
    probe = res["env"].get("tls_probe", "")
    rows = [f"Probe: {probe}.", ""] if probe else []
    rows += ["| contender | client side (h2load ↔ contender) | upstream side (contender ↔ app) | upstream connections |",
            "| --- | --- | --- | ---: |"]
    for c, v in tls.items():
        n = v.get("upstream_conns")
        rows.append(f"| {LABEL[c]} | {v['client']} | {v['upstream']} | {'—' if n is None else n} |")
    return rows


STATUS_MARK = {"met": "✅ met", "not met": "❌ not met", "n/a": "— n/a"}


def markdown(res: dict) -> str:
    env = res["env"]
    L = []
    L.append("# Benchmark: `proxy` vs nginx, HAProxy and Caddy")
    L.append("")
    if env["mode"].startswith("quick"):
        L.append("> **Quick smoke run** (1 short round per contender): it only shows that every contender starts and "
                 "answers. Its numbers are noisy; run `bench/run.sh` (full) before drawing any conclusion.")
        L.append("")
    L.append(f"Generated by `bench/run.sh{' --quick' if env['mode'].startswith('quick') else ''}` (started {env['date']}), "
             f"commit `{env['commit']}`, in {env['wall_s']:.0f} s.  ")
    L.append(f"Machine: {env['host']}. Load generator, contenders and upstream all share it (loopback only).  ")
    tools = [env.get(k) for k in ("nginx", "haproxy", "caddy", "wrk", "h2load", "openssl")]
    L.append(f"Tools: {'; '.join(t for t in tools if t)}.  ")
    L.append(f"Each scenario: {env['warmup']:g} s warm-up per contender, then {env['rounds']} round(s) of "
             f"{env['duration']:g} s, contenders alternating round by round "
             f"({' → '.join(env['contenders'])}); medians over rounds; {env['threads']} client threads.")
    L.append("")
    L.append("![chart: requests/s per scenario, relative to tuned nginx](latest.svg)")
    L.append("")

    L.append("## Targets (issue 27), against the best tuned peer measured (nginx-tuned, HAProxy, Caddy)")
    L.append("")
    L.append("| target | measured | result |")
    L.append("| --- | --- | --- |")
    for t in peer_targets(res, None):
        why = t["why"].replace("idle-memory scenario not run", "see idle.md")
        L.append(f"| {t['text']} | {t['measured']}{(' (' + why + ')') if why else ''} | {STATUS_MARK[t['status']]} |")
    L.append("")
    L.append("## TLS negotiated (probed before measuring)")
    L.append("")
    L.extend(tls_rows(res))
    L.append("")
    L.append("## Targets (issue 7), against tuned nginx")
    L.append("")
    L.append("| target | measured | result |")
    L.append("| --- | --- | --- |")
    for t in evaluate_targets(res):
        L.append(f"| {t['text']} | {t['measured']}{(' (' + t['why'] + ')') if t['why'] else ''} | "
                 f"{STATUS_MARK[t['status']]} |")
    L.append("")

    L.append("## Ratios")
    L.append("")
    L.append("| scenario | proxy/best peer req/s | proxy/nginx req/s | proxy/nginx-tuned req/s | proxy/direct req/s | "
             "p99 proxy/nginx-tuned | peak RSS proxy/nginx-tuned (all processes) |")
    L.append("| --- | --- | --- | --- | --- | --- | --- |")
    for sid, s in res["scenarios"].items():
        su = s["summary"]
        p = su.get("proxy")
        g = lambda c, k: su[c][k] if c in su and k in su[c] else None  # noqa: E731
        peer, prps = best_peer(su, "rps", False)
        vs_peer = f"{fmt_ratio(ratio(g('proxy', 'rps'), prps))} ({LABEL[peer]})" if peer else "—"
        L.append(f"| {sid} | {vs_peer} | {fmt_ratio(ratio(g('proxy', 'rps'), g('nginx', 'rps')))} | "
                 f"{fmt_ratio(ratio(g('proxy', 'rps'), g('nginx-tuned', 'rps')))} | "
                 f"{fmt_ratio(ratio(g('proxy', 'rps'), g('direct', 'rps')))} | "
                 f"{fmt_ratio(ratio(g('proxy', 'p99_ms'), g('nginx-tuned', 'p99_ms')))} | "
                 f"{fmt_ratio(ratio(g('proxy', 'rss_kib'), g('nginx-tuned', 'rss_kib')))} |" if p else
                 f"| {sid} | — | — | — | — | — | — |")
    L.append("")

    L.append("## Results per scenario")
    L.append("")
    refs = [c for c in ("nginx", "nginx-tuned", "haproxy", "caddy", "direct") if c in env["contenders"]]
    for sid, s in res["scenarios"].items():
        su = s["summary"]
        L.append(f"### {sid}: {s['title']}")
        L.append("")
        skipped = [f"{LABEL[c]}: not run here ({why})." for c, why in s.get("skipped", {}).items() if c in env["contenders"]]
        if skipped:
            L += [" ".join(skipped), ""]
        L.append("| contender | req/s | p50 ms | p99 ms | errors | peak RSS MiB (workers) | CPU ms / 1k req | "
                 + " | ".join(f"vs {LABEL[r]}" for r in refs) + " |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(refs))
        for c, v in su.items():
            err = f"{v['errors']:,}"
            if v["error_detail"]:
                err += " (" + ", ".join(f"{k} {n:,}" for k, n in v["error_detail"].items()) + ")"
            rss = "—"
            if "rss_kib" in v:
                rss = mib(v["rss_kib"])
                if c.startswith("nginx"):
                    rss += f" ({mib(v['rss_children_kib'])})"
            cpu = fmt_ms(v["cpu_ms_per_1k"]) if "cpu_ms_per_1k" in v else "—"
            vs = [fmt_ratio(ratio(v["rps"], su[o]["rps"])) if o in su and o != c else "—" for o in refs]
            L.append(f"| {LABEL[c]} | {fmt_int(v['rps'])} | {fmt_ms(v['p50_ms'])} | {fmt_ms(v['p99_ms'])} | {err} | "
                     f"{rss} | {cpu} | {' | '.join(vs)} |")
        L.append("")

    d = res.get("docker", {})
    L.append("## Docker images (optional)")
    L.append("")
    if not d.get("available"):
        L.append(f"Not measured: {d.get('note', 'skipped')}")
    else:
        L.append("| image | size |")
        L.append("| --- | ---: |")
        for i in d["images"]:
            L.append(f"| `{i['repo']}:{i['tag']}` | {i['size']} |")
        L.append("")
        L.append("For comparison, the original system's README gives 211 MB for its multi-stage Flask app image "
                 "(python:3.8-slim base, 194 MB), beside the nginx:1.19.2 image.")
        L.append("")
        if d["startup"]:
            L.append("| container (`docker run --network host`, loopback) | start → first HTTPS 200 |")
            L.append("| --- | ---: |")
            for e in d["startup"]:
                val = f"{e['first_200_ms']:.0f} ms" if "first_200_ms" in e else f"failed: {e.get('error', '?')}"
                L.append(f"| `{e['image']}` ({e['kind']}) | {val} |")
    L.append("")

    L.append("## Method")
    L.append("")
    L.append("""- **Upstreams.** The app (`target/release/app`, `APP_ENV=production`, `APP_LOG=warn`) answers `GET /`.
  For the 1 MiB scenario a second nginx (not a contender) serves a 1 MiB random file over HTTPS, so the app
  grows no test-only route; every proxy is pointed at it for that scenario and *direct* hits it directly.
- **nginx** runs from `bench/nginx.conf.template` (rendered into `bench/work/run/`, `daemon off`, its own
  prefix, pid and logs; never the system service): the original's TLS 1.2/1.3 protocols and cipher list,
  `proxy_pass https://$upstream_app` to an `upstream app` block, the four `proxy_set_header` lines, `http2`,
  `worker_processes auto`, access log on (combined format, to a file).
  *nginx (as original)* opens a new TLS connection to the upstream per request (nginx's default; it reuses the
  upstream TLS session). *nginx (tuned)* adds `keepalive 512` in the upstream, `proxy_http_version 1.1`,
  `proxy_set_header Connection ""` and buffers its access log (`buffer=64k flush=1s`; the proxy's log writer
  buffers too, while the original nginx writes once per request). Both get `worker_connections 8192` so the
  1,000-connection scenario fits, `ssl_session_cache shared:SSL:10m`, and the TLS pins below.
- **HAProxy** (`bench/haproxy.cfg.template`): one process with `nbthread` = CPUs, `alpn h2,http/1.1`,
  HTTP/1.1 over TLS to the upstream with `http-reuse always` (idle upstream connections shared), the same
  forwarding headers, an access log line per request (`option httplog`) written unbuffered to a file. It
  serves no files: not run in the static-100k scenarios.
- **Caddy** (`bench/Caddyfile.template`): `reverse_proxy` with HTTP/1.1 to the upstream and an idle pool of
  1,024 connections per host (Caddy's default of 32 would close connections beyond it after each use),
  `file_server` + `encode gzip` (level 1) for the static scenarios, a JSON access log line per request
  written unbuffered to a file; no admin endpoint, no ACME.
- **Keep-alive request limits** are raised on every contender (nginx `keepalive_requests` and
  `http2_max_requests` 1,000,000, `PROXY_KEEPALIVE_REQUESTS=1000000`; HAProxy and Caddy have none): h2load
  never reconnects after the GOAWAY that ends a limited connection, so a run would measure the limit.
- **TLS pins**: every contender's client side offers X25519 only (nginx `ssl_ecdh_curve`, HAProxy
  `ssl-default-bind-curves`, Caddy `curves`; the proxy's clients offer nothing else) and its upstream side
  speaks TLS 1.3 (nginx `proxy_ssl_protocols TLSv1.3` and `proxy_ssl_conf_command Groups X25519`, HAProxy
  `ssl-min-ver TLSv1.3`). Before measuring, a byte relay (`bench/tlsprobe.py`) reads each side's ServerHello
  and the table above prints what was negotiated; where a side differs it shows there.
- **proxy** (`target/release/proxy`) gets the same certificate and upstream, access logging on (its default)
  into `bench/work/run/proxy-*/logs`, `PROXY_LOG=warn`.
- **Certificate**: one throwaway self-signed RSA 2048 certificate for `localhost`, used by every server.
- Every contender is started fresh for each scenario (so peak RSS belongs to that scenario) and answers a
  `GET` with 200 before it is measured.
- **Load**: `wrk` (HTTP/1.1; `bench/wrk-report.lua` prints its summary as JSON) and `h2load` (HTTP/2, and the
  new-connection scenario). *h1-newconn*: bursts of `h2load --h1 -c64 -n64`, each client making exactly one
  request on its own connection with a **full** TLS handshake, repeated for the run's duration; req/s is
  requests over the time h2load measured. *h1-resume*: `wrk -H 'Connection: close'`, which reconnects after
  every response and **resumes** the TLS session as browsers do (cheaper handshakes).
- **Errors fail the run** (after the report is written) when a contender's errors exceed 1 % of its
  requests in a scenario, or it answers nothing: such a contender measures nothing. In `h2-reset-attack` the
  bystander's errors are the measurement, so there the limit holds for the proxy only, and a
  peer that answers its bystander nothing is reported (0 req/s), not a failure. A peer on which
  h2load hangs (requests left unanswered past its timeout, three tries) is shown as unmeasured
  (`h2load_hung`) and not run again in that scenario; for the proxy that fails the run.
- **req/s** counts every completed response. **errors** = non-2xx responses + socket errors. wrk: its
  `status` count (non-2xx/3xx; no route here redirects) + connect, read, write and timeout errors. h2load:
  requests done without a 2xx (its failed requests included), broken down as h2load reports them.
- **Latency** p50/p99 is per request, from the request being sent to the response being complete (both tools
  start the clock after the connection is up, so the TLS handshake is not in it). The median over rounds.
- **Peak RSS**: VmRSS polled every 50 ms over each run, summed over the process tree (nginx: master + workers;
  the workers alone in parentheses); the maximum over rounds. **CPU ms / 1k req**: user + system CPU time of
  the contender's processes per 1,000 requests (median over rounds): the cost of a request on a shared box
  (in h1-1000conns it also carries the 1,000 handshakes of the uncounted warm-up).
- Client, contenders and upstream share the same CPUs, so absolute numbers say little; the ratios measured
  in the same run are the point.""")
    L.append("")
    L.append(f"Reproduce: `bench/run.sh` (full) or `bench/run.sh --quick`; `bench/run.sh --help` for options. "
             f"This run took {duration_text(env, None)}. Raw numbers: `latest.json`.")
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------------------------
# chart


def svg(res: dict) -> str:
    env = res["env"]
    scen = res["scenarios"]
    W = 1000
    left = 190
    bar_w = 470
    bar_h = 16
    gap = 4
    y = 92 if env["mode"].startswith("quick") else 76
    body: list[str] = []

    def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
        body.append(f'<text x="{x}" y="{y}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
                    f'fill="{fill}">{html.escape(s)}</text>')

    for sid, s in scen.items():
        su = s["summary"]
        ref = su.get("nginx-tuned", {}).get("rps")
        vmax = max((v["rps"] for v in su.values()), default=1.0) or 1.0
        text(20, y, f"{sid}", 13, weight="bold")
        text(20 + 8 * len(sid) + 14, y, s["title"], 12, fill="#555")
        y += 8
        top = y
        line_at = len(body)  # the tuned-nginx line goes under the bars' labels
        for c, v in su.items():
            w = bar_w * v["rps"] / vmax
            body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLOR[c]}"/>')
            text(left - 8, y + bar_h - 4, LABEL[c], 12, anchor="end")
            r = ratio(v["rps"], ref)
            lbl = f"{fmt_int(v['rps'])} req/s"
            if r is not None and c != "nginx-tuned":
                lbl += f"  ({r:.2f}× tuned nginx)"
            lbl += f"   p99 {fmt_ms(v['p99_ms'])} ms"
            if v["errors"]:
                lbl += f"   errors {v['errors']:,}"
            text(left + w + 6, y + bar_h - 4, lbl, 11, weight="bold" if c == "proxy" else "normal")
            y += bar_h + gap
        if ref:
            x = left + bar_w * ref / vmax
            body.insert(line_at, f'<line x1="{x:.1f}" y1="{top - 3}" x2="{x:.1f}" y2="{y}" stroke="#d9622b" '
                        f'stroke-dasharray="3,3" stroke-width="1"/>')
        y += 22

    # memory panel: 1,000 connections
    mem = scen.get("h1-1000conns")
    if mem:
        su = {c: v for c, v in mem["summary"].items() if "rss_kib" in v}
        if su:
            text(20, y, "Peak RSS at 1,000 connections (MiB, all processes; lower is better)", 13, weight="bold")
            y += 8
            vmax = max(v["rss_kib"] for v in su.values()) or 1
            for c, v in su.items():
                w = bar_w * v["rss_kib"] / vmax
                body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLOR[c]}"/>')
                text(left - 8, y + bar_h - 4, LABEL[c], 12, anchor="end")
                lbl = f"{mib(v['rss_kib'])} MiB"
                if c.startswith("nginx"):
                    lbl += f" (workers {mib(v['rss_children_kib'])})"
                text(left + w + 6, y + bar_h - 4, lbl, 11, weight="bold" if c == "proxy" else "normal")
                y += bar_h + gap
            y += 22

    # targets
    text(20, y, "Targets vs tuned nginx", 13, weight="bold")
    y += 18
    for t in evaluate_targets(res):
        mark, col = {"met": ("✔", "#1a7f37"), "not met": ("✘", "#c62828"), "n/a": ("–", "#888")}[t["status"]]
        text(28, y, mark, 13, weight="bold", fill=col)
        text(46, y, f"{t['text']}: {t['measured'] if t['status'] != 'n/a' else 'n/a (' + t['why'] + ')'}", 11)
        y += 17
    y += 10
    H = y
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
    ]
    title = "proxy vs nginx: requests/s per scenario (bar length relative to the fastest; dashed line = tuned nginx)"
    sub = f"{env['mode']} run, {env['date']}, commit {env['commit']}; {env['host']}"
    hdr = [f'<text x="20" y="26" font-size="16" font-weight="bold" fill="#222">{html.escape(title)}</text>',
           f'<text x="20" y="46" font-size="11" fill="#555">{html.escape(sub)}</text>']
    if env["mode"].startswith("quick"):
        hdr.append('<text x="20" y="64" font-size="12" font-weight="bold" fill="#c62828">quick smoke run: noisy numbers, '
                   'not a result</text>')
    return "\n".join(head + hdr + body + ["</svg>", ""])


def write_all(res: dict, out: str) -> list[str]:
    paths = []
    for name, content in (("latest.json", json.dumps(res, indent=1, default=str) + "\n"),
                          ("latest.md", markdown(res)), ("latest.svg", svg(res))):
        p = os.path.join(out, name)
        tmp = p + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(content)
        os.replace(tmp, p)
        paths.append(p)
    return paths


def main(argv: list[str]) -> int:
    if argv[:1] in (["--readme"], ["--check"]):
        import readme_block  # bench/readme_block.py

        if len(argv) != 2:
            print(f"usage: report.py {argv[0]} README.md", file=sys.stderr)
            return 2
        try:
            fresh, diff = readme_block.update(argv[1], check_only=argv[0] == "--check")
        except readme_block.BlockError as e:
            print(f"report.py: {e}", file=sys.stderr)
            return 2
        if argv[0] == "--readme":
            print(f"{argv[1]}: performance block {'already up to date' if fresh else 'rewritten'}")
            return 0
        if not fresh:
            print(f"{argv[1]}: the performance block differs from bench/results (run `python3 bench/report.py "
                  f"--readme {argv[1]}` and commit):\n{diff}", file=sys.stderr)
            return 1
        print(f"{argv[1]}: performance block matches bench/results")
        return 0
    src = argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "latest.json")
    with open(src, encoding="utf-8") as f:
        data = json.load(f)
    for p in write_all(data, os.path.dirname(os.path.abspath(src))):
        print(p)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(sys.argv[1:]))
