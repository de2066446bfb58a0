#!/usr/bin/env python3
"""The inspector page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by selenium through /usr/bin/chromedriver, never downloaded).

  cargo build -p proxy && python3 tests/inspector_browser.py [--screenshot media/inspector.png]

Starts a recording HTTPS upstream (Python, on loopback, with a keypair `proxy cert generate`
writes) and the real proxy binary (target/debug/proxy, or $PROXY_BIN) with the inspector on, then
checks in the page: requests made through the proxy appear without a reload, a click opens the
detail (request id, headers, body), Replay produces a new entry that the upstream really
received; and the page fits a 390 px wide screen. Exit 0 when all hold; 1 naming what failed.
Needs: pip install selenium; apt-get install chromium chromium-driver.
"""

import argparse
import json
import os
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parent.parent
DRIVER = "/usr/bin/chromedriver"
SEEN = []  # (method, path, body) as the upstream received them
SEEN_LOCK = threading.Lock()


class Upstream(BaseHTTPRequestHandler):
    """Records every request; answers JSON, a 404, or plain text by path."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        with SEEN_LOCK:
            SEEN.append((self.command, self.path, body))
        if self.path.startswith("/missing"):
            status, ctype, out = 404, "text/plain", b"no such page\n"
        elif self.path.startswith("/api/"):
            status, ctype = 200 if self.command == "GET" else 201, "application/json"
            out = json.dumps({"ok": True, "path": self.path, "received": body.decode(errors="replace")}).encode()
        else:
            status, ctype, out = 200, "text/html; charset=utf-8", b"<h1>hello</h1>\n"
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_proxy(port, method, path, body=None, headers=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"https://localhost:{port}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.headers.get("x-request-id"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-request-id"), e.read()


def wait(driver, what, check, timeout=10):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: check(d))
    except Exception:
        raise AssertionError(f"timed out: {what}") from None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--screenshot", help="write a PNG of the page here")
    args = ap.parse_args()
    proxy_bin = os.environ.get("PROXY_BIN", str(ROOT / "target" / "debug" / "proxy"))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="inspector-browser-"))
    (tmp / "up").mkdir()
    subprocess.run([proxy_bin, "cert", "generate", "--out", str(tmp / "up")], check=True,
                   capture_output=True, env={"PROXY_LOG_DIR": str(tmp)})
    up = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "up" / "localhost.crt", tmp / "up" / "localhost.key")
    up.socket = ctx.wrap_socket(up.socket, server_side=True)
    threading.Thread(target=up.serve_forever, daemon=True).start()

    https, inspect = free_port(), free_port()
    (tmp / "tls").mkdir()
    (tmp / "logs").mkdir()
    env = {
        "PROXY_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "PROXY_HTTPS_LISTEN": f"127.0.0.1:{https}",
        "PROXY_INSPECT_LISTEN": f"127.0.0.1:{inspect}",
        "PROXY_UPSTREAM": f"127.0.0.1:{up.server_address[1]}",
        "PROXY_TLS_CERT": str(tmp / "tls" / "localhost.crt"),
        "PROXY_TLS_KEY": str(tmp / "tls" / "localhost.key"),
        "PROXY_LOG_DIR": str(tmp / "logs"),
        "LOG_RETENTION": "false",
        "PROXY_WORKERS": "1",
        "NO_COLOR": "1",
    }
    proxy = subprocess.Popen([proxy_bin], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    try:
        for line in proxy.stdout:
            if "proxy listening" in line:
                break
        else:
            raise AssertionError("the proxy exited before listening")
        threading.Thread(target=lambda: [None for _ in proxy.stdout], daemon=True).start()
        run_browser(https, inspect, args.screenshot)
    finally:
        proxy.terminate()
        proxy.wait(timeout=15)
        up.shutdown()
    print(f"inspector browser test: ok ({time.monotonic() - started:.1f} s)")


def run_browser(https, inspect, screenshot):
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,860", "--force-color-profile=srgb"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(f"http://127.0.0.1:{inspect}/")
        wait(driver, "the live stream connects", lambda d: d.find_element(By.ID, "state").text == "live")
        rows = lambda d: d.find_elements(By.CSS_SELECTOR, "#list li.entry")
        assert not rows(driver), "no entries before any request"

        # Requests through the proxy appear without a reload.
        page_id = driver.execute_script("return window.performance.timeOrigin")
        through_proxy(https, "GET", "/")
        through_proxy(https, "GET", "/api/users?page=2", headers={"authorization": "Bearer secret-token"})
        through_proxy(https, "GET", "/missing/page")
        status, rid, _ = through_proxy(https, "POST", "/api/orders", body=b'{"item":"tea","qty":2}',
                                       headers={"content-type": "application/json", "cookie": "session=abc"})
        assert status == 201, status
        wait(driver, "4 entries pushed", lambda d: len(rows(d)) == 4)
        assert driver.execute_script("return window.performance.timeOrigin") == page_id, "the page reloaded"
        newest = rows(driver)[0]
        assert "/api/orders" in newest.text and "201" in newest.text, newest.text

        # A click opens the detail: its request id is the one the client got; credentials masked.
        newest.click()
        wait(driver, "the detail opens", lambda d: d.find_element(By.ID, "detail").is_displayed()
             and d.find_element(By.ID, "request-id").text == rid)
        text = driver.find_element(By.ID, "detail").text
        assert '"item": "tea"' in text, "the JSON request body, pretty-printed"
        assert "session=abc" not in text and "***" in text, "the cookie is masked"

        # Replay: a new entry, linked, that the upstream really received.
        before = len(SEEN)
        driver.find_element(By.ID, "replay-btn").click()
        wait(driver, "the replay is answered", lambda d: "Replayed as #" in d.find_element(By.ID, "msg").text)
        wait(driver, "the replay's entry is pushed", lambda d: len(rows(d)) == 5)
        assert "replay of #" in rows(driver)[0].text, rows(driver)[0].text
        with SEEN_LOCK:
            assert len(SEEN) == before + 1, SEEN
            assert SEEN[-1] == ("POST", "/api/orders", b'{"item":"tea","qty":2}'), SEEN[-1]

        # Filters: status class.
        driver.find_element(By.CSS_SELECTOR, "#filter-status option[value='4']").click()
        wait(driver, "the 4xx filter", lambda d: len(rows(d)) == 1 and "/missing/page" in rows(d)[0].text)
        driver.find_element(By.CSS_SELECTOR, "#filter-status option[value='']").click()
        wait(driver, "the filter cleared", lambda d: len(rows(d)) == 5)

        if screenshot:
            rows(driver)[1].click()
            wait(driver, "the detail opens", lambda d: d.find_element(By.ID, "detail").is_displayed())
            time.sleep(1.5)  # the new-entry highlight fades
            driver.save_screenshot(screenshot)

        # Readable at 390 px: nothing wider than the screen.
        driver.set_window_size(390, 844)
        time.sleep(0.3)
        inner = driver.execute_script("return window.innerWidth")
        wide = driver.execute_script("return document.documentElement.scrollWidth")
        assert wide <= inner, f"the page is {wide} px wide in a {inner} px window"
    finally:
        driver.quit()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"inspector browser test: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
