#!/usr/bin/env bash
# Build the images. Like the original nginx/app build scripts, the previous image is removed
# before the new one is built.
#
#   docker/build.sh [app|proxy|all] [--prebuilt] [--uid N --gid N] [--tag TAG]
#
#   (default)    compile inside Docker (targets `app`, `proxy`): pulls the pinned rust image
#                and crates; works with BuildKit or the legacy builder.
#   --prebuilt   compile on the host with the same static flags, then assemble the images with
#                the offline targets (`app-prebuilt`, `proxy-prebuilt`): nothing is pulled.
#                Needs BuildKit (the legacy builder would build, and pull, the builder stage).
#   --uid/--gid  user the containers run as (default 1000/1000). Use the same values in
#                docker-compose (CONTAINER_UID / CONTAINER_GID) so `user:` matches.
#   --tag        image tag (default latest); images are containerize-app:TAG, containerize-proxy:TAG
#
# Environment: DOCKER (client to use), HOST_TRIPLE (default <arch>-unknown-linux-gnu).
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

cd "$(dirname "$0")/.."   # the workspace root is the build context

services=()
prebuilt=0
uid=1000
gid=1000
tag=latest
while [ $# -gt 0 ]; do
    case "$1" in
        app|proxy) services+=("$1") ;;
        all) services+=(app proxy) ;;
        --prebuilt) prebuilt=1 ;;
        --uid) uid="${2:?--uid needs a value}"; shift ;;
        --uid=*) uid="${1#*=}" ;;
        --gid) gid="${2:?--gid needs a value}"; shift ;;
        --gid=*) gid="${1#*=}" ;;
        --tag) tag="${2:?--tag needs a value}"; shift ;;
        --tag=*) tag="${1#*=}" ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[ ${#services[@]} -gt 0 ] || services=(app proxy)
# de-duplicate, keep order
mapfile -t services < <(printf '%s\n' "${services[@]}" | awk '!seen[$0]++')
for n in "$uid" "$gid"; do
    case "$n" in ''|*[!0-9]*) echo "build.sh: uid/gid must be numbers, got '$n'" >&2; exit 2 ;; esac
done
if [ "$uid" = 0 ] || [ "$gid" = 0 ]; then
    echo "build.sh: refusing to build images that run as root (uid/gid 0)" >&2; exit 2
fi

# ---- pick a client that builds with BuildKit ----------------------------------------------
# 1. a client with the buildx plugin (Docker Desktop, Engine >= 23): `docker buildx build --load`
# 2. a client older than 23 talks to the engine's built-in BuildKit with DOCKER_BUILDKIT=1
#    (e.g. Debian's /usr/bin/docker 20.10 while a newer client without buildx is first in PATH)
# 3. otherwise the legacy builder: fine for the from-source targets, refused for --prebuilt.
build_cmd=()
builder_desc=""
client_major() { "$1" version --format '{{.Client.Version}}' 2>/dev/null | sed -n 's/^\([0-9]*\)\..*/\1/p' | head -n1; }
pick_builder() {
    local candidates=() c major
    if [ -n "${DOCKER:-}" ]; then candidates=("$DOCKER"); else
        c="$(command -v docker || true)"; [ -n "$c" ] && candidates+=("$c")
        for c in /usr/bin/docker /usr/local/bin/docker /bin/docker; do
            [ -x "$c" ] && candidates+=("$c")
        done
    fi
    for c in "${candidates[@]}"; do
        if "$c" buildx version >/dev/null 2>&1; then
            build_cmd=("$c" buildx build --load); builder_desc="BuildKit via buildx ($c)"; DOCKER="$c"; return 0
        fi
    done
    for c in "${candidates[@]}"; do
        major="$(client_major "$c")"
        if [ -n "$major" ] && [ "$major" -lt 23 ]; then
            build_cmd=(env DOCKER_BUILDKIT=1 "$c" build); builder_desc="BuildKit via DOCKER_BUILDKIT=1 ($c, client $major.x)"; DOCKER="$c"; return 0
        fi
    done
    [ ${#candidates[@]} -gt 0 ] || { echo "build.sh: no docker client found" >&2; exit 1; }
    DOCKER="${candidates[0]}"
    build_cmd=(env DOCKER_BUILDKIT=0 "$DOCKER" build); builder_desc="legacy builder ($DOCKER)"
    return 1
}
if ! pick_builder; then
    if [ "$prebuilt" = 1 ]; then
        echo "build.sh: --prebuilt needs BuildKit (the legacy builder would pull the rust builder image)." >&2
        echo "          Install the buildx plugin, or point DOCKER= at a client older than 23." >&2
        exit 1
    fi
    echo "build.sh: no BuildKit-capable client found, using the legacy builder" >&2
fi
"$DOCKER" info >/dev/null 2>&1 || { echo "build.sh: the Docker engine does not answer ($DOCKER info failed)" >&2; exit 1; }

# ---- host binaries for the offline targets -------------------------------------------------
host_triple="${HOST_TRIPLE:-$(uname -m)-unknown-linux-gnu}"
if [ "$prebuilt" = 1 ]; then
    command -v cargo >/dev/null 2>&1 \
        || { echo "build.sh: --prebuilt compiles on the host and needs cargo (https://rustup.rs)" >&2; exit 1; }
    pkgs=()
    for s in "${services[@]}"; do pkgs+=(-p "$s"); done
    echo "==> cargo build --release --target $host_triple ${pkgs[*]} (static: +crt-static)"
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked --target "$host_triple" "${pkgs[@]}"
    for s in "${services[@]}"; do
        bin="target/$host_triple/release/$s"
        [ -x "$bin" ] || { echo "build.sh: $bin was not built" >&2; exit 1; }
        if ! ldd "$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
            echo "build.sh: $bin is dynamically linked; it would not run in a scratch image" >&2; exit 1
        fi
    done
fi

# ---- build ----------------------------------------------------------------------------------
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]; then revision="$revision-dirty"; fi
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

echo "==> builder: $builder_desc"
images=()
for s in "${services[@]}"; do
    image="containerize-$s:$tag"
    target="$s"; [ "$prebuilt" = 1 ] && target="$s-prebuilt"
    if "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
        echo "==> removing previous $image"
        "$DOCKER" image rm -f "$image" >/dev/null
    fi
    echo "==> building $image (target $target, uid:gid $uid:$gid)"
    "${build_cmd[@]}" \
        --file docker/Dockerfile \
        --target "$target" \
        --tag "$image" \
        --build-arg "UID=$uid" \
        --build-arg "GID=$gid" \
        --build-arg "HOST_TRIPLE=$host_triple" \
        --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$created" \
        .
    images+=("$image")
done

echo
echo "==> image sizes"
for image in "${images[@]}"; do
    bytes="$("$DOCKER" image inspect --format '{{.Size}}' "$image")"
    awk -v i="$image" -v b="$bytes" 'BEGIN { printf "  %-28s %8.2f MB  (%d bytes)\n", i, b / 1000000, b }'
done
# ./logs and ./conf/tls need no chown: docker-compose.yml's one-shot `init` service makes them
# writable for uid:gid before the proxy starts (README "uid and gid").

if [ "$uid" != 1000 ] || [ "$gid" != 1000 ]; then
    echo
    echo "Run compose with the same ids:  CONTAINER_UID=$uid CONTAINER_GID=$gid docker compose up -d"
    echo "(or put CONTAINER_UID=$uid and CONTAINER_GID=$gid in .env)"
fi
