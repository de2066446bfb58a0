#!/usr/bin/env python3
"""A WebSocket client on Python's standard library, for tests/e2e_services.sh.

    ws_client.py ADDRESS PORT NAME PATH CAFILE

Connects to ADDRESS:PORT with TLS (SNI and Host: NAME, verified against CAFILE only), upgrades
PATH to a WebSocket and prints `open`; then every line read on stdin is sent as a text message
and the reply is printed on its own line. At the end of input it sends a close (1000) and prints
`closed CODE` with the code the server answered. Any failure prints `error: ...` and exits 1.
"""
import base64
import os
import socket
import ssl
import struct
import sys


def frame(opcode, payload):
    """A final, masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the connection was closed")
        buf += chunk
    return buf


def read_frame(sock):
    """(opcode, payload) of the next frame; pings are answered on the way."""
    while True:
        b0, b1 = recv_exact(sock, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", recv_exact(sock, 2))[0]
        elif n == 127:
            n = struct.unpack("!Q", recv_exact(sock, 8))[0]
        if b1 & 0x80:
            raise ValueError("the server masked a frame")
        opcode, payload = b0 & 0x0F, recv_exact(sock, n)
        if opcode == 9:
            sock.sendall(frame(10, payload))
            continue
        return opcode, payload


def main():
    address, port, name, path, cafile = sys.argv[1:6]
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    sock = ctx.wrap_socket(socket.create_connection((address, int(port)), timeout=10), server_hostname=name)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {name}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(sock, 1)
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if status.split(" ")[1:2] != ["101"]:
        raise ValueError(f"no upgrade: {status}")
    print("open", flush=True)
    for line in sys.stdin:
        sock.sendall(frame(1, line.rstrip("\n").encode()))
        opcode, payload = read_frame(sock)
        if opcode == 8:
            raise EOFError("the server closed the WebSocket")
        print(payload.decode(errors="replace"), flush=True)
    sock.sendall(frame(8, struct.pack("!H", 1000)))
    opcode, payload = read_frame(sock)
    code = struct.unpack("!H", payload[:2])[0] if opcode == 8 and len(payload) >= 2 else None
    print(f"closed {code}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - any failure is the test's answer
        print(f"error: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
