#!/usr/bin/env bash
# gRPC through the proxy with the real gRPC runtime on both sides (issue 23 §1): a grpcio server
# on plain HTTP/2 behind an `h2c://` route, a grpcio client over TLS + HTTP/2 in front. Unary,
# server stream, trailing metadata, an error status, a deadline (tests/grpc_check.py).
#
#   bash tests/grpc.sh
#
# Installs grpcio (PyPI, pinned) into a virtualenv, target/grpc-venv (kept for the next run;
# GRPC_VENV moves it), builds the proxy (debug) when target/debug/proxy is missing. Loopback only.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
VENV="${GRPC_VENV:-$ROOT/target/grpc-venv}"
GRPCIO="grpcio==1.85.1"

if ! "$VENV/bin/python" -c "import grpc, sys; sys.exit(grpc.__version__ != '${GRPCIO##*=}')" 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check "$GRPCIO" 2>&1 | tail -n 5
fi
"$VENV/bin/python" -c "import grpc" || { echo "FAIL pip install $GRPCIO"; exit 1; }
[ -x target/debug/proxy ] || cargo build -q -p proxy || { echo "FAIL cargo build -p proxy"; exit 1; }
command -v openssl >/dev/null || { echo "FAIL openssl is required"; exit 1; }
timeout 120 "$VENV/bin/python" tests/grpc_check.py target/debug/proxy
