"""README's performance block: rendered from the committed bench/results/latest.json,
idle.json and (when committed) feature-cost.json, written between its BEGIN/END markers
(`python3 bench/report.py --readme README.md`) and checked (`--check`, run by CI), so no README
figure can drift from a committed run."""

from __future__ import annotations

import difflib
import json
import os
import textwrap

import report  # bench/report.py: formatting, labels, targets
from feature_cost import NOISE_MARK  # the verdict when rounds overlap

BEGIN = "<!-- BEGIN bench/report.py: generated from bench/results/latest.json and idle.json; edit with `python3 bench/report.py --readme README.md` -->"
END = "<!-- END bench/report.py -->"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# README columns, in this order, when the run measured them.
COLUMNS = ("proxy", "proxy-h1up", "nginx-tuned", "haproxy", "caddy", "nginx", "direct")
WIDTH = 100  # README's prose is wrapped at this width


class BlockError(Exception):
    """README has no (or a broken) generated block, or the results cannot be read."""


def optional(results: str, name: str) -> dict | None:
    """A results file that a run may not have written (None when absent)."""
    try:
        with open(os.path.join(results, name), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BlockError(f"{results}/{name}: {e}") from e


def load(results: str = RESULTS) -> tuple[dict, dict | None, dict | None]:
    """latest.json, idle.json and feature-cost.json (the last two optional)."""
    try:
        with open(os.path.join(results, "latest.json"), encoding="utf-8") as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        raise BlockError(f"{results}/latest.json: {e}") from e
    return res, optional(results, "idle.json"), optional(results, "feature-cost.json")


def render(res: dict, idle: dict | None, features: dict | None = None) -> str:
    env = res["env"]
    R = report
    rounds = f"{env['rounds']} round{'s' if env['rounds'] != 1 else ''}"
    L = [textwrap.fill(
        f"Latest committed run (`bench/results/latest.md`): {env['mode']}, {rounds} × {env['duration']:g} s per "
        f"contender and scenario after a {env['warmup']:g} s warm-up, started {env['date']} at commit "
        f"`{env['commit']}`, on {env['host']}, shared by the load generator, the contenders and the upstream "
        f"(only ratios within one run mean something). It took {R.duration_text(env, idle)}.", WIDTH, break_on_hyphens=False), ""]
    if env["mode"].startswith("quick"):
        L += ["**This is a quick smoke run: its numbers are noise.**", ""]
    cols = [c for c in COLUMNS if c in env["contenders"]]
    L.append("Requests/s, median over rounds (p99 latency in ms):")
    L.append("")
    L.append("| scenario | " + " | ".join(R.LABEL[c] for c in cols) + " | proxy / best peer |")
    L.append("| --- |" + " ---: |" * (len(cols) + 1))
    for sid, s in res["scenarios"].items():
        su = s["summary"]
        cells = [f"{R.fmt_int(su[c]['rps'])} ({R.fmt_ms(su[c]['p99_ms'])})" if c in su else "—" for c in cols]
        peer, prps = R.best_peer(su, "rps", False)
        vs = f"{R.fmt_ratio(R.ratio(su['proxy']['rps'], prps))} vs {R.LABEL[peer]}" if peer and "proxy" in su else "—"
        L.append(f"| {sid} | " + " | ".join(cells) + f" | {vs} |")
    L.append("")
    L.append("Targets (issue 27), against the best tuned peer measured (" +
             ", ".join(R.LABEL[c] for c in R.PEERS if c in env["contenders"]) + "):")
    L.append("")
    L.append("| target | measured | result |")
    L.append("| --- | --- | --- |")
    for t in R.peer_targets(res, idle):
        L.append(f"| {t['text']} | {t['measured']}{(' (' + t['why'] + ')') if t['why'] else ''} | "
                 f"{R.STATUS_MARK[t['status']]} |")
    L.append("")
    L += idle_rows(idle)
    if features:  # no line at all without a committed feature-cost.json
        L += [""] + feature_rows(features)
    return "\n".join(L) + "\n"


def idle_rows(idle: dict | None) -> list[str]:
    if not idle:
        return ["Idle memory: not measured (no `bench/results/idle.json`)."]
    L = [textwrap.fill(f"Memory per idle keep-alive TLS connection (`bench/results/idle.md`: RSS delta / connections, "
                       f"median of {idle['rounds']} round{'s' if idle['rounds'] != 1 else ''}; proxy: its process, "
                       f"nginx-tuned: its workers), KiB:", WIDTH, break_on_hyphens=False), "",
         "| protocol | connections | proxy | nginx (tuned) | proxy / nginx |", "| --- | ---: | ---: | ---: | ---: |"]
    for proto in ("h1", "h2"):
        for n, v in sorted(report.idle_per_conn(idle, proto).items()):
            px, ng = v.get("proxy"), v.get("nginx-tuned")
            cell = lambda x: "—" if x is None else f"{x:.1f}"  # noqa: E731
            L.append(f"| {proto} | {n:,} | {cell(px)} | {cell(ng)} | {report.fmt_ratio(report.ratio(px, ng))} |")
    return L


def feature_rows(features: dict) -> list[str]:
    """What routing and the inspector cost (feature-cost.json's comparisons): req/s ratio and cost
    per scenario, the budget and its verdict."""
    env = features["env"]
    rounds = f"{env['rounds']} round{'s' if env['rounds'] != 1 else ''}"
    la0, la1 = env["loadavg_start"][0], env["loadavg_end"][0]
    L = [textwrap.fill(
        f"What routing and the inspector cost (`bench/results/feature-cost.md`: the same proxy binary against "
        f"itself without them, req/s, median of {rounds} × {env['duration']:g} s; started {env['date']} at "
        f"commit `{env['commit']}`, load average {la0:.2f} at start and {la1:.2f} at the end):",
        WIDTH, break_on_hyphens=False), ""]
    if env["mode"] == "quick":
        L += ["**This is a quick smoke run: its numbers are noise.**", ""]
    comps = features["comparisons"]
    sids = [s["id"] for s in comps[0]["scenarios"]] if comps else []
    L.append("| comparison | " + " | ".join(sids) + " | budget | result |")
    L.append("| --- |" + " ---: |" * len(sids) + " --- | --- |")
    mark = {True: "✅ within", False: "❌ over", None: "— n/a"}
    for c in comps:
        cells = [f"{s['ratio']:.3f}× (cost {100 * s['cost']:+.1f} %)" if s["ratio"] is not None else "—"
                 for s in c["scenarios"]]
        result = NOISE_MARK if c["within"] is None and c.get("noise") else mark[c["within"]]
        L.append(f"| {c['title']} | " + " | ".join(cells) + f" | {c['budget_text']} | {result} |")
    return L


def splice(readme: str, block: str, path: str) -> str:
    """README's text with the block between the markers replaced."""
    b, e = readme.find(BEGIN), readme.find(END)
    if b < 0 or e < 0 or e < b or readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise BlockError(f"{path}: needs exactly one `{BEGIN}` line followed by one `{END}` line")
    return readme[:b + len(BEGIN)] + "\n" + block + readme[e:]


def update(path: str, check_only: bool, results: str = RESULTS) -> tuple[bool, str]:
    """Rewrites (or only compares) README's block; returns (up to date before, diff text)."""
    try:
        with open(path, encoding="utf-8") as f:
            old = f.read()
    except OSError as e:
        raise BlockError(f"{path}: {e}") from e
    res, idle, features = load(results)
    new = splice(old, render(res, idle, features), path)
    if new == old:
        return True, ""
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), path, path + " (generated)", n=1))
    if not check_only:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, path)
    return False, diff
