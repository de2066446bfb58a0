"""The HAProxy and Caddy contenders (issue 27): their configurations rendered from
bench/haproxy.cfg.template and bench/Caddyfile.template, checked, and started in the foreground
from a prefix under bench/work/run/ (never the system services). Used by bench/bench.py."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess

BENCH = os.path.dirname(os.path.abspath(__file__))

# The contenders this module starts, and the command each needs.
TOOLS = {"haproxy": "haproxy", "caddy": "caddy"}


class PeerError(Exception):
    """A peer's configuration was refused or the peer is missing."""


def render(template: str, subst: dict[str, str], dest: str) -> str:
    with open(os.path.join(BENCH, template)) as f:
        conf = f.read()
    for k, v in subst.items():
        conf = conf.replace(f"@@{k}@@", v)
    left = re.findall(r"@@[A-Z_]+@@", conf)
    if left:
        raise PeerError(f"{template}: unfilled placeholders {left}")
    with open(dest, "w") as f:
        f.write(conf)
    return dest


def check(argv: list[str], what: str) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise PeerError(f"{what} refused its configuration ({' '.join(argv)}):\n{(p.stdout + p.stderr)[-2000:]}")


def haproxy_argv(prefix: str, listen: int, upstream: int, cert: str, key: str, threads: int | None = None) -> list[str]:
    """Renders and checks the HAProxy configuration (`threads`: default one per CPU); returns the
    command that runs it."""
    if not shutil.which("haproxy"):
        raise PeerError("haproxy not found (apt-get install -y haproxy)")
    os.makedirs(prefix, exist_ok=True)
    pem = os.path.join(prefix, "cert-and-key.pem")  # HAProxy wants both in one file
    with open(pem, "w") as out:
        for part in (cert, key):
            with open(part) as f:
                out.write(f.read())
    # HAProxy wants two descriptors per connection and refuses to start above the open-file limit.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    maxconn = 30000 if nofile == resource.RLIM_INFINITY else max(1024, min(30000, nofile // 2 - 100))
    conf = render("haproxy.cfg.template", {
        "THREADS": str(threads or os.cpu_count() or 1), "MAXCONN": str(maxconn), "PREFIX": prefix, "PEM": pem,
        "LISTEN": f"127.0.0.1:{listen}", "UPSTREAM": f"127.0.0.1:{upstream}",
    }, os.path.join(prefix, "haproxy.cfg"))
    check(["haproxy", "-c", "-q", "-f", conf], "haproxy")
    return ["haproxy", "-db", "-f", conf]


def caddy_env(prefix: str) -> dict[str, str]:
    """Caddy keeps its data and config under XDG folders: point them into the prefix."""
    env = dict(os.environ)
    env.update({"XDG_DATA_HOME": os.path.join(prefix, "data"), "XDG_CONFIG_HOME": os.path.join(prefix, "config"),
                "HOME": prefix})
    return env


def caddy_argv(prefix: str, listen: int, upstream: int, cert: str, key: str, docroot: str) -> list[str]:
    """Renders and checks the Caddyfile; returns the command that runs it (env: caddy_env)."""
    if not shutil.which("caddy"):
        raise PeerError("caddy not found (apt-get install -y caddy)")
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = render("Caddyfile.template", {
        "PORT": str(listen), "UPSTREAM": f"127.0.0.1:{upstream}", "CERT": cert, "KEY": key,
        "PREFIX": prefix, "DOCROOT": docroot,
    }, os.path.join(prefix, "Caddyfile"))
    p = subprocess.run(["caddy", "validate", "--adapter", "caddyfile", "--config", conf], capture_output=True,
                       text=True, timeout=60, env=caddy_env(prefix), stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise PeerError(f"caddy refused its configuration ({conf}):\n{(p.stdout + p.stderr)[-2000:]}")
    return ["caddy", "run", "--adapter", "caddyfile", "--config", conf]
