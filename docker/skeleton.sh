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

value() { # the string value of a `key = "value"` line
    v=${1#*\"}; printf '%s\n' "${v%%\"*}"
}

explicit() { # explicit DIR < Cargo.toml: print the target roots the manifest names
    sect=""; name=""; path=""
    flush() {
        if [ -n "$path" ]; then
            echo "$1/$path"
        elif [ -n "$name" ]; then
            case "$sect" in
                bin) echo "$1/src/bin/$name.rs" ;;
                test) echo "$1/tests/$name.rs" ;;
                bench) echo "$1/benches/$name.rs" ;;
                example) echo "$1/examples/$name.rs" ;;
            esac
        fi
        sect=""; name=""; path=""
    }
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            "[[bin]]"*) flush "$1"; sect=bin ;;
            "[[test]]"*) flush "$1"; sect="test" ;;
            "[[bench]]"*) flush "$1"; sect=bench ;;
            "[[example]]"*) flush "$1"; sect=example ;;
            "[lib]"*) flush "$1"; sect=lib ;;
            "["*) flush "$1" ;;
            name*=*) [ -n "$sect" ] && name=$(value "$line") ;;
            path*=*) [ -n "$sect" ] && path=$(value "$line") ;;
        esac
    done
    flush "$1"
}

keep=$(mktemp)
for manifest in crates/*/Cargo.toml; do
    dir=${manifest%/Cargo.toml}
    # implicit roots that exist
    for f in "$dir/src/lib.rs" "$dir/src/main.rs" "$dir/build.rs" "$dir"/src/bin/*.rs; do
        [ -f "$f" ] && echo "$f" >> "$keep"
    done
    # explicit targets: [lib]/[[bin]]/[[test]]/[[bench]]/[[example]] with `path`, or a `name`
    # without path (then the conventional location). Plain sh: no awk in some base images.
    explicit "$dir" < "$manifest" >> "$keep"
done

find crates -type f ! -name Cargo.toml -delete
sort -u "$keep" | while read -r f; do stub "$f"; done
rm -f "$keep"
find crates -type d -empty -delete
