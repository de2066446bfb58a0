#!/bin/sh
# Used by docker/Dockerfile (stage `skeleton`): turn the copied workspace into a dependency-only
# skeleton. Keeps every Cargo.toml, replaces each target root cargo needs to load the manifests
# with a stub, deletes every other file. The result changes only when a manifest changes (or a
# target root is added), so the dependency layer built from it stays cached across code edits.
set -eu
cd "${1:-.}"

stub() { # stub FILE: a library root is empty, every other target root is an empty main
    mkdir -p "$(dirname "$1")"
    case "$1" in
        */src/lib.rs) : > "$1" ;;
        *) echo 'fn main() {}' > "$1" ;;
    esac
}

keep=$(mktemp)
for manifest in crates/*/Cargo.toml; do
    dir=${manifest%/Cargo.toml}
    # implicit roots that exist
    for f in "$dir/src/lib.rs" "$dir/src/main.rs" "$dir/build.rs" "$dir"/src/bin/*.rs; do
        [ -f "$f" ] && echo "$f" >> "$keep"
    done
    # explicit targets: [lib]/[[bin]]/[[test]]/[[bench]]/[[example]] with `path`, or a `name`
    # without path (then the conventional location)
    awk -v dir="$dir" '
        function flush() {
            if (sect != "" && path == "" && name != "" && sect != "lib") {
                if (sect == "bin") print dir "/src/bin/" name ".rs"
                else print dir "/" sect (sect == "test" ? "s" : (sect == "bench" ? "es" : "s")) "/" name ".rs"
            }
            if (sect != "" && path != "") print dir "/" path
            sect = ""; name = ""; path = ""
        }
        /^\[\[(bin|test|bench|example)\]\]/ { flush(); sect = $0; gsub(/[\[\] ]/, "", sect); next }
        /^\[lib\]/ { flush(); sect = "lib"; next }
        /^\[/ { flush(); next }
        sect != "" && /^name *=/ { v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); name = v }
        sect != "" && /^path *=/ { v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); path = v }
        END { flush() }
    ' "$manifest" | grep '\.rs$' >> "$keep" || true
done

find crates -type f ! -name Cargo.toml -delete
sort -u "$keep" | while read -r f; do stub "$f"; done
rm -f "$keep"
find crates -type d -empty -delete
