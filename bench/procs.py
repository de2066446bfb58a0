"""The harness's processes and the measurements taken of them: start/stop in process groups
(all killed on any exit), wait for a first 200, /proc sampling of RSS and CPU, and running a
command with a bound. Shared by bench.py, idle.py and callgrind.py; python3 standard library."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A contender could not start or answered nothing: the run fails."""


# --------------------------------------------------------------------------------------------
# processes


class Procs:
    """Every process group started by the harness, so they can all be killed on any exit."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen] = []
        self.containers: list[str] = []

    def start(self, name: str, argv: list[str], env: dict | None, log: str) -> subprocess.Popen:
        out = open(log, "ab")
        try:
            p = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise BenchError(f"{name}: cannot start {argv[0]}: {e}") from e
        finally:
            out.close()
        p.bench_name = name  # type: ignore[attr-defined]
        p.bench_log = log  # type: ignore[attr-defined]
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # nginx: fast shutdown; workers are in the group
            except ProcessLookupError:
                pass
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        else:
            # the leader is gone; make sure nothing it left in its group survives
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.live)):
            self.stop(p, grace=3.0)
        for c in list(self.containers):
            subprocess.run(["docker", "rm", "-f", c], capture_output=True, timeout=30)
            self.containers.remove(c)


PROCS = Procs()


def log_tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    | " + line for line in lines[-n:])
    except OSError:
        return "    | (no log)"


def https_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_ready(name: str, port: int, path: str, proc: subprocess.Popen | None, timeout: float) -> None:
    """Wait until https://127.0.0.1:port/path answers 200, or fail with the process's log."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(
                f"{name} exited with status {proc.returncode} before answering "
                f"(log {proc.bench_log}):\n{log_tail(proc.bench_log)}"  # type: ignore[attr-defined]
            )
        try:
            status, _ = https_get(port, path)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as e:
            last = str(e) or type(e).__name__
        time.sleep(0.05)
    tail = log_tail(proc.bench_log) if proc is not None else ""  # type: ignore[attr-defined]
    raise BenchError(f"{name} did not answer 200 on https://127.0.0.1:{port}{path} within {timeout:.0f}s ({last})\n{tail}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# --------------------------------------------------------------------------------------------
# /proc sampling: peak RSS (summed over a process tree) and CPU time


def tree_pids(root: int) -> list[int]:
    pids = [root]
    i = 0
    while i < len(pids):
        pid = pids[i]
        i += 1
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return pids


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE // 1024
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


class Sampler(threading.Thread):
    """Polls VmRSS of a process tree every `interval` seconds; keeps the peak of the sum (all
    processes) and of the children only (nginx's workers)."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peak_total = 0
        self.peak_children = 0
        self.stop_ev = threading.Event()

    def sample(self) -> None:
        pids = tree_pids(self.root)
        rss = [rss_kib(p) for p in pids]
        self.peak_total = max(self.peak_total, sum(rss))
        self.peak_children = max(self.peak_children, sum(rss[1:]))

    def run(self) -> None:
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.interval)

    def finish(self) -> None:
        self.stop_ev.set()
        self.join()
        self.sample()


def run_cmd(argv: list[str], timeout: float) -> str:
    try:
        p = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, start_new_session=True
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{argv[0]} did not finish within {timeout:.0f}s: {' '.join(argv)}") from e
    out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with {p.returncode}:\n{out[-2000:]}")
    return out
