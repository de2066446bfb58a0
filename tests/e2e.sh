#!/usr/bin/env bash
# End-to-end test of the product: static binaries -> images (offline targets) -> compose up ->
# checks against the real engine -> teardown.
#
#   bash tests/e2e.sh
#
# Runs on non-default host ports (E2E_HTTP_PORT=18080, E2E_HTTPS_PORT=18443) under its own
# compose project name, with the repository's docker-compose.yml unchanged (plus the override
# tests/e2e-services.yml: a second service, api, on plain HTTP) but a throw-away
# project directory (--project-directory): a copy of conf/app/templates and conf/proxy, an
# empty conf/tls and logs. The repository's conf/tls keypair, templates and logs are never
# touched. Always tears down with `down -v`; prints `logs` when a check fails.
#
# Environment: E2E_HTTP_PORT, E2E_HTTPS_PORT, E2E_TAG (image tag, default e2e), E2E_KEEP=1 (keep
# the work dir), E2E_SKIP_BUILD=1
# (reuse containerize-{app,proxy}:e2e images already built).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1

HTTP_PORT="${E2E_HTTP_PORT:-18080}"
HTTPS_PORT="${E2E_HTTPS_PORT:-18443}"
INSPECT_PORT="${E2E_INSPECT_PORT:-14040}"
PROJECT="containerize-e2e-$$"
TAG="${E2E_TAG:-e2e}"   # image tag; another tag lets two runs share the engine
EXPECT_UID=1000
EXPECT_GID=1000
MAX_IMAGE_BYTES=14000000   # 14 MB: the image budget (DEVELOPERS.md)
HTTPS_URL="https://localhost:$HTTPS_PORT"

T0=$(date +%s)
# pass/fail/info/step, now/elapsed/wait_for, ck, served_fingerprint/file_fingerprint/new_keypair,
# answer_is_valid, config_env, check_settings_listed
. "$ROOT/tests/lib.sh"
# services_image, services_checks: several services by name (tests/e2e-services.yml)
. "$ROOT/tests/e2e_services.sh"

# ---- engine and compose ---------------------------------------------------------------------
step "Docker engine"
if ! bash "$ROOT/tests/ensure-docker.sh"; then
    echo "e2e: FATAL: no Docker engine (see above); not skipping" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
if ! pick_compose; then
    echo "e2e: FATAL: no Compose client (docker compose or docker-compose; CT_COMPOSE='${CT_COMPOSE:-}')" >&2
    exit 1
fi
info "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || true))"

# Leftovers of an earlier run that was killed (SIGKILL skips the trap): remove containers and
# networks of containerize-e2e-<pid> projects whose pid is gone.
for p in $(docker ps -a --filter label=com.docker.compose.project --format '{{.Label "com.docker.compose.project"}}' 2>/dev/null | grep '^containerize-e2e-[0-9]*$' | sort -u); do
    if ! kill -0 "${p##*-}" 2>/dev/null; then
        info "removing leftovers of $p"
        docker ps -aq --filter "label=com.docker.compose.project=$p" | xargs -r docker rm -f >/dev/null
        docker network ls -q --filter "label=com.docker.compose.project=$p" | xargs -r docker network rm >/dev/null
    fi
done

# ---- work dir: a throw-away project directory -----------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/containerize-e2e.XXXXXX")"
mkdir -p "$WORK/conf/app" "$WORK/conf/tls" "$WORK/logs"
cp -R "$ROOT/conf/app/templates" "$WORK/conf/app/templates"
cp -R "$ROOT/conf/proxy" "$WORK/conf/proxy"
cp -R "$ROOT/static" "$WORK/static"
cp -R "$ROOT/media" "$WORK/media"
chmod -R a+rX "$WORK"
# conf/tls and logs stay as this user made them (root in CI, 0755): the compose file's one-shot
# `init` service must make them writable for the containers' 1000:1000 (checked in 4b).

# Compose: the repository's file, the work dir as project directory (relative volumes resolve
# there; no .env is read from the repository), the test's ports and image tag.
export HTTP_PORT HTTPS_PORT INSPECT_PORT IMAGE_TAG="$TAG"
unset CONTAINER_UID CONTAINER_GID COMPOSE_FILE COMPOSE_PROJECT_NAME
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml" -f "$E2E_SERVICES_FILE" --project-directory "$WORK" "$@"; }
cid() { compose ps -a -q "$1" 2>/dev/null | head -n1; }

started=0
teardown() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$started" = 1 ]; then
        if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
            step "docker-compose logs (a check failed)"
            compose logs --no-color --timestamps 2>&1 | tail -n 400
        fi
        step "teardown: down -v"
        compose down -v --remove-orphans --timeout 10 2>&1 | sed 's/^/     /'
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        info "work dir kept: $WORK"
    else
        rm -rf "$WORK" 2>/dev/null || info "could not remove $WORK (files owned by uid $EXPECT_UID)"
    fi
    summary e2e
    if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
    exit 0
}
trap teardown EXIT
trap 'echo "e2e: interrupted" >&2; failed=$((failed + 1)); exit 1' INT TERM

# ---- helpers --------------------------------------------------------------------------------
status_is() { [ "$(ck -o /dev/null -w '%{http_code}' "$HTTPS_URL/")" = "$1" ]; }
healthy() { [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(cid "$1")" 2>/dev/null)" = healthy ]; }
both_healthy() { healthy app && healthy proxy; }
served_is() { [ "$(served_fingerprint)" = "$1" ]; }
body_has() { ck "$HTTPS_URL/" | grep -qF -- "$1"; }
body_lacks() { ! ck "$HTTPS_URL/" | grep -qF -- "$1"; }

# ---- 1. static binaries and images (offline targets) ----------------------------------------
step "static binaries + images (docker/build.sh all --prebuilt)"
if [ "${E2E_SKIP_BUILD:-0}" = 1 ]; then
    info "E2E_SKIP_BUILD=1: reusing containerize-app:$TAG and containerize-proxy:$TAG"
elif bash "$ROOT/docker/build.sh" all --prebuilt --tag "$TAG"; then
    pass "images built from host binaries with the offline targets"
else
    fail "docker/build.sh all --prebuilt"
    exit 1
fi

step "images"
for s in app proxy; do
    img="containerize-$s:$TAG"
    if ! docker image inspect "$img" >/dev/null 2>&1; then fail "$img exists"; continue; fi
    bytes=$(docker image inspect -f '{{.Size}}' "$img")
    mb=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1000000 }')
    if [ "$bytes" -le "$MAX_IMAGE_BYTES" ]; then pass "$img is $mb MB (<= 14 MB)"; else fail "$img is $mb MB (> 14 MB)"; fi
    user=$(docker image inspect -f '{{.Config.User}}' "$img")
    hc=$(docker image inspect -f '{{if .Config.Healthcheck}}{{join .Config.Healthcheck.Test " "}}{{end}}' "$img")
    envs=$(docker image inspect -f '{{range .Config.Env}}{{.}} {{end}}' "$img" | grep -v '^PATH=[^ ]* $' | sed 's/ $//')
    layers=$(docker image inspect -f '{{len .RootFS.Layers}}' "$img")
    title=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.title"}}' "$img")
    if [ "$user" = "$EXPECT_UID:$EXPECT_GID" ] && [ "$hc" = "CMD /$s healthcheck" ] && [ -z "$envs" ] \
        && [ "$layers" = 1 ] && [ "$title" = "containerize-$s" ]; then
        pass "$img: USER $user, HEALTHCHECK '$hc', one layer, OCI labels, no ENV"
    else
        fail "$img metadata: USER '$user', HEALTHCHECK '$hc', layers $layers, title '$title', env '$envs'"
    fi
done

services_image || exit 1

# ---- 2. up ----------------------------------------------------------------------------------
# The file is valid for both Compose versions, whichever one runs the rest (not skipped: CI has
# both, v2 from tests/install-compose-v2.sh, v1.29 from Debian's docker-compose).
for c in "docker compose" docker-compose; do
    read -ra cc <<<"$c"
    if ! "${cc[@]}" version >/dev/null 2>&1; then
        fail "'$c' is missing: both Compose versions are tested (v2: tests/install-compose-v2.sh)"
    elif out=$("${cc[@]}" -p "$PROJECT" -f "$ROOT/docker-compose.yml" --project-directory "$WORK" config -q 2>&1); then
        pass "'$c config' ($("${cc[@]}" version --short 2>/dev/null)) accepts docker-compose.yml${out:+ (said: $out)}"
    else
        fail "'$c config' rejects docker-compose.yml: $out"
    fi
done
if ! compose config -q; then
    fail "${COMPOSE[*]} config rejects docker-compose.yml"
    exit 1
fi

# Every variable a binary documents in --help is set explicitly in its compose anchor.
check_settings_listed "$TAG" "$(compose config 2>/dev/null | config_env)" "its compose anchor"

step "compose up -d (project $PROJECT, ports $HTTP_PORT/$HTTPS_PORT, work dir $WORK)"
if ! busy=$(ss -Hltn "( sport = :$HTTP_PORT or sport = :$HTTPS_PORT )"); then
    fail "ss cannot list the host's listeners (tests/ensure-docker.sh installs iproute2)"
    exit 1
fi
if [ -n "$busy" ]; then
    fail "host ports $HTTP_PORT/$HTTPS_PORT are already in use (set E2E_HTTP_PORT/E2E_HTTPS_PORT): $busy"
    exit 1
fi
started=1
t_up=$(now)
if ! compose up -d 2>&1 | sed 's/^/     /'; then
    fail "compose up -d"
    exit 1
fi
if wait_for 60 status_is 200; then
    t_200=$(now)
    pass "first 200 from $HTTPS_URL/ $(elapsed "$t_up" "$t_200") s after 'up -d' was started"
else
    fail "no 200 from $HTTPS_URL/ within 60 s of 'up -d'"
fi
if wait_for 60 both_healthy; then
    pass "both containers healthy $(elapsed "$t_up" "$(now)") s after 'up -d'"
else
    fail "containers not healthy within 60 s: app=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(cid app)" 2>/dev/null) proxy=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(cid proxy)" 2>/dev/null)"
fi
APP_CID=$(cid app)
PROXY_CID=$(cid proxy)

# ---- 3. the answer --------------------------------------------------------------------------
check_answer "$WORK/body"
quote=$(head -n1 "$WORK/body" 2>/dev/null)
check_redirect

# ---- 4. the app is not reachable from the host ----------------------------------------------
step "app port 8000 stays internal"
ports_json=$(docker inspect -f '{{json .NetworkSettings.Ports}}' "$APP_CID" 2>/dev/null)
bindings=$(docker inspect -f '{{json .HostConfig.PortBindings}}' "$APP_CID" 2>/dev/null)
published=$(compose port app 8000 2>/dev/null | grep -E ':[1-9][0-9]*$' || true)   # v2 prints ':0' for none
if [ "$ports_json" = '{"8000/tcp":null}' ] && { [ "$bindings" = '{}' ] || [ "$bindings" = 'null' ]; } && [ -z "$published" ]; then
    pass "compose publishes no port for app (exposed only: $ports_json)"
else
    fail "app port bindings: ports=$ports_json bindings=$bindings published='$published'"
fi
if ! listeners=$(ss -Hltnp 'sport = :8000'); then
    fail "ss cannot list the host's listeners on port 8000"
elif [ -z "$listeners" ]; then
    pass "nothing listens on the host's port 8000"
elif printf '%s' "$listeners" | grep -q docker; then
    fail "docker listens on the host's port 8000: $listeners"
elif ck "https://localhost:8000/" 2>/dev/null | grep -qF -- "$quote"; then
    fail "the host's port 8000 answers with the app's quote: $listeners"
else
    pass "no container listens on the host's port 8000 (an unrelated host process does: $(printf '%s' "$listeners" | awk '{print $NF}' | head -n1))"
fi

# ---- 4b. the one-shot init: conf/tls and logs made writable, as root with two capabilities --
step "init: ./conf/tls and ./logs prepared for uid $EXPECT_UID (the work dir belongs to uid $(id -u))"
init_c=$(cid init)
# the engine may spell capabilities with or without CAP_
init_state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.Config.User}} {{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}} {{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.SecurityOpt}}' "$init_c" 2>/dev/null | sed 's/CAP_//g; s/"//g')
want_init='exited 0 0:0 [CHOWN,FOWNER] [ALL] none true [no-new-privileges:true]'
if [ "$init_state" = "$want_init" ]; then
    pass "init exited 0; it ran as 0:0 with CAP_CHOWN and CAP_FOWNER only, no network, read-only root, no_new_privs"
else
    fail "init: '$init_state' (want '$want_init')"
fi
compose logs --no-color init 2>&1 | sed 's/^/     | /' | tail -n 4
for d in conf/tls logs; do
    st=$(stat -c '%u %g %a' "$WORK/$d")
    if [ "$(id -u)" = "$EXPECT_UID" ]; then
        want="$(id -u) $(id -g) 755"   # already the proxy's: left as it was
    else
        want="$(id -u) $EXPECT_GID 775" # owner kept, the proxy's group with rwx
    fi
    if [ "$st" = "$want" ]; then pass "./$d: owner, group, mode: $st"; else fail "./$d: '$st' (want '$want')"; fi
done

# ---- 5. users -------------------------------------------------------------------------------
step "container users (from /proc, not from the image)"
for s in app proxy; do
    c=$(cid "$s")
    pid=$(docker inspect -f '{{.State.Pid}}' "$c" 2>/dev/null)
    uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status" 2>/dev/null)
    gids=$(awk '/^Gid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status" 2>/dev/null)
    groups=$(awk '/^Groups:/ { $1 = ""; print }' "/proc/$pid/status" 2>/dev/null | xargs)
    capeff=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    nnp=$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    want_u="$EXPECT_UID $EXPECT_UID $EXPECT_UID $EXPECT_UID"
    want_g="$EXPECT_GID $EXPECT_GID $EXPECT_GID $EXPECT_GID"
    # Docker sets the supplementary groups to the primary group (for `user: uid:gid`)
    if [ "$uids" = "$want_u" ] && [ "$gids" = "$want_g" ] && { [ -z "$groups" ] || [ "$groups" = "$EXPECT_GID" ]; }; then
        pass "$s (pid $pid) runs as uid $EXPECT_UID gid $EXPECT_GID (groups: ${groups:-none})"
    else
        fail "$s (pid $pid): Uid '$uids' Gid '$gids' Groups '$groups'"
    fi
    ro=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$c")
    if [ "$capeff" = 0000000000000000 ] && [ "$nnp" = 1 ] && [ "$ro" = true ]; then
        pass "$s: no effective capabilities, no_new_privs, read-only root filesystem"
    else
        fail "$s: CapEff=$capeff NoNewPrivs=$nnp ReadonlyRootfs=$ro"
    fi
done

# ---- 6. the certificate: a leaf of the development CA in conf/tls, verified without -k -----
step "TLS certificate and the development CA"
crt="$WORK/conf/tls/localhost.crt"
key="$WORK/conf/tls/localhost.key"
ca="$WORK/conf/tls/ca.crt"
cakey="$WORK/conf/tls/ca.key"
served=$(served_fingerprint)
if [ -f "$crt" ] && [ -f "$key" ] && [ -f "$ca" ] && [ -f "$cakey" ]; then
    modes="ca.key $(stat -c '%U:%G %a' "$cakey"), localhost.key $(stat -c '%a' "$key")"
    if [ "$(stat -c '%a' "$cakey")" = 600 ] && [ "$(stat -c '%a' "$key")" = 600 ]; then
        pass "a development CA and a leaf were created in conf/tls on first start ($modes)"
    else
        fail "keys in conf/tls are not mode 0600: $modes"
    fi
    ondisk=$(file_fingerprint "$crt")
    if [ -n "$served" ] && [ "$served" = "$ondisk" ]; then
        pass "the served certificate is conf/tls/localhost.crt (sha256 $served)"
    else
        fail "served certificate '$served' != conf/tls/localhost.crt '$ondisk'"
    fi
else
    fail "no CA and keypair in conf/tls after the first start: $(ls -la "$WORK/conf/tls" | tr '\n' ' ')"
fi
chain_len=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost -showcerts </dev/null 2>/dev/null | grep -c 'BEGIN CERTIFICATE')
if [ "$chain_len" = 1 ]; then pass "the chain served is the leaf alone"; else fail "the chain served has $chain_len certificates (want the leaf alone)"; fi
ca_text=$(openssl x509 -in "$ca" -noout -text 2>/dev/null)
constraints=$(printf '%s\n' "$ca_text" | sed -n '/Name Constraints: critical/,/X509v3 Subject Key Identifier/p' | grep -E 'DNS:|IP:' | xargs)
if printf '%s' "$ca_text" | grep -q 'CA:TRUE, pathlen:0' && printf '%s' "$ca_text" | grep -q 'Name Constraints: critical' \
    && printf '%s' "$constraints" | grep -q 'DNS:localhost' && printf '%s' "$constraints" | grep -q 'IP:127.0.0.1/255.255.255.255' \
    && printf '%s' "$ca_text" | grep -q 'Certificate Sign, CRL Sign' && printf '%s' "$ca_text" | grep -q 'ASN1 OID: prime256v1'; then
    pass "openssl x509 -text: ca.crt is a P-256 CA, pathlen 0, certSign/cRLSign, name constraints: $constraints"
else
    fail "ca.crt is not the expected name-constrained CA: $(printf '%s' "$ca_text" | grep -E 'CA:|Constraints|Permitted|DNS:|IP:' | xargs)"
fi
if openssl verify -CAfile "$ca" "$crt" >/dev/null 2>&1; then
    pass "openssl verify: conf/tls/localhost.crt chains to conf/tls/ca.crt"
else
    fail "openssl verify -CAfile ca.crt localhost.crt: $(openssl verify -CAfile "$ca" "$crt" 2>&1 | tail -n 1)"
fi
for url in "$HTTPS_URL/" "https://127.0.0.1:$HTTPS_PORT/"; do
    code=$(curl -sS --max-time 5 --cacert "$ca" -o /dev/null -w '%{http_code}' "$url" 2>"$WORK/curl.err")
    if [ "$code" = 200 ]; then
        pass "curl --cacert conf/tls/ca.crt $url -> 200 (no -k)"
    else
        fail "curl --cacert conf/tls/ca.crt $url -> $code: $(cat "$WORK/curl.err")"
    fi
done
# A name under localhost the leaf does not cover: its own certificate, issued at its first
# handshake by the same CA and kept in conf/tls/names/ (any answer: the handshake is the point).
sub_out=$(curl -sS --max-time 5 --cacert "$ca" --resolve "api.localhost:$HTTPS_PORT:127.0.0.1" \
    -o /dev/null -w '%{http_code}' "https://api.localhost:$HTTPS_PORT/" 2>&1); rc=$?
if [ "$rc" = 0 ] && wait_for 5 test -s "$(dirname "$crt")/names/api.localhost.crt"; then
    pass "curl --cacert ca.crt --resolve api.localhost:$HTTPS_PORT:127.0.0.1 https://api.localhost:$HTTPS_PORT/ verifies ($sub_out; its certificate is in conf/tls/names/)"
else
    fail "https://api.localhost:$HTTPS_PORT/ with --cacert ca.crt: exit $rc, $(printf '%s' "$sub_out" | head -n1); names/: $(ls "$(dirname "$crt")/names" 2>&1 | xargs)"
fi
cert_cmd=$(docker exec "$PROXY_CID" /proxy cert 2>&1)
if printf '%s' "$cert_cmd" | tr -d ':' | grep -qiF -- "$(printf '%s' "$served" | tr -d ':')" && [ -n "$served" ] \
    && printf '%s' "$cert_cmd" | grep -qF 'May sign only DNS:localhost, IP:127.0.0.1/32, IP:::1/128'; then
    pass "'proxy cert' inside the container reports the same fingerprint and the CA's name constraints"
else
    fail "'proxy cert' does not report the served fingerprint $served and the constraints: $(printf '%s' "$cert_cmd" | head -n 20 | tr '\n' ' ')"
fi
ca_fp=$(file_fingerprint "$ca")
trust_out=$(compose run --rm -T proxy cert trust 2>&1)
if [ -n "$ca_fp" ] && printf '%s' "$trust_out" | grep -qF -- "$ca_fp" \
    && printf '%s' "$trust_out" | grep -qF 'sudo cp conf/tls/ca.crt /usr/local/share/ca-certificates/' \
    && printf '%s' "$trust_out" | grep -qF 'certutil -user -addstore Root conf\tls\ca.crt'; then
    pass "'compose run --rm proxy cert trust' prints the trust commands and the CA's fingerprint $ca_fp"
else
    fail "'compose run --rm proxy cert trust': $(printf '%s' "$trust_out" | head -n 12 | tr '\n' ' ')"
fi

# ---- 7. template edits are served within 1 s ------------------------------------------------
step "template edit on the host"
tpl=$(grep -rlF -- "$quote" "$WORK/conf/app/templates" 2>/dev/null | head -n1)
if [ -z "$quote" ] || [ -z "$tpl" ]; then
    fail "no template under conf/app/templates contains the served quote '$quote'"
else
    info "template: ${tpl#"$WORK/"}"
    cp -p "$tpl" "$WORK/template.orig"
    marker="e2e edit $$ $(date +%s%N)"
    # (a) an editor-style save: write a new file and rename it over the old one
    awk -v q="$quote" -v m="$marker" '{ if ($0 == q) print m; else print }' "$tpl" > "$tpl.e2e-new"
    chmod --reference="$tpl" "$tpl.e2e-new"
    t_edit=$(now); mv -f "$tpl.e2e-new" "$tpl"
    if wait_for 1 body_has "$marker"; then
        pass "rename-replace edit served after $(elapsed "$t_edit" "$(now)") s (<= 1 s)"
    else
        fail "rename-replace edit not served within 1 s (answer: $(ck "$HTTPS_URL/" | head -n1))"
    fi
    # (b) an in-place write restoring the original
    t_edit=$(now); cat "$WORK/template.orig" > "$tpl"
    if wait_for 1 body_has "$quote" && body_lacks "$marker"; then
        pass "in-place edit served after $(elapsed "$t_edit" "$(now)") s (<= 1 s)"
    else
        fail "in-place edit not served within 1 s (answer: $(ck "$HTTPS_URL/" | head -n1))"
    fi
fi

# ---- 7a. static files: the repository's example, and a file created on the host ------------
step "static files (PROXY_STATIC) served by the proxy from ./static"
static_type=$(ck -o /dev/null -w '%{http_code} %{content_type}' "$HTTPS_URL/static/site.css")
if [ "$static_type" = "200 text/css" ]; then
    pass "GET /static/site.css -> $static_type (the repository's example file)"
else
    fail "GET /static/site.css -> '$static_type' (want 200 text/css)"
fi
static_name="e2e-$$-$(date +%s%N).txt"
static_body="created on the host by e2e $$"
static_served() { [ "$(ck "$HTTPS_URL/static/$static_name")" = "$static_body" ]; }
t_edit=$(now)
printf '%s\n' "$static_body" > "$WORK/static/$static_name"
chmod 0644 "$WORK/static/$static_name"
if wait_for 1 static_served; then
    pass "a file created in ./static is served after $(elapsed "$t_edit" "$(now)") s (no restart)"
else
    fail "a file created in ./static is not served within 1 s ($(ck -o /dev/null -w '%{http_code}' "$HTTPS_URL/static/$static_name"))"
fi
rm -f "$WORK/static/$static_name"
gone=$(ck -o /dev/null -w '%{http_code}' "$HTTPS_URL/static/$static_name")
if [ "$gone" = 404 ]; then pass "removed again: 404"; else fail "removed file answers $gone (want 404)"; fi

# ---- 7a'. the inspector: on the host's loopback only, showing what went through ------------
step "request inspector (PROXY_INSPECT_LISTEN) on 127.0.0.1:$INSPECT_PORT"
published=$(docker port "$(cid proxy)" 4040/tcp 2>/dev/null | tr '\n' ' ')
if [ "$published" = "127.0.0.1:$INSPECT_PORT " ]; then
    pass "port 4040 is published on the host's loopback only ($published)"
else
    fail "port 4040 is published as '$published' (want 127.0.0.1:$INSPECT_PORT only)"
fi
# (grep reads a variable, not a pipe: with pipefail, `curl | grep -q` fails when grep stops early)
inspected() {
    local listed; listed=$(curl -s "http://127.0.0.1:$INSPECT_PORT/api/entries?q=/static/site.css")
    grep -q '"path":"/static/site.css"' <<<"$listed"
}
if wait_for 2 inspected; then
    pass "GET /api/entries lists the request made above (/static/site.css)"
else
    fail "the inspector does not list /static/site.css: $(curl -s "http://127.0.0.1:$INSPECT_PORT/api/entries" | head -c 300)"
fi
metrics=$(curl -s "http://127.0.0.1:$INSPECT_PORT/metrics")
if grep -q '^proxy_requests_total{route="static",code="2xx"} [1-9]' <<<"$metrics"; then
    pass "/metrics counts it (proxy_requests_total{route=\"static\",code=\"2xx\"})"
else
    fail "/metrics does not count the static request: $(grep '^proxy_requests_total' <<<"$metrics" | tr '\n' ';')"
fi

# ---- 7b. the name constraints hold: a leaf signed with ca.key for another name is refused --
step "a certificate signed with conf/tls/ca.key for another name is refused by curl --cacert"
if [ -r "$cakey" ]; then
    ekey="$WORK/evil.key"; ecsr="$WORK/evil.csr"; ecrt="$WORK/evil.crt"
    if openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=evil.example.com \
            -keyout "$ekey" -out "$ecsr" >/dev/null 2>&1 \
        && printf 'subjectAltName=DNS:evil.example.com,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$WORK/evil.ext" \
        && openssl x509 -req -in "$ecsr" -CA "$ca" -CAkey "$cakey" -set_serial "0x$(openssl rand -hex 8)" -days 2 \
            -extfile "$WORK/evil.ext" -out "$ecrt" >/dev/null 2>&1; then
        chmod 0644 "$ecrt"; chmod 0600 "$ekey"
        [ "$(id -u)" = 0 ] && chown "$EXPECT_UID:$EXPECT_GID" "$ekey" "$ecrt"
        [ "$(id -u)" != 0 ] && [ "$(id -u)" != "$EXPECT_UID" ] && chmod 0644 "$ekey"
        evil_fp=$(file_fingerprint "$ecrt")
        cp -p "$key" "$WORK/ca-leaf.key"; cp -p "$crt" "$WORK/ca-leaf.crt"
        mv -f "$ekey" "$key"; mv -f "$ecrt" "$crt"
        if wait_for 10 served_is "$evil_fp"; then
            for host in evil.example.com localhost; do
                out=$(curl -sS --max-time 5 --cacert "$ca" --resolve "$host:$HTTPS_PORT:127.0.0.1" -o /dev/null "https://$host:$HTTPS_PORT/" 2>&1); rc=$?
                if [ "$rc" = 60 ]; then
                    pass "curl --cacert ca.crt https://$host:$HTTPS_PORT/ refuses the ca.key-signed leaf for evil.example.com ($(printf '%s' "$out" | head -n1))"
                else
                    fail "curl --cacert ca.crt https://$host:$HTTPS_PORT/ accepted or failed otherwise (exit $rc): $(printf '%s' "$out" | head -n1)"
                fi
            done
        else
            fail "the test leaf for evil.example.com was never served"
        fi
        # Put the CA's leaf back (hot reload) for the next steps.
        mv -f "$WORK/ca-leaf.key" "$key"; mv -f "$WORK/ca-leaf.crt" "$crt"
        wait_for 10 served_is "$served" || fail "the CA's leaf was not served again after the test"
    else
        fail "openssl could not sign a test leaf with conf/tls/ca.key"
    fi
else
    info "skipped: conf/tls/ca.key (uid $EXPECT_UID, mode 0600) is not readable by uid $(id -u)"
fi

services_checks

# ---- 8. a new keypair after `restart proxy` -------------------------------------------------
step "keypair replacement + restart proxy"
old_fp="$served"
tmpkey="$WORK/new.key"; tmpcrt="$WORK/new.crt"
if new_keypair "$tmpkey" "$tmpcrt"; then
    chmod 0644 "$tmpcrt"; chmod 0600 "$tmpkey"
    [ "$(id -u)" = 0 ] && chown "$EXPECT_UID:$EXPECT_GID" "$tmpkey" "$tmpcrt"
    [ "$(id -u)" != 0 ] && [ "$(id -u)" != "$EXPECT_UID" ] && chmod 0644 "$tmpkey"
    new_fp=$(file_fingerprint "$tmpcrt")
    mv -f "$tmpkey" "$key"; mv -f "$tmpcrt" "$crt"
    compose restart proxy 2>&1 | sed 's/^/     /'
    if wait_for 30 status_is 200 && [ "$(served_fingerprint)" = "$new_fp" ]; then
        pass "after 'restart proxy' the new certificate is served (sha256 $new_fp)"
    else
        fail "after 'restart proxy' served '$(served_fingerprint)', want the new '$new_fp' (old '$old_fp')"
    fi
    wait_for 30 healthy proxy || fail "proxy not healthy again after restart"
else
    fail "openssl could not generate a test keypair"
fi

# ---- 9. app down -> 503 + Retry-After; app recreated -> served again, proxy untouched ------
# A stopped container leaves Docker's DNS: the name gives no address, which is "not there
# yet/any more" (503 with Retry-After), not a broken upstream (502).
step "app stopped -> 503 with Retry-After, recreated -> 200 without restarting the proxy"
PROXY_CID=$(cid proxy)
proxy_started=$(docker inspect -f '{{.State.StartedAt}}' "$PROXY_CID")
compose stop app 2>&1 | sed 's/^/     /'
code=$(ck -o "$WORK/err.html" -D "$WORK/err.head" -w '%{http_code}' -H 'Accept: text/html' "$HTTPS_URL/")
retry=$(tr -d '\r' < "$WORK/err.head" 2>/dev/null | sed -n 's/^[Rr]etry-[Aa]fter: *//p' | head -n1)
if [ "$code" = 503 ] && [ -n "$retry" ] && grep -qi '<html' "$WORK/err.html"; then
    pass "app stopped: GET / -> 503, Retry-After: $retry, the HTML error page"
else
    fail "app stopped: GET / -> $code, Retry-After: '${retry}' (want 503 with Retry-After and the HTML page: $(head -c 120 "$WORK/err.html"))"
fi
old_app="$APP_CID"
compose up -d --force-recreate app 2>&1 | sed 's/^/     /'
APP_CID=$(cid app)
if wait_for 60 status_is 200; then
    pass "app recreated ($(printf '%.12s' "$old_app") -> $(printf '%.12s' "$APP_CID")): 200 again"
else
    fail "app recreated: no 200 within 60 s (status $(ck -o /dev/null -w '%{http_code}' "$HTTPS_URL/"))"
fi
if [ "$(cid proxy)" = "$PROXY_CID" ] && [ "$(docker inspect -f '{{.State.StartedAt}}' "$PROXY_CID")" = "$proxy_started" ] \
    && [ "$(docker inspect -f '{{.RestartCount}}' "$PROXY_CID")" = 0 ]; then
    pass "the proxy was neither recreated nor restarted (started $proxy_started)"
else
    fail "the proxy was recreated or restarted"
fi

# ---- 9b. --scale app=2: the proxy finds the new replica and spreads requests over both ------
step "scale app=2: requests reach both replicas without restarting the proxy"
app_replicas() { compose ps -q app 2>/dev/null; }
replicas_healthy() {
    local ids n=0 id
    ids=$(app_replicas)
    for id in $ids; do
        [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null)" = healthy ] && n=$((n + 1))
    done
    [ "$n" -eq 2 ]
}
if compose up -d --no-recreate --scale app=2 app 2>&1 | sed 's/^/     /' && wait_for 60 replicas_healthy; then
    sleep 2   # the proxy re-resolves `app` at most every second
    since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    sleep 1
    for _ in $(seq 20); do ck -o /dev/null "$HTTPS_URL/"; done
    served=""
    for id in $(app_replicas); do
        served="$served $(printf '%.12s' "$id")=$(docker logs --since "$since" "$id" 2>&1 | grep -c ' request ' || true)"
    done
    if [ "$(printf '%s\n' $served | grep -cv '=0$')" -eq 2 ]; then
        pass "20 requests spread over both app replicas (requests per container:$served)"
    else
        fail "20 requests did not reach both app replicas (requests per container:$served)"
    fi
else
    fail "compose up --scale app=2: two healthy app replicas within 60 s ($(app_replicas | wc -l) running)"
fi
compose up -d --no-recreate --scale app=1 app 2>&1 | sed 's/^/     /'
APP_CID=$(cid app)

# ---- 10. logs -------------------------------------------------------------------------------
step "logs"
ls -la "$WORK/logs" | sed 's/^/     /'
dated=$(find "$WORK/logs" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' | wc -l)
if [ "$dated" -ge 2 ]; then
    pass "LOG_RETENTION: $dated dated log folders (one per proxy start)"
else
    fail "LOG_RETENTION: $dated dated log folder(s) after two proxy starts (want >= 2)"
fi
if [ -L "$WORK/logs/latest" ]; then
    pass "logs/latest -> $(readlink "$WORK/logs/latest")"
else
    fail "no logs/latest symlink"
fi
access=$(grep -rhE '"GET /[^"]* HTTP/[0-9.]+" [0-9]{3} ' "$WORK/logs" 2>/dev/null | wc -l)
if [ "$access" -gt 0 ]; then
    pass "$access access log lines in combined format, e.g.:"
    grep -rhE '"GET /[^"]* HTTP/[0-9.]+" [0-9]{3} ' "$WORK/logs" | tail -n 1 | sed 's/^/     | /'
else
    fail "no access log lines under logs/: $(find "$WORK/logs" -type f | tr '\n' ' ')"
fi

# ---- 11. SIGTERM: both drain and exit 0 (PID 1 in a scratch image, no init) -----------------
step "graceful stop"
t_stop=$(now)
compose stop --timeout 15 2>&1 | sed 's/^/     /'
stop_s=$(elapsed "$t_stop" "$(now)")
for s in app proxy; do
    code=$(docker inspect -f '{{.State.ExitCode}}' "$(cid "$s")" 2>/dev/null)
    if [ "$code" = 0 ]; then
        pass "$s exited 0 on SIGTERM"
    else
        fail "$s exit code '$code' after 'stop' (137 = killed after the grace period)"
    fi
done
info "'stop' took $stop_s s"

step "image sizes"
for s in app proxy; do
    docker image inspect -f '{{.Size}}' "containerize-$s:$TAG" 2>/dev/null \
        | awk -v i="containerize-$s:$TAG" '{ printf "     %-24s %6.2f MB (%d bytes)\n", i, $1 / 1000000, $1 }'
done
# teardown() prints the summary and sets the exit code
