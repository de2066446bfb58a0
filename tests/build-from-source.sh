#!/usr/bin/env bash
# The README's first run, as a new user does it: a fresh clone, no image built before, a COLD
# builder cache, then `docker-compose up --build -d` (the from-source targets `app` and `proxy`)
# and `curl -k https://localhost/`. Once with the legacy builder (docker-compose 1.29's own) and
# once with BuildKit (DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 and a client that has it).
# After each cold build, one source file is edited and the app rebuilt: the dependency layer
# must come from the cache.
#
#   bash tests/build-from-source.sh
#
# No registry is reachable here: the pinned rust image is made locally by tests/rust-standin.sh
# (kept if it already exists and works). What is tested is HEAD of this repository (a git clone),
# not uncommitted changes. Runs under its own compose projects (ctsrc-legacy-<pid>,
# ctsrc-buildkit-<pid>), image tag (containerize-{app,proxy}:ctsrc-<builder>-<pid>) and host ports
# (CTSRC_HTTP_PORT=18180, CTSRC_HTTPS_PORT=18543), so it collides neither with tests/e2e.sh nor
# with a user's deployment. Prints the wall time of each cold build and rebuild and the sizes.
#
# A cold cache is made, not hoped for, and that reaches beyond this test (fine in CI, where
# nothing else runs; in a shared session it costs others a rebuild, never an image):
#   - `docker builder prune -af` empties BuildKit's cache, everyone's;
#   - the legacy builder's cache is its untagged intermediate images: every untagged image
#     descending from the rust image is removed (that is, any from-source build's cache of this
#     Dockerfile). Tagged images, the rust image itself and unrelated images are never touched.
# Both are done again on exit (trap), with `down -v` and the removal of this run's images.
#
# Environment: CTSRC_HTTP_PORT, CTSRC_HTTPS_PORT, CTSRC_BUILDERS ("legacy buildkit", the
# default, or one of them), CTSRC_KEEP=1 (keep the work dir).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1

HTTP_PORT="${CTSRC_HTTP_PORT:-18180}"
HTTPS_PORT="${CTSRC_HTTPS_PORT:-18543}"
BUILDERS="${CTSRC_BUILDERS:-legacy buildkit}"
RUN_ID="$$"
EXPECT_UID=1000
EXPECT_GID=1000
HTTPS_URL="https://localhost:$HTTPS_PORT"

passed=0
failed=0
failures=()
results=()
T0=$(date +%s)
pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "FAIL $*"; }
info() { echo "     $*"; }
step() { echo; echo "==> $*"; }
ck() { curl -sk --max-time 5 "$@"; }

# ---- engine, compose, clients, the rust image -----------------------------------------------
step "Docker engine, docker-compose, the rust image"
if ! bash "$ROOT/tests/ensure-docker.sh"; then
    echo "build-from-source: FATAL: no Docker engine (see above)" >&2; exit 1
fi
command -v docker-compose >/dev/null 2>&1 || {
    echo "build-from-source: FATAL: docker-compose (v1) is needed: Compose v2 always uses BuildKit, so it cannot run the legacy-builder half" >&2
    exit 1
}
info "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), docker-compose $(docker-compose version --short 2>/dev/null)"
if ! bash "$ROOT/tests/rust-standin.sh"; then
    echo "build-from-source: FATAL: no rust image to build from (tests/rust-standin.sh failed)" >&2; exit 1
fi
rust_image="rust:$(sed -n 's/^ARG RUST_VERSION=//p' docker/Dockerfile | head -n1)-slim-$(sed -n 's/^ARG DEBIAN_RELEASE=//p' docker/Dockerfile | head -n1)"
rust_id="$(docker image inspect -f '{{.Id}}' "$rust_image" 2>/dev/null)"
[ -n "$rust_id" ] || { echo "build-from-source: FATAL: $rust_image is missing" >&2; exit 1; }
info "rust image: $rust_image ($rust_id)"

# A client that builds with BuildKit when compose shells out to `docker build`: one with the
# buildx plugin, or one older than 23 (DOCKER_BUILDKIT=1 then selects the engine's BuildKit).
buildkit_client=""
for c in $(command -v -a docker 2>/dev/null) /usr/bin/docker /usr/local/bin/docker; do
    [ -x "$c" ] || continue
    if "$c" buildx version >/dev/null 2>&1; then buildkit_client="$c"; break; fi
    major="$("$c" version --format '{{.Client.Version}}' 2>/dev/null | sed -n 's/^\([0-9]*\)\..*/\1/p')"
    if [ -n "$major" ] && [ "$major" -lt 23 ]; then buildkit_client="$c"; break; fi
done

# ---- work dir: a clean clone of HEAD --------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ctsrc.XXXXXX")"
head_rev="$(git rev-parse HEAD)"
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] \
    && info "note: uncommitted changes in $ROOT are not tested, HEAD ${head_rev:0:12} is"
mkdir -p "$WORK/bin"
[ -n "$buildkit_client" ] && ln -s "$buildkit_client" "$WORK/bin/docker"

unset COMPOSE_FILE COMPOSE_PROJECT_NAME CONTAINER_UID CONTAINER_GID DOCKER_BUILDKIT COMPOSE_DOCKER_CLI_BUILD
export HTTP_PORT HTTPS_PORT

project=""
src=""
cleanup_run() { # the current run's containers, networks and images
    [ -n "$project" ] && [ -n "$src" ] && [ -d "$src" ] \
        && (cd "$src" && docker-compose -p "$project" down -v --remove-orphans --rmi all --timeout 10 2>&1 | sed 's/^/     /')
    for s in app proxy; do docker image rm -f "containerize-$s:${IMAGE_TAG:-none}" >/dev/null 2>&1; done
    project=""
}
# The legacy builder's cache of this Dockerfile: its untagged intermediate images, i.e. those
# descending from the rust image (skeleton, deps, builder) and those carrying the runtime stages'
# title label (app-base, proxy-base: FROM scratch). `docker image rm` without -f refuses an
# image still in use or with children, so they go leaves first, in rounds.
legacy_cache() {
    docker image ls -a -q --no-trunc | sort -u | xargs -r docker image inspect \
        -f '{{.Id}} {{if .Parent}}{{.Parent}}{{else}}-{{end}} {{len .RepoTags}} {{index .Config.Labels "org.opencontainers.image.title"}}' 2>/dev/null \
        | awk -v root="$rust_id" '
            { parent[$1] = $2; tags[$1] = $3; title[$1] = $4; ids[++n] = $1 }
            END {
                for (i = 1; i <= n; i++) {
                    id = ids[i]; p = parent[id]
                    ours = (title[id] == "containerize-app" || title[id] == "containerize-proxy")
                    for (hops = 0; !ours && p != "-" && p != "" && hops < 1000; hops++) {
                        if (p == root) ours = 1
                        p = parent[p]
                    }
                    if (ours && tags[id] == 0) print id
                }
            }'
}
cold_cache() {
    local ids
    for _ in 1 2 3 4 5; do
        ids="$(legacy_cache)"
        [ -z "$ids" ] && break
        # shellcheck disable=SC2086 # one id per word
        docker image rm $ids >/dev/null 2>&1 || true
    done
    [ -z "$(legacy_cache)" ] || info "warning: $(legacy_cache | wc -l) cached intermediate images could not be removed"
    docker builder prune -af >/dev/null 2>&1 || true
}
teardown() {
    local rc=$?
    trap - EXIT INT TERM
    step "teardown"
    cleanup_run
    cold_cache
    if [ "${CTSRC_KEEP:-0}" = 1 ]; then info "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    echo
    for r in "${results[@]}"; do echo "  $r"; done
    echo "build-from-source: $passed passed, $failed failed ($(( $(date +%s) - T0 )) s)"
    for f in "${failures[@]}"; do echo "  failed: $f"; done
    if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
    exit 0
}
trap teardown EXIT
trap 'echo "build-from-source: interrupted" >&2; failed=$((failed + 1)); exit 1' INT TERM

wait_200() { # wait_200 SECONDS
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        [ "$(ck -o /dev/null -w '%{http_code}' "$HTTPS_URL/")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
image_mb() { docker image inspect -f '{{.Size}}' "$1" 2>/dev/null | awk '{ printf "%.2f MB", $1 / 1e6 }'; }
# where the time of a cold build goes, from the seconds prefixed to each line of its log: up to
# the first `Compiling` (context, skeleton), the dependencies (up to cargo's first `Finished`),
# the workspace crates with the fat-LTO link (up to the second), the rest (images, start)
phases() {
    awk -v total="$2" '
        /Compiling / && !c { c = $1 }
        /Finished .release. profile/ { f[++nf] = $1 }
        END {
            if (!c || nf < 2) { print "phases not found in the log"; exit }
            printf "%d s to the first crate, %d s dependencies, %d s workspace + LTO link, %d s images + start\n",
                c, f[1] - c, f[2] - f[1], total - f[2]
        }' "$1"
}
# docker-compose colours the build's stderr, and may split a line between colour codes
decolor='s/\x1b\[[0-9;]*m//g'
# the cargo `Compiling` lines of a build log: crates compiled in that build
compiled() { grep -cE 'Compiling [A-Za-z0-9_-]+ v[0-9]' "$1"; }
# the crates a build log compiled that are not workspace members (crates/*/Cargo.toml)
not_members() {
    grep -oE 'Compiling [A-Za-z0-9_-]+ v[0-9]' "$1" | awk '{ print $2 }' | sort -u \
        | grep -vxF -f <(sed -n 's/^name *= *"\(.*\)"/\1/p' "$src"/crates/*/Cargo.toml)
}

# ---- one builder: cold `up --build -d`, the answer, an edit and a rebuild -------------------
run_builder() { # run_builder legacy|buildkit
    local builder="$1" envs log t1 t2 n body code redirect
    step "[$builder] clean clone, cold cache, docker-compose up --build -d"
    if [ "$builder" = buildkit ] && [ -z "$buildkit_client" ]; then
        fail "[$builder] no docker client with BuildKit (buildx plugin, or a client older than 23)"
        return
    fi
    src="$WORK/$builder"
    if ! git clone -q "$ROOT" "$src" || ! git -C "$src" checkout -q --detach "$head_rev"; then
        fail "[$builder] git clone of $ROOT"; return
    fi
    # the containers run as 1000:1000 and write conf/tls (first-start keypair) and logs
    chown "$EXPECT_UID:$EXPECT_GID" "$src/conf/tls" "$src/logs" 2>/dev/null || chmod 0777 "$src/conf/tls" "$src/logs"
    export IMAGE_TAG="ctsrc-$builder-$RUN_ID"
    project="ctsrc-$builder-$RUN_ID"
    if [ "$builder" = legacy ]; then
        envs=(DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0)
    else
        envs=(DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 "PATH=$WORK/bin:$PATH")
        info "BuildKit client: $buildkit_client ($("$buildkit_client" version --format '{{.Client.Version}}' 2>/dev/null))"
    fi
    busy="$(ss -Hltn "( sport = :$HTTP_PORT or sport = :$HTTPS_PORT )" 2>/dev/null)"
    [ -z "$busy" ] || { fail "[$builder] host ports $HTTP_PORT/$HTTPS_PORT are in use (CTSRC_HTTP_PORT/CTSRC_HTTPS_PORT): $busy"; return; }
    cold_cache
    log="$WORK/$builder-cold.log"
    info "build log: $log (every line, prefixed with seconds since the start)"
    t1=$(date +%s)
    (cd "$src" && env "${envs[@]}" docker-compose -p "$project" up --build -d) 2>&1 \
        | sed -u "$decolor" | while IFS= read -r line; do printf '%4d %s\n' "$(( $(date +%s) - t1 ))" "$line"; done > "$log"
    code=${PIPESTATUS[0]}
    t2=$(date +%s)
    tail -n 15 "$log" | sed 's/^/     | /'
    if [ "$code" != 0 ]; then
        fail "[$builder] docker-compose up --build -d exited $code after $((t2 - t1)) s"
        grep -iE 'error|failed' "$log" | tail -n 10 | sed 's/^/     ! /'
        cleanup_run; return
    fi
    n="$(compiled "$log")"
    if [ "$builder" = legacy ] && ! grep -q '^ *[0-9]* Step 1/' "$log"; then
        fail "[$builder] the build log shows no legacy 'Step 1/N' lines: not the legacy builder"
    elif [ "$builder" = buildkit ] && ! grep -qE '^ *[0-9]+ #[0-9]+ ' "$log"; then
        fail "[$builder] the build log shows no BuildKit '#N' lines: not BuildKit"
    elif [ "$n" -lt 50 ]; then
        fail "[$builder] only $n crates compiled: the cache was not cold"
    else
        pass "[$builder] cold docker-compose up --build -d: $n crates compiled, $((t2 - t1)) s"
        results+=("$builder builder: cold 'docker-compose up --build -d' $((t2 - t1)) s ($n crates compiled; $(phases "$log" $((t2 - t1))))")
    fi

    # the answer
    if wait_200 60; then
        body="$(ck "$HTTPS_URL/")"
        printf '%s\n' "$body" | sed 's/^/     | /'
        if printf '%s\n' "$body" | head -n1 | grep -qvE '^(X-|$)' \
            && printf '%s\n' "$body" | grep -Eq '^X-Forwarded-For: ([0-9]{1,3}\.){3}[0-9]{1,3}$' \
            && printf '%s\n' "$body" | grep -Eq '^X-Real-IP: ([0-9]{1,3}\.){3}[0-9]{1,3}$' \
            && printf '%s\n' "$body" | grep -qx 'X-Forwarded-Proto: https'; then
            pass "[$builder] GET $HTTPS_URL/ -> 200: a quote, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto: https"
        else
            fail "[$builder] GET $HTTPS_URL/ -> 200 with an unexpected body"
        fi
    else
        fail "[$builder] no 200 from $HTTPS_URL/ within 60 s of 'up' returning"
        (cd "$src" && docker-compose -p "$project" logs --no-color 2>&1 | tail -n 40 | sed 's/^/     ! /')
    fi
    redirect="$(ck -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$HTTP_PORT/a?b=1")"
    if [ "$redirect" = "301 https://localhost:$HTTPS_PORT/a?b=1" ]; then
        pass "[$builder] GET http://localhost:$HTTP_PORT/a?b=1 -> $redirect"
    else
        fail "[$builder] GET http://localhost:$HTTP_PORT/a?b=1 -> '$redirect' (want a 301 to https://localhost:$HTTPS_PORT/a?b=1)"
    fi
    for s in app proxy; do
        results+=("$builder builder: containerize-$s $(image_mb "containerize-$s:$IMAGE_TAG")")
        info "containerize-$s:$IMAGE_TAG $(image_mb "containerize-$s:$IMAGE_TAG")"
    done

    # a source edit: the dependency layer comes from the cache, only the workspace recompiles
    step "[$builder] edit a source file, docker-compose build app"
    printf '\n// edited by tests/build-from-source.sh\n' >> "$src/crates/app/src/main.rs"
    log="$WORK/$builder-edit.log"
    t1=$(date +%s)
    (cd "$src" && env "${envs[@]}" docker-compose -p "$project" build app) 2>&1 | sed -u "$decolor" > "$log"
    code=${PIPESTATUS[0]}
    t2=$(date +%s)
    n="$(compiled "$log")"
    if [ "$code" != 0 ]; then
        fail "[$builder] rebuild after an edit exited $code"; tail -n 20 "$log" | sed 's/^/     ! /'
    elif ! grep -qE 'Compiling app v' "$log"; then
        fail "[$builder] rebuild after editing crates/app/src/main.rs did not recompile app"
    elif [ -n "$(not_members "$log")" ]; then
        fail "[$builder] rebuild after an edit recompiled dependencies: $(not_members "$log" | head -n 8 | xargs)"
    else
        pass "[$builder] rebuild after an edit: dependency layer cached, only workspace crates compiled ($n), $((t2 - t1)) s"
        results+=("$builder builder: rebuild after a source edit $((t2 - t1)) s")
    fi
    cleanup_run
}

for b in $BUILDERS; do
    case "$b" in
        legacy|buildkit) run_builder "$b" ;;
        *) fail "CTSRC_BUILDERS: unknown builder '$b' (legacy, buildkit)" ;;
    esac
done
# teardown() prints the summary and sets the exit code
