#!/usr/bin/env bash
# The workspace's `rust-version` (Cargo.toml) is at least the newest `rust-version` any locked
# dependency declares for the platforms we build (Linux x86_64 and aarch64): otherwise the
# stated minimum is false and an older toolchain fails inside a dependency. Our own code is
# held to it by clippy's `incompatible_msrv` lint (on by default, CI runs clippy with -D
# warnings). Offline: reads `cargo metadata --locked --offline`.
#
#   bash tests/msrv.sh
set -euo pipefail
cd "$(dirname "$0")/.."

declared="$(sed -n 's/^rust-version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
[ -n "$declared" ] || { echo "msrv: FAIL: no rust-version in Cargo.toml's [workspace.package]"; exit 1; }
for triple in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    cargo metadata --format-version 1 --locked --offline --filter-platform "$triple" 2>/dev/null \
        | python3 -c '
import json, sys
declared, triple = sys.argv[1], sys.argv[2]
key = lambda v: tuple(int(x) for x in v.split("."))
meta = json.load(sys.stdin)
used = {n["id"] for n in meta["resolve"]["nodes"]}
members = set(meta["workspace_members"])
needs = sorted(((key(p["rust_version"]), p["name"], p["version"], p["rust_version"])
                for p in meta["packages"]
                if p["id"] in used and p["id"] not in members and p.get("rust_version")), reverse=True)
top = needs[0]
newer = [n for n in needs if n[0] > key(declared)]
if newer:
    print(f"msrv: FAIL ({triple}): rust-version = \"{declared}\" but " +
          ", ".join(f"{n[1]} {n[2]} needs {n[3]}" for n in newer[:5]))
    sys.exit(1)
print(f"msrv: ok ({triple}): rust-version = \"{declared}\"; the newest a locked dependency needs is "
      f"{top[3]} ({top[1]} {top[2]}), of {len(needs)} that declare one")
' "$declared" "$triple"
done
