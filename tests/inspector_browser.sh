#!/usr/bin/env bash
# The inspector page in headless Chromium (tests/inspector_browser.py), with what it needs
# installed first when missing: Debian's chromium and chromium-driver (apt-get), selenium (pip;
# given /usr/bin/chromedriver it never downloads a driver). Uses the debug proxy binary that
# `cargo test --workspace` built (target/debug/proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing chromium and chromium-driver (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
python3 -c 'import selenium' 2>/dev/null || pip install -q selenium
[ -x target/debug/proxy ] || cargo build -p proxy
python3 tests/inspector_browser.py
