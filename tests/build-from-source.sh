#!/usr/bin/env bash
# The README's first run, as a new user does it: a fresh clone, no image built before, a COLD
# builder cache, then README's two commands, literally:
#
#   docker compose up --build -d
#   curl --cacert conf/tls/ca.crt https://localhost/
#
# Three runs (CTSRC_RUNS, default "v2 v2-user legacy"):
#   v2        Compose v2 + Buildx (tests/install-compose-v2.sh installs both), cold cache, as the
#             user running the test (root in CI): the clone belongs to root, the containers run
#             as 1000 and the compose file's `init` service must prepare ./logs and ./conf/tls;
#   v2-user   the same commands as an unprivileged user whose uid is neither 0 nor 1000
#             (CTSRC_USER=ctuser, created with uid CTSRC_USER_UID=1500 in the `docker` group if
#             missing, and kept), from its own fresh clone, on the cache the first run left;
#   legacy    `docker-compose up --build -d` with v1.29 and the legacy builder (DOCKER_BUILDKIT=0),
#             cold cache: what Debian 12's own docker.io + docker-compose do. Its cold build is what
#             keeps the Dockerfile's legacy-builder workarounds honest (moby/moby#37965).
# After the cold builds, one source file is edited and the app rebuilt: the dependency layer
# must come from the cache.
#
#   bash tests/build-from-source.sh        # under `flock /tmp/docker.lock` on a shared engine
#
# No registry is reachable here: the pinned rust image is made locally by tests/rust-standin.sh
# (kept if it already exists and works). What is tested is HEAD of this repository (a git clone),
# not uncommitted changes. The host ports are README's, 80 and 443, unless CTSRC_HTTP_PORT /
# CTSRC_HTTPS_PORT say otherwise (they are then passed as HTTP_PORT / HTTPS_PORT, the compose
# file's own variables, and curl gets the port); the project name (COMPOSE_PROJECT_NAME
# ctsrc-<run>-<pid>) and the image tag (IMAGE_TAG ctsrc-<run>-<pid>) come from the environment,
# so the commands stay the README's and no `latest` image is overwritten.
#
# A cold cache is made, not hoped for, and that reaches beyond this test (fine in CI, where
# nothing else runs; in a shared session it costs others a rebuild, never an image):
#   - `docker builder prune -af` empties BuildKit's cache, everyone's;
#   - the legacy builder's cache is its untagged intermediate images: every untagged image
#     descending from the rust image is removed (that is, any from-source build's cache of this
#     Dockerfile). Tagged images, the rust image itself and unrelated images are never touched.
# Both are done again on exit (trap), with `down -v` and the removal of this run's images.
#
# Environment: CTSRC_RUNS, CTSRC_HTTP_PORT, CTSRC_HTTPS_PORT, CTSRC_USER, CTSRC_USER_UID,
# CTSRC_KEEP=1 (keep the work dir).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1

HTTP_PORT="${CTSRC_HTTP_PORT:-80}"
HTTPS_PORT="${CTSRC_HTTPS_PORT:-443}"
RUNS="${CTSRC_RUNS:-v2 v2-user legacy}"
TEST_USER="${CTSRC_USER:-ctuser}"
TEST_USER_UID="${CTSRC_USER_UID:-1500}"
RUN_ID="$$"
EXPECT_UID=1000
EXPECT_GID=1000
# README's URL, with the port only when it is not 443
HTTPS_URL="https://localhost"; [ "$HTTPS_PORT" = 443 ] || HTTPS_URL="$HTTPS_URL:$HTTPS_PORT"
HTTP_URL="http://localhost"; [ "$HTTP_PORT" = 80 ] || HTTP_URL="$HTTP_URL:$HTTP_PORT"

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

# ---- engine, both Compose versions, Buildx, the rust image, the test user -------------------
step "Docker engine, Compose v2 + Buildx, docker-compose v1.29, the rust image"
if ! bash "$ROOT/tests/ensure-docker.sh"; then
    echo "build-from-source: FATAL: no Docker engine (see above)" >&2; exit 1
fi
case " $RUNS " in *" v2 "*|*" v2-user "*)
    if ! docker compose version >/dev/null 2>&1 || ! docker buildx version >/dev/null 2>&1; then
        echo "build-from-source: FATAL: Compose v2 and Buildx are needed (bash tests/install-compose-v2.sh)" >&2; exit 1
    fi ;;
esac
case " $RUNS " in *" legacy "*)
    command -v docker-compose >/dev/null 2>&1 || {
        echo "build-from-source: FATAL: docker-compose (v1.29) is needed for the legacy run (Debian: apt-get install docker-compose)" >&2
        exit 1
    } ;;
esac
info "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), client $(docker version --format '{{.Client.Version}}' 2>/dev/null)"
info "$(docker compose version 2>/dev/null), $(docker buildx version 2>/dev/null), docker-compose $(docker-compose version --short 2>/dev/null)"
if ! bash "$ROOT/tests/rust-standin.sh"; then
    echo "build-from-source: FATAL: no rust image to build from (tests/rust-standin.sh failed)" >&2; exit 1
fi
rust_image="rust:$(sed -n 's/^ARG RUST_VERSION=//p' docker/Dockerfile | head -n1)-slim-$(sed -n 's/^ARG DEBIAN_RELEASE=//p' docker/Dockerfile | head -n1)"
rust_id="$(docker image inspect -f '{{.Id}}' "$rust_image" 2>/dev/null)"
[ -n "$rust_id" ] || { echo "build-from-source: FATAL: $rust_image is missing" >&2; exit 1; }
info "rust image: $rust_image ($rust_id)"

# The unprivileged user of the v2-user run: neither root nor the containers' 1000, in the
# docker group, with the two CLI plugins in its own ~/.docker/cli-plugins.
user_home=""
case " $RUNS " in *" v2-user "*)
    [ "$(id -u)" = 0 ] || { echo "build-from-source: FATAL: the v2-user run creates and switches to $TEST_USER: run as root, or CTSRC_RUNS without v2-user" >&2; exit 1; }
    if ! id -u "$TEST_USER" >/dev/null 2>&1; then
        useradd -m -u "$TEST_USER_UID" -G docker -s /bin/bash "$TEST_USER" \
            || { echo "build-from-source: FATAL: useradd $TEST_USER (uid $TEST_USER_UID)" >&2; exit 1; }
        info "created user $TEST_USER (uid $TEST_USER_UID, group docker); it is kept"
    fi
    id -nG "$TEST_USER" | grep -qw docker || usermod -aG docker "$TEST_USER"
    case "$(id -u "$TEST_USER")" in 0|"$EXPECT_UID") echo "build-from-source: FATAL: $TEST_USER has uid $(id -u "$TEST_USER"): pick a user whose uid is neither 0 nor $EXPECT_UID" >&2; exit 1 ;; esac
    user_home="$(getent passwd "$TEST_USER" | cut -d: -f6)"
    install -d -o "$TEST_USER" -g "$(id -g "$TEST_USER")" "$user_home/.docker" "$user_home/.docker/cli-plugins"
    for plugin in docker-compose docker-buildx; do
        runuser -u "$TEST_USER" -- env HOME="$user_home" docker "${plugin#docker-}" version >/dev/null 2>&1 \
            || install -o "$TEST_USER" -m 0755 "${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/$plugin" "$user_home/.docker/cli-plugins/$plugin"
    done
    info "$TEST_USER: uid $(id -u "$TEST_USER"), groups $(id -nG "$TEST_USER" | tr ' ' ','), $(runuser -u "$TEST_USER" -- env HOME="$user_home" docker compose version 2>&1)" ;;
esac

# ---- work dir: fresh clones of HEAD ---------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ctsrc.XXXXXX")"
chmod 0755 "$WORK"   # the test user's clone is in it
head_rev="$(git rev-parse HEAD)"
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] \
    && info "note: uncommitted changes in $ROOT are not tested, HEAD ${head_rev:0:12} is"

unset COMPOSE_FILE COMPOSE_PROJECT_NAME CONTAINER_UID CONTAINER_GID DOCKER_BUILDKIT COMPOSE_DOCKER_CLI_BUILD IMAGE_TAG
export -n HTTP_PORT HTTPS_PORT   # the test's values; passed to Compose only through port_env
# the compose file's port variables only when they are not README's 80/443
port_env=()
[ "$HTTP_PORT" = 80 ] || port_env+=("HTTP_PORT=$HTTP_PORT")
[ "$HTTPS_PORT" = 443 ] || port_env+=("HTTPS_PORT=$HTTPS_PORT")

# the current run: its clone, user, environment (project, tag, ports, builder) and Compose
project=""
src=""
run_user=""
run_env=()
compose_cmd=()
# in_src CMD...: run CMD in the clone, as the run's user, with the run's environment
in_src() {
    if [ -n "$run_user" ]; then
        runuser -u "$run_user" -- env HOME="$user_home" "${run_env[@]}" sh -c 'cd "$0" && exec "$@"' "$src" "$@"
    else
        (cd "$src" && env "${run_env[@]}" "$@")
    fi
}
cleanup_run() { # the current run's containers, networks and images
    [ -n "$project" ] && [ -n "$src" ] && [ -d "$src" ] \
        && in_src "${compose_cmd[@]}" down -v --remove-orphans --rmi all --timeout 10 2>&1 | sed 's/^/     /'
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

# README's second command, in the clone as the run's user: `curl --cacert conf/tls/ca.crt URL`
readme_curl() { in_src curl -s --max-time 5 --cacert conf/tls/ca.crt "$@"; }
wait_200() { # wait_200 SECONDS: until the verified answer is 200
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        [ "$(readme_curl -o /dev/null -w '%{http_code}' "$HTTPS_URL/" 2>/dev/null)" = 200 ] && return 0
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

# ---- one run: fresh clone, (cold) `up --build -d`, README's curl, the folders, an edit -------
# run_first NAME: v2 | v2-user | legacy (see the header)
run_first() {
    local name="$1" cli log t1 t2 n body code redirect want_redirect cold=1 edit=1 owner_uid st
    run_user=""; compose_cmd=(docker compose); cli="docker compose"
    case "$name" in
        v2) ;;
        v2-user) run_user="$TEST_USER"; cold=0; edit=0 ;;
        legacy) compose_cmd=(docker-compose); cli="docker-compose" ;;
    esac
    project="ctsrc-$name-$RUN_ID"
    local tag="ctsrc-$name-$RUN_ID"
    run_env=("COMPOSE_PROJECT_NAME=$project" "IMAGE_TAG=$tag" "${port_env[@]}")
    [ "$name" = legacy ] && run_env+=(DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0)
    step "[$name] fresh clone as ${run_user:-$(id -un)}, $([ $cold = 1 ] && echo cold || echo warm) cache: $cli up --build -d"
    src="$WORK/$name"
    if ! git clone -q "$ROOT" "$src" || ! git -C "$src" checkout -q --detach "$head_rev"; then
        fail "[$name] git clone of $ROOT"; project=""; return
    fi
    # as if the user had cloned it (git refuses to clone another user's repository)
    [ -n "$run_user" ] && chown -R "$run_user:$(id -g "$run_user")" "$src"
    owner_uid="$(stat -c %u "$src/conf/tls")"
    info "clone $src (conf/tls and logs: $(stat -c '%U:%G %a' "$src/conf/tls"), $(stat -c '%U:%G %a' "$src/logs"))"
    busy="$(ss -Hltn "( sport = :$HTTP_PORT or sport = :$HTTPS_PORT )")"
    [ -z "$busy" ] || { fail "[$name] host ports $HTTP_PORT/$HTTPS_PORT are in use (CTSRC_HTTP_PORT/CTSRC_HTTPS_PORT): $busy"; project=""; return; }
    [ "$cold" = 1 ] && cold_cache
    log="$WORK/$name-up.log"
    info "build log: $log (every line, prefixed with seconds since the start)"
    t1=$(date +%s)
    in_src "${compose_cmd[@]}" up --build -d 2>&1 \
        | sed -u "$decolor" | while IFS= read -r line; do printf '%4d %s\n' "$(( $(date +%s) - t1 ))" "$line"; done > "$log"
    code=${PIPESTATUS[0]}
    t2=$(date +%s)
    tail -n 12 "$log" | sed 's/^/     | /'
    if [ "$code" != 0 ]; then
        fail "[$name] $cli up --build -d exited $code after $((t2 - t1)) s"
        grep -iE 'error|failed' "$log" | tail -n 10 | sed 's/^/     ! /'
        cleanup_run; return
    fi
    n="$(compiled "$log")"
    if [ "$name" = legacy ] && ! grep -q '^ *[0-9]* Step 1/' "$log"; then
        fail "[$name] the build log shows no legacy 'Step 1/N' lines: not the legacy builder"
    elif [ "$name" != legacy ] && ! grep -qE '^ *[0-9]+ #[0-9]+ ' "$log"; then
        fail "[$name] the build log shows no BuildKit '#N' lines: not BuildKit"
    elif [ "$cold" = 1 ] && [ "$n" -lt 50 ]; then
        fail "[$name] only $n crates compiled: the cache was not cold"
    elif [ "$cold" = 1 ]; then
        pass "[$name] cold $cli up --build -d: $n crates compiled, $((t2 - t1)) s"
        results+=("$name: cold '$cli up --build -d' $((t2 - t1)) s ($n crates compiled; $(phases "$log" $((t2 - t1))))")
    else
        pass "[$name] $cli up --build -d on the cache of the first run: $((t2 - t1)) s ($n crates compiled)"
        results+=("$name: '$cli up --build -d' as uid $(id -u "$run_user"), warm cache, $((t2 - t1)) s")
    fi

    # README's second command; nothing else was run in between (no chown, no restart)
    if wait_200 60; then
        body="$(readme_curl "$HTTPS_URL/")"
        printf '%s\n' "$body" | sed 's/^/     | /'
        if printf '%s\n' "$body" | head -n1 | grep -qvE '^(X-|$)' \
            && printf '%s\n' "$body" | grep -Eq '^X-Forwarded-For: ([0-9]{1,3}\.){3}[0-9]{1,3}$' \
            && printf '%s\n' "$body" | grep -Eq '^X-Real-IP: ([0-9]{1,3}\.){3}[0-9]{1,3}$' \
            && printf '%s\n' "$body" | grep -qx 'X-Forwarded-Proto: https'; then
            pass "[$name] curl --cacert conf/tls/ca.crt $HTTPS_URL/ -> 200 ($(( $(date +%s) - t2 )) s after 'up' returned): a quote, X-Forwarded-For, X-Real-IP, X-Forwarded-Proto: https"
        else
            fail "[$name] curl --cacert conf/tls/ca.crt $HTTPS_URL/ -> 200 with an unexpected body"
        fi
    else
        fail "[$name] no verified 200 from curl --cacert conf/tls/ca.crt $HTTPS_URL/ within 60 s of 'up' returning"
        in_src "${compose_cmd[@]}" ps -a 2>&1 | sed 's/^/     ! /'
        in_src "${compose_cmd[@]}" logs --no-color 2>&1 | tail -n 40 | sed 's/^/     ! /'
    fi
    restarts="$(docker inspect -f '{{.RestartCount}}' "$(in_src "${compose_cmd[@]}" ps -q proxy 2>/dev/null | head -n1)" 2>/dev/null)"
    if [ "$restarts" = 0 ]; then pass "[$name] the proxy started once (no restart loop)"; else fail "[$name] the proxy restarted ${restarts:-?} times"; fi
    # the init service's work: owner kept, the containers' group with rwx
    for d in conf/tls logs; do
        st="$(stat -c '%u %g %a' "$src/$d")"
        if [ "$st" = "$owner_uid $EXPECT_GID 775" ]; then
            pass "[$name] ./$d prepared by init: owner $owner_uid kept, group $EXPECT_GID, mode 775"
        else
            fail "[$name] ./$d is '$st' after init (want '$owner_uid $EXPECT_GID 775')"
        fi
    done
    want_redirect="301 $HTTPS_URL/a?b=1"
    redirect="$(ck -o /dev/null -w '%{http_code} %{redirect_url}' "$HTTP_URL/a?b=1")"
    if [ "$redirect" = "$want_redirect" ]; then
        pass "[$name] GET $HTTP_URL/a?b=1 -> $redirect"
    else
        fail "[$name] GET $HTTP_URL/a?b=1 -> '$redirect' (want '$want_redirect')"
    fi
    for s in app proxy; do
        [ "$cold" = 1 ] && results+=("$name: containerize-$s $(image_mb "containerize-$s:$tag")")
        info "containerize-$s:$tag $(image_mb "containerize-$s:$tag")"
    done

    # a source edit: the dependency layer comes from the cache, only the workspace recompiles
    if [ "$edit" = 1 ]; then
        step "[$name] edit a source file, $cli build app"
        printf '\n// edited by tests/build-from-source.sh\n' >> "$src/crates/app/src/main.rs"
        log="$WORK/$name-edit.log"
        t1=$(date +%s)
        in_src "${compose_cmd[@]}" build app 2>&1 | sed -u "$decolor" > "$log"
        code=${PIPESTATUS[0]}
        t2=$(date +%s)
        n="$(compiled "$log")"
        if [ "$code" != 0 ]; then
            fail "[$name] rebuild after an edit exited $code"; tail -n 20 "$log" | sed 's/^/     ! /'
        elif ! grep -qE 'Compiling app v' "$log"; then
            fail "[$name] rebuild after editing crates/app/src/main.rs did not recompile app"
        elif [ -n "$(not_members "$log")" ]; then
            fail "[$name] rebuild after an edit recompiled dependencies: $(not_members "$log" | head -n 8 | xargs)"
        else
            pass "[$name] rebuild after an edit: dependency layer cached, only workspace crates compiled ($n), $((t2 - t1)) s"
            results+=("$name: rebuild after a source edit $((t2 - t1)) s")
        fi
    fi
    cleanup_run
    for s in app proxy; do docker image rm -f "containerize-$s:$tag" >/dev/null 2>&1; done
}

results+=("$(date -u +%Y-%m-%dT%H:%MZ), commit ${head_rev:0:12}, $(nproc) cores, engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(docker compose version 2>/dev/null), buildx $(docker buildx version 2>/dev/null | awk '{ print $2 }'), docker-compose $(docker-compose version --short 2>/dev/null)")
for r in $RUNS; do
    case "$r" in
        v2|v2-user|legacy) run_first "$r" ;;
        *) fail "CTSRC_RUNS: unknown run '$r' (v2, v2-user, legacy)" ;;
    esac
done
# teardown() prints the summary and sets the exit code
