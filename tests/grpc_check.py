#!/usr/bin/env python3
"""gRPC through the proxy, end to end, with the real gRPC runtime on both sides (tests/grpc.sh).

A grpcio server on plain HTTP/2 (h2c, 127.0.0.1), the proxy binary in front of it with
PROXY_ROUTES `grpc.localhost=h2c://127.0.0.1:PORT`, and a grpcio client speaking TLS + HTTP/2 to
the proxy, verifying its certificate (a self-signed pair made with openssl: BoringSSL, inside
grpcio, refuses the development CA's name constraints, see README "Several services"). Checks: a
unary call and its trailing metadata, a server stream (every message, in order), an error status
with its details (trailers-only answer), and a call with a deadline that the server exceeds
(DEADLINE_EXCEEDED, not a proxy error page). Generic handlers: no code generation needed.

  python3 tests/grpc_check.py PROXY_BINARY      # exit 0 when every check passes
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures

import grpc

SERVICE = "containerize.test.Echo"
ident = lambda b: b  # noqa: E731 (raw bytes both ways: no protobuf)


def say(request, context):
    context.set_trailing_metadata((("x-served-by", "grpc-upstream"),))
    return b"hello " + request


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())


def count(request, context):
    for i in range(int(request.decode())):
        yield f"message {i}".encode()


def slow(request, context):
    time.sleep(2.0)
    return b"too late"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, limit=20.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def main():
    proxy_bin = sys.argv[1]
    failures = []

    def check(name, ok, detail=""):
        print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""))
        if not ok:
            failures.append(name)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(say, ident, ident),
        "Fail": grpc.unary_unary_rpc_method_handler(fail, ident, ident),
        "Count": grpc.unary_stream_rpc_method_handler(count, ident, ident),
        "Slow": grpc.unary_unary_rpc_method_handler(slow, ident, ident),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    up_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    tmp = tempfile.mkdtemp(prefix="grpc-check-")
    crt, key = os.path.join(tmp, "localhost.crt"), os.path.join(tmp, "localhost.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,DNS:grpc.localhost",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    https = free_port()
    env = {
        "PROXY_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "PROXY_HTTPS_LISTEN": f"127.0.0.1:{https}",
        "PROXY_TLS_CERT": crt,
        "PROXY_TLS_KEY": key,
        "PROXY_TLS_GENERATE": "false",
        "PROXY_LOG_DIR": tmp,
        "LOG_RETENTION": "false",
        "PROXY_WORKERS": "1",
        "PROXY_ROUTES": f"grpc.localhost=h2c://127.0.0.1:{up_port}",
    }
    log = open(os.path.join(tmp, "proxy.out"), "w")
    proxy = subprocess.Popen([proxy_bin], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_listening(https, proxy):
            print("FAIL the proxy did not start:\n" + open(os.path.join(tmp, "proxy.out")).read())
            return 1
        creds = grpc.ssl_channel_credentials(root_certificates=open(crt, "rb").read())
        # Dial 127.0.0.1, present and verify grpc.localhost: the route is chosen by :authority.
        options = [("grpc.ssl_target_name_override", "grpc.localhost"),
                   ("grpc.default_authority", "grpc.localhost")]
        with grpc.secure_channel(f"127.0.0.1:{https}", creds, options=options) as channel:
            call = lambda m: channel.unary_unary(f"/{SERVICE}/{m}", ident, ident)  # noqa: E731
            answer, state = call("Say").with_call(b"world", timeout=10)
            check("unary call through the proxy", answer == b"hello world", repr(answer))
            trailers = dict(state.trailing_metadata() or ())
            check("trailing metadata arrives", trailers.get("x-served-by") == "grpc-upstream",
                  repr(trailers))
            check("grpc-status OK", state.code() == grpc.StatusCode.OK, repr(state.code()))

            stream = channel.unary_stream(f"/{SERVICE}/Count", ident, ident)
            got = list(stream(b"50", timeout=10))
            check("a server stream, every message in order",
                  got == [f"message {i}".encode() for i in range(50)], f"{len(got)} messages")

            try:
                call("Fail")(b"x", timeout=10)
                check("an error status passes", False, "no error")
            except grpc.RpcError as e:
                check("an error status passes (trailers-only answer)",
                      e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "no such thing: x",
                      f"{e.code()} {e.details()!r}")

            try:
                call("Slow")(b"x", timeout=0.5)
                check("a deadline is the client's", False, "no error")
            except grpc.RpcError as e:
                check("a deadline is the client's (DEADLINE_EXCEEDED)",
                      e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, f"{e.code()} {e.details()!r}")
    finally:
        proxy.terminate()
        proxy.wait(timeout=15)
        server.stop(0)
    print(f"grpc: {'all passed' if not failures else str(len(failures)) + ' failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
