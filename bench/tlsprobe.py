"""What TLS each side of a contender really negotiates: a byte-for-byte TCP relay that reads
the server's plaintext handshake (ServerHello; TLS 1.2's ServerKeyExchange) as it passes and
records the protocol version, cipher suite and key-exchange group. bench/bench.py puts one in
front of each contender (client side: h2load, the load generator's own TLS stack) and one in front
of the app (upstream side: the contender's TLS client) before measuring, and prints them."""

from __future__ import annotations

import select
import socket
import threading

GROUPS = {0x0017: "P-256", 0x0018: "P-384", 0x0019: "P-521", 0x001D: "X25519", 0x001E: "X448",
          0x0100: "ffdhe2048", 0x11EC: "X25519MLKEM768", 0x11EB: "SecP256r1MLKEM768", 0x6399: "X25519Kyber768Draft00"}
VERSIONS = {0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
SUITES = {0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
          0x1303: "TLS_CHACHA20_POLY1305_SHA256", 0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
          0xC02F: "ECDHE-RSA-AES128-GCM-SHA256", 0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
          0xC030: "ECDHE-RSA-AES256-GCM-SHA384", 0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
          0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305"}
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
MAX_SCAN = 64 * 1024  # bytes of a connection's server side looked at, at most


def _name(table: dict[int, str], code: int) -> str:
    return table.get(code, f"0x{code:04x}")


def parse_server_flight(data: bytes) -> dict | None:
    """The negotiated parameters from the first bytes a TLS server sent, or None if they are not
    all there yet. Keys: version, suite, group, hrr (a HelloRetryRequest came first)."""
    hs = bytearray()
    pos = 0
    while pos + 5 <= len(data):  # records; only plaintext handshake records matter
        ctype, length = data[pos], int.from_bytes(data[pos + 3:pos + 5], "big")
        if pos + 5 + length > len(data):
            break
        if ctype == 22:
            hs += data[pos + 5:pos + 5 + length]
        elif ctype != 20:  # an encrypted record: the plaintext handshake is over
            pos = len(data) + 1
            break
        pos += 5 + length
    out: dict = {"hrr": False}
    i = 0
    while i + 4 <= len(hs):
        mtype, mlen = hs[i], int.from_bytes(hs[i + 1:i + 4], "big")
        body = bytes(hs[i + 4:i + 4 + mlen])
        if len(body) < mlen:
            break
        if mtype == 2:
            _server_hello(body, out)
        elif mtype == 12 and len(body) >= 3 and body[0] == 3:  # TLS 1.2 ServerKeyExchange, named curve
            out["group"] = _name(GROUPS, int.from_bytes(body[1:3], "big"))
        i += 4 + mlen
    if "version" in out and "group" in out and not (out["hrr"] and out.get("from_hrr")):
        out.pop("from_hrr", None)
        return out
    return None


def _server_hello(body: bytes, out: dict) -> None:
    legacy = int.from_bytes(body[0:2], "big")
    hrr = body[2:34] == HRR_RANDOM
    sid_len = body[34]
    p = 35 + sid_len
    suite = int.from_bytes(body[p:p + 2], "big")
    p += 3  # suite, compression
    ext_end = p + 2 + int.from_bytes(body[p:p + 2], "big")
    p += 2
    version = legacy
    group = None
    while p + 4 <= ext_end:
        etype, elen = int.from_bytes(body[p:p + 2], "big"), int.from_bytes(body[p + 2:p + 4], "big")
        ext = body[p + 4:p + 4 + elen]
        if etype == 43 and elen == 2:
            version = int.from_bytes(ext, "big")
        elif etype == 51 and elen >= 2:
            group = int.from_bytes(ext[0:2], "big")
        p += 4 + elen
    out["hrr"] = out["hrr"] or hrr
    out["from_hrr"] = hrr
    out["version"] = _name(VERSIONS, version)
    out["suite"] = _name(SUITES, suite)
    if group is not None:
        out["group"] = _name(GROUPS, group)


def describe(p: dict | None) -> str:
    if not p:
        return "not seen"
    return f"{p['version']} {p['suite']} {p['group']}" + (" (after a HelloRetryRequest)" if p["hrr"] else "")


class Relay(threading.Thread):
    """Listens on 127.0.0.1:listen and relays each connection to 127.0.0.1:target, recording
    what each connection's server negotiated (in `seen`, one entry per connection)."""

    def __init__(self, listen: int, target: int) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.seen: list[dict | None] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", listen))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        scanned = bytearray()
        result = None
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:
            client.close()
            return
        with client, upstream:
            while not self.stopping.is_set():
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                done = False
                for s in ready:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        done = True
                        break
                    other = upstream if s is client else client
                    try:
                        other.sendall(data)
                    except OSError:
                        done = True
                        break
                    if s is upstream and result is None and len(scanned) < MAX_SCAN:
                        scanned += data
                        result = parse_server_flight(bytes(scanned))
                        if result is not None:  # recorded at once: pooled connections stay open
                            with self.lock:
                                self.seen.append(result)
                if done:
                    break
        if result is None:
            with self.lock:
                self.seen.append(None)

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()
        self.join(2)

    def summary(self) -> str:
        """The distinct negotiations seen, e.g. `TLSv1.3 TLS_AES_256_GCM_SHA384 X25519`."""
        with self.lock:
            return summarize(list(self.seen))


def summarize(seen: list[dict | None]) -> str:
    """Distinct negotiations, and how many connections closed before their ServerHello."""
    kinds = sorted({describe(p) for p in seen if p})
    unseen = sum(1 for p in seen if not p)
    text = "; ".join(kinds) if kinds else "no handshake seen"
    if unseen:
        text += f" ({unseen} connection{'s' if unseen != 1 else ''} closed before a ServerHello)"
    return text if seen else "no connection"
