"""The load generators: wrk (HTTP/1.1; bench/wrk-report.lua prints its summary as JSON) and
h2load (HTTP/2, the new-connection bursts, the 1,000-connection runs), each run bounded in time,
its output parsed into one result dict (req/s, p50/p99, errors by kind)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from procs import BenchError, run_cmd

BENCH = os.path.dirname(os.path.abspath(__file__))


def pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]



def wrk_run(sc: dict, port: int, duration: float, threads: int) -> dict:
    argv = ["wrk", "-t", str(min(threads, sc["conns"])), "-c", str(sc["conns"]), "-d", f"{duration:g}s",
            "--timeout", "5s", "-s", os.path.join(BENCH, "wrk-report.lua")]
    for h in sc.get("headers", []):
        argv += ["-H", h]
    argv.append(f"https://127.0.0.1:{port}{sc['path']}")
    out = run_cmd(argv, duration + 60)
    m = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if not m:
        raise BenchError(f"wrk printed no summary:\n{out[-2000:]}")
    j = json.loads(m.group(1))
    secs = j["duration_us"] / 1e6
    socket_errors = j["connect"] + j["read"] + j["write"] + j["timeout"]
    return {
        "requests": j["requests"],
        "ok": max(0, j["requests"] - j["status"]),
        "rps": j["requests"] / secs if secs else 0.0,
        "p50_ms": j["p50_us"] / 1000.0,
        "p99_ms": j["p99_us"] / 1000.0,
        "errors": j["status"] + socket_errors,
        "error_detail": {k: j[k] for k in ("status", "connect", "read", "write", "timeout") if j[k]},
        "bytes": j["bytes"],
    }


H2_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s")
H2_REQS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")
H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


class H2loadHung(Exception):
    pass


def h2load_once(argv: list[str], log: str, timeout: float, measured: float | None = None) -> tuple[float, float, dict, list[float]]:
    """Runs h2load once; returns (seconds, req/s, counts, latencies in ms).

    With a warm-up (`measured` = the -D duration), h2load's req/s covers the measured part only
    while "finished in" includes the warm-up, and its log holds every request: only those started
    in the last `measured` seconds are kept for the latency percentiles."""
    if os.path.exists(log):
        os.unlink(log)
    try:
        out = run_cmd(argv + [f"--log-file={log}"], timeout)
    except BenchError as e:
        if isinstance(e.__cause__, subprocess.TimeoutExpired) or " exited with -" in str(e):
            raise H2loadHung() from e  # hung, or killed by a signal (libev assertion at shutdown)
        raise
    m = H2_FINISHED.search(out)
    r = H2_REQS.search(out)
    s = H2_STATUS.search(out)
    if not (m and r and s):
        raise BenchError(f"cannot parse h2load output:\n{out[-2000:]}")
    secs = float(m.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[m.group(2)]
    rps = float(m.group(3))
    done, failed, errored, timeouts = int(r.group(3)), int(r.group(5)), int(r.group(6)), int(r.group(7))
    n2xx = int(s.group(1))
    rows = []
    try:
        with open(log) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    rows.append((int(parts[0]), int(parts[2]) / 1000.0))
    except (OSError, ValueError):
        pass
    if measured and rows:
        first = max(t for t, _ in rows) - int(measured * 1e6)
        rows = [(t, v) for t, v in rows if t >= first]
    # `done` includes failed requests; a failed request has no status code. Count each bad
    # request once: everything done that was not a 2xx (or, if larger, h2load's failed count).
    non2xx = int(s.group(2)) + int(s.group(3)) + int(s.group(4))
    counts = {"done": done, "ok": n2xx, "errors": max(done - n2xx, failed), "non2xx": non2xx,
              "failed": failed, "errored": errored, "timeout": timeouts}
    return secs, rps, counts, [v for _, v in rows]


def h2load_run(sc: dict, port: int, duration: float, threads: int, scratch: str) -> dict:
    # sc["host"]: the URL's host, so the :authority / Host (and SNI) a route matches on
    # (bench/feature_cost.py: "localhost", which /etc/hosts resolves to 127.0.0.1).
    url = f"https://{sc.get('host', '127.0.0.1')}:{port}{sc['path']}"
    log = os.path.join(scratch, "h2load.log")
    base = ["h2load", "-t", str(min(threads, sc["conns"]))]
    if sc["kind"] == "h2load-newconn":
        # Each client makes exactly one request on its own new connection (full TLS handshake:
        # h2load keeps no session between clients). Bursts of `conns` clients, repeated until
        # `duration` is spent; the rate is requests / time h2load itself measured.
        argv = base + ["--h1", "-c", str(sc["conns"]), "-n", str(sc["conns"])] + [url]
        total_secs, counts, lat = 0.0, {}, []  # type: ignore[var-annotated]
        t_end = time.monotonic() + duration
        while True:
            secs, _, c, lt = h2load_once(argv, log, 60)
            total_secs += secs
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            lat.extend(lt)
            if time.monotonic() >= t_end:
                break
        rps = counts["done"] / total_secs if total_secs else 0.0
    else:
        argv = base + (["--h1"] if sc.get("h1") else []) + ["-c", str(sc["conns"]), "-m", str(sc.get("streams", 1)),
                                                            "-D", f"{duration:g}"]
        # Quick runs too: with less, 1,000 handshakes on busy shared cores may not be done in time.
        ramp = sc.get("ramp", 0.0)
        if ramp:
            # connections are set up (and requests made) during the warm-up, which is not counted
            argv.append(f"--warm-up-time={ramp:g}")
        argv.append(url)
        # h2load 1.52 sometimes never exits after "Stopped all clients" in a -D run, or aborts
        # there on a libev assertion (seen with 1,000 connections): such a run is run again.
        for attempt in range(1, 4):
            try:
                _, rps, counts, lat = h2load_once(argv, log, duration + ramp + max(8.0, duration), duration if ramp else None)
                break
            except H2loadHung:
                print(f"[bench]     h2load hung or crashed after its run (h2load quirk); retry {attempt}/3", flush=True)
        else:
            # The load generator failed, not the contender: record the run as unmeasured (it
            # shows as `h2load_hung` in the errors column) rather than abort the whole run.
            print(f"[bench]     h2load hung 3 times in a row; this run is unmeasured: {' '.join(argv)}", flush=True)
            return {"requests": 0, "ok": 0, "rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                    "errors": 0, "error_detail": {"h2load_hung": 1}}
    lat.sort()
    errors = counts["errors"]
    detail = {k: counts[k] for k in ("non2xx", "failed", "errored", "timeout") if counts[k]}
    return {
        "requests": counts["done"],
        "ok": counts["ok"],
        "rps": rps,
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "errors": errors,
        "error_detail": detail,
    }
