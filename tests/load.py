#!/usr/bin/env python3
"""A bounded, steady load of new TLS connections (one GET each) on loopback, for tests/swarm.sh.

Every request opens a new TCP connection and a full TLS handshake, sends `GET /` with
`Connection: close` and reads the whole answer; a request counts as ok when the status is 200 and
the body is the app's answer (a quote, then the X-Forwarded lines). It stops at the first of:
the stop file appearing, --max-seconds, --max-requests, or (with --until-ok) the first ok answer.
It never sends more than --rate requests per second over all workers, and only to 127.0.0.0/8.

Prints one JSON object: total, ok, failed, by_outcome (status code or error name -> count),
seconds, first_ok_after (seconds until the first ok answer), retry_after (the Retry-After values
seen), spans (outcome -> [first, last] start offset in seconds), and the first failures with
their time offset.
"""

import argparse
import ipaddress
import json
import os
import socket
import ssl
import threading
import time

HARD_MAX_SECONDS = 600
HARD_MAX_REQUESTS = 100_000


def one_request(host, port, timeout, ctx):
    """Returns (outcome, retry_after): outcome is 'ok', a status code or an error name."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n"
                            b"User-Agent: swarm-load\r\nConnection: close\r\n\r\n")
                data = b""
                while len(data) < 1 << 20:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
    except (OSError, ssl.SSLError) as e:
        return type(e).__name__, None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        return "bad-answer", None
    status = parts[1]
    retry_after = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "retry-after":
            retry_after = value.strip()
    text = body.decode("utf-8", "replace")
    if status == "200" and "X-Forwarded-Proto: https" in text and not text.startswith("X-"):
        return "ok", retry_after
    return status, retry_after


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, default=20.0, help="requests per second, all workers")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=10.0, help="per request")
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--max-requests", type=int, default=10_000)
    p.add_argument("--stop-file", help="stop once this file exists")
    p.add_argument("--until-ok", action="store_true", help="stop after the first ok answer")
    a = p.parse_args()
    if not ipaddress.ip_address(a.host).is_loopback:
        p.error("--host must be a loopback address")
    max_seconds = min(a.max_seconds, HARD_MAX_SECONDS)
    max_requests = min(a.max_requests, HARD_MAX_REQUESTS)

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic()
    interval = 1.0 / max(a.rate, 0.1)
    state = {"next": t0, "total": 0, "ok": 0, "by": {}, "first_ok": None,
             "retry_after": set(), "failures": [], "spans": {}}

    def should_stop():
        if stop.is_set():
            return True
        if time.monotonic() - t0 >= max_seconds or state["total"] >= max_requests:
            return True
        return bool(a.stop_file and os.path.exists(a.stop_file))

    def worker():
        while True:
            with lock:
                if should_stop():
                    stop.set()
                    return
                slot = state["next"]
                state["next"] = max(slot, time.monotonic()) + interval
                state["total"] += 1
            delay = slot - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            started = time.monotonic() - t0
            outcome, retry_after = one_request(a.host, a.port, a.timeout, ctx)
            with lock:
                state["by"][outcome] = state["by"].get(outcome, 0) + 1
                span = state["spans"].setdefault(outcome, [round(started, 3), round(started, 3)])
                span[1] = round(started, 3)
                if retry_after is not None:
                    state["retry_after"].add(retry_after)
                if outcome == "ok":
                    state["ok"] += 1
                    if state["first_ok"] is None:
                        state["first_ok"] = round(started, 3)
                    if a.until_ok:
                        stop.set()
                elif len(state["failures"]) < 20:
                    state["failures"].append([round(started, 3), outcome])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, a.workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(state["by"].values())
    print(json.dumps({
        "total": total,
        "ok": state["ok"],
        "failed": total - state["ok"],
        "by_outcome": state["by"],
        "seconds": round(time.monotonic() - t0, 2),
        "first_ok_after": state["first_ok"],
        "retry_after": sorted(state["retry_after"]),
        "first_failures": state["failures"],
        "spans": state["spans"],
    }, sort_keys=True))


if __name__ == "__main__":
    main()
