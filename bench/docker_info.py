"""The optional Docker section of the report: the containerize-* images' sizes and each one's
container start to first HTTPS 200 (host network, loopback only), when Docker and the images are
there."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time

from procs import PROCS, https_get


def docker_section(bench) -> dict:  # bench.Bench
    """Image sizes and container start-to-first-200, when Docker and the images are there."""
    out: dict = {"available": False, "note": "", "images": [], "startup": []}
    if not shutil.which("docker"):
        out["note"] = "docker is not installed: section skipped."
        return out
    try:
        p = subprocess.run(["docker", "images", "--format", "{{.Repository}}\t{{.Tag}}\t{{.Size}}\t{{.ID}}"],
                           capture_output=True, timeout=30, text=True)
    except subprocess.TimeoutExpired:
        out["note"] = "`docker images` timed out: section skipped."
        return out
    if p.returncode != 0:
        out["note"] = f"docker daemon not reachable ({p.stderr.strip()[:200]}): section skipped."
        return out
    imgs = []
    for line in p.stdout.splitlines():
        repo, tag, size, iid = (line.split("\t") + ["", "", "", ""])[:4]
        if repo.startswith("containerize-") or "/containerize-" in repo:
            imgs.append({"repo": repo, "tag": tag, "size": size, "id": iid})
    if not imgs:
        out["note"] = ("no containerize-* images found (build them with `docker/build.sh all --prebuilt`): "
                       "section skipped.")
        return out
    out["available"] = True
    out["images"] = imgs
    certdir = os.path.join(bench.run_dir, "tls")
    # one image per service for the start-up timing: the `latest` tag, else the newest one
    chosen: dict[str, dict] = {}
    for img in imgs:  # `docker images` lists the newest first
        kind = "app" if img["repo"].endswith("containerize-app") else \
               "proxy" if img["repo"].endswith("containerize-proxy") else None
        if kind and (kind not in chosen or (img["tag"] == "latest" and chosen[kind]["tag"] != "latest")):
            chosen[kind] = img
    for kind, img in sorted(chosen.items()):
        ref = f"{img['repo']}:{img['tag']}" if img["tag"] != "<none>" else img["id"]
        port = bench.ports["proxy"] + 100 if kind == "proxy" else bench.ports["app"] + 100
        name = f"containerize-bench-{kind}-{os.getpid()}"
        envs = {"app": {"APP_LISTEN": f"127.0.0.1:{port}", "APP_ENV": "production", "APP_LOG": "warn",
                        "APP_TLS_CERT": "/bench-tls/cert.pem", "APP_TLS_KEY": "/bench-tls/key.pem"},
                "proxy": {"PROXY_HTTPS_LISTEN": f"127.0.0.1:{port}",
                          "PROXY_HTTP_LISTEN": f"127.0.0.1:{bench.ports['proxy-http'] + 100}",
                          "PROXY_UPSTREAM": f"127.0.0.1:{bench.ports['app']}",
                          "PROXY_TLS_CERT": "/bench-tls/cert.pem", "PROXY_TLS_KEY": "/bench-tls/key.pem",
                          "PROXY_TLS_GENERATE": "false", "LOG_RETENTION": "false", "PROXY_LOG": "warn",
                          "PROXY_LOG_DIR": "/bench-logs", "PROXY_KEEPALIVE_REQUESTS": "1000000"}}[kind]
        # host network: the container listens on the host's 127.0.0.1 only, no port publishing
        logdir = os.path.join(bench.run_dir, f"docker-{kind}-logs")
        os.makedirs(logdir, exist_ok=True)
        os.chmod(logdir, 0o777)  # the images run as uid 1000 and are FROM scratch (no writable /tmp)
        argv = ["docker", "run", "-d", "--rm", "--name", name, "--network", "host",
                "-v", f"{certdir}:/bench-tls:ro", "-v", f"{logdir}:/bench-logs"]
        for k, v in envs.items():
            argv += ["-e", f"{k}={v}"]
        argv.append(ref)
        entry = {"image": ref, "kind": kind}
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            entry["error"] = r.stderr.strip()[:300]
            out["startup"].append(entry)
            continue
        PROCS.containers.append(name)
        deadline = t0 + 30
        ok = False
        while time.monotonic() < deadline:
            try:
                if https_get(port, "/", 1.0)[0] == 200:
                    ok = True
                    break
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.01)
        t1 = time.monotonic()
        if ok:
            entry["first_200_ms"] = (t1 - t0) * 1000
        else:
            logs = subprocess.run(["docker", "logs", "--tail", "5", name], capture_output=True, text=True, timeout=30)
            entry["error"] = "no 200 within 30 s: " + (logs.stdout + logs.stderr).strip()[-300:]
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=30)
        PROCS.containers.remove(name)
        out["startup"].append(entry)
    return out
