# shellcheck shell=bash
# Sourced by tests/e2e.sh: several services by name (issue 23 §4, §5). Needs e2e.sh's ROOT, WORK,
# TAG, HTTPS_PORT, compose() and lib.sh's pass/fail/info/step/now/elapsed/wait_for.
#
#   services_image    the test upstream: crates/testkit's e2e-service, built static on the host,
#                     in a scratch image containerize-e2e-service:$TAG (tests/e2e-service.Dockerfile)
#   services_checks   with the stack up (and conf/tls/ca.crt made): routes api.localhost (plain
#                     HTTP) and app.localhost (HTTPS) answer with certificates curl verifies against
#                     ca.crt; a route added while a WebSocket is open answers and the WebSocket
#                     still echoes; a client container reaches https://api.localhost through the
#                     proxy's network alias and verifies it with the mounted ca.crt
#
# The stack runs with tests/e2e-services.yml as an override: it adds `api`, the proxy's aliases
# and the `client` service (profile, never started by `up`).
E2E_SERVICES_FILE="$ROOT/tests/e2e-services.yml"

services_image() {
    local triple="${HOST_TRIPLE:-$(uname -m)-unknown-linux-gnu}" img="containerize-e2e-service:$TAG" ctx bin
    step "test upstream image $img (e2e-service, static, FROM scratch)"
    if [ "${E2E_SKIP_BUILD:-0}" = 1 ] && docker image inspect "$img" >/dev/null 2>&1; then
        info "E2E_SKIP_BUILD=1: reusing $img"
        return 0
    fi
    bin="$ROOT/target/$triple/release/e2e-service"
    if ! RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$triple" \
            -p testkit --bin e2e-service; then
        fail "cargo build -p testkit --bin e2e-service (static)"
        return 1
    fi
    if ! ldd "$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
        fail "$bin is dynamically linked: it would not run in a scratch image"
        return 1
    fi
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/e2e-service-ctx.XXXXXX")
    cp "$bin" "$ctx/e2e-service"
    if docker build -q -f "$ROOT/tests/e2e-service.Dockerfile" -t "$img" "$ctx" >/dev/null; then
        pass "$img built ($(docker image inspect -f '{{.Size}}' "$img" | awk '{ printf "%.2f MB", $1 / 1000000 }'))"
    else
        fail "docker build -f tests/e2e-service.Dockerfile"
    fi
    rm -rf "$ctx"
    docker image inspect "$img" >/dev/null 2>&1
}

# save_routes TEXT: an editor-style save of the project's conf/proxy/routes (new file, renamed over)
save_routes() {
    local f="$WORK/conf/proxy/routes"
    printf '%s\n' "$1" > "$f.e2e-new" && chmod 0644 "$f.e2e-new" && mv -f "$f.e2e-new" "$f"
}
# by_name NAME PATH [curl args]: GET https://NAME:$HTTPS_PORT/PATH verified with ca.crt only
by_name() {
    local name="$1" path="$2"; shift 2
    curl -sS --max-time 5 --cacert "$WORK/conf/tls/ca.crt" --resolve "$name:$HTTPS_PORT:127.0.0.1" "$@" \
        "https://$name:$HTTPS_PORT$path"
}
answers_as() { [ "$(by_name "$1" "$2" 2>/dev/null | head -n1)" = "$3" ]; }

services_checks() {
    local t0 t body out="" rc ws_out line
    t0=$(now)
    step "several services by name: api (plain HTTP) and app (HTTPS), each on its *.localhost name"
    save_routes "# e2e: two services by name
localhost=https://app:8000
app.localhost=https://app:8000
api.localhost=http://api:3000"
    t=$(now)
    if wait_for 3 answers_as api.localhost / "service api"; then
        pass "routes saved: https://api.localhost:$HTTPS_PORT/ answers from api after $(elapsed "$t" "$(now)") s"
    else
        fail "https://api.localhost:$HTTPS_PORT/ does not answer from api within 3 s: $(by_name api.localhost / 2>&1 | head -n3 | tr '\n' ' ')"
    fi
    body=$(by_name api.localhost /hello 2>&1); rc=$?
    if [ "$rc" = 0 ] && printf '%s\n' "$body" | grep -qx 'GET /hello' \
        && printf '%s\n' "$body" | grep -qix 'x-forwarded-proto: https' \
        && printf '%s\n' "$body" | grep -qix "x-forwarded-host: api.localhost:$HTTPS_PORT"; then
        pass "curl --cacert ca.crt (no -k) verifies api.localhost; api got GET /hello with X-Forwarded-Proto: https and X-Forwarded-Host"
    else
        fail "api.localhost/hello (exit $rc): $(printf '%s' "$body" | head -n8 | tr '\n' ' ')"
    fi
    by_name app.localhost / -o "$WORK/app-by-name" 2>"$WORK/curl.err"; rc=$?
    if [ "$rc" = 0 ] && answer_is_valid "$WORK/app-by-name"; then
        pass "curl --cacert ca.crt verifies app.localhost; the app answers through its https:// route"
    else
        fail "app.localhost (exit $rc): $(cat "$WORK/curl.err") $(head -c 200 "$WORK/app-by-name" 2>/dev/null)"
    fi
    for n in api.localhost app.localhost; do
        if openssl x509 -in "$WORK/conf/tls/names/$n.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:$n"; then
            info "$n: its own certificate, conf/tls/names/$n.crt"
        fi
    done

    step "a route added while a WebSocket through wss://api.localhost/ws stays open"
    trap '' PIPE   # a client that died must fail a check, not kill e2e on the next write
    coproc WS { python3 "$ROOT/tests/ws_client.py" 127.0.0.1 "$HTTPS_PORT" api.localhost /ws "$WORK/conf/tls/ca.crt" 2>&1; }
    local ws_in=${WS[1]} ws_pid=$WS_PID
    exec {ws_out}<&"${WS[0]}"
    ws() { line=""; [ -z "${1:-}" ] || printf '%s\n' "$1" >&"$ws_in"; read -r -t 5 line <&"$ws_out"; }
    if ws && [ "$line" = open ] && ws "before" && [ "$line" = "api: before" ]; then
        pass "WebSocket open through the proxy (verified with ca.crt), api echoes: '$line'"
    else
        fail "WebSocket through wss://api.localhost:$HTTPS_PORT/ws: '$line'"
    fi
    save_routes "# e2e: two services by name, and the API under the site's own name
localhost=https://app:8000
app.localhost=https://app:8000
api.localhost=http://api:3000
localhost/api/=http://api:3000 strip"
    t=$(now)
    if wait_for 2 answers_as localhost /api/added "service api"; then
        body=$(by_name localhost /api/added 2>/dev/null)
        if printf '%s\n' "$body" | grep -qx 'GET /added' && printf '%s\n' "$body" | grep -qix 'x-forwarded-prefix: /api'; then
            pass "added route localhost/api/=http://api:3000 strip answers after $(elapsed "$t" "$(now)") s (api got GET /added, X-Forwarded-Prefix: /api)"
        else
            fail "added route answers, but api got: $(printf '%s' "$body" | head -n6 | tr '\n' ' ')"
        fi
    else
        fail "added route localhost/api/ does not answer from api within 2 s: $(by_name localhost /api/added 2>&1 | head -n2 | tr '\n' ' ')"
    fi
    if ws "after" && [ "$line" = "api: after" ]; then
        pass "the WebSocket opened before the change still echoes after it: '$line'"
    else
        fail "the WebSocket after the routes change: '$line'"
    fi
    exec {ws_in}>&-
    ws && out="$line"
    exec {ws_out}<&-
    wait "$ws_pid" 2>/dev/null
    trap - PIPE
    if [ "$out" = "closed 1000" ]; then pass "WebSocket closed cleanly ($out)"; else fail "WebSocket close: '$out'"; fi

    step "another container reaches https://api.localhost through the proxy's alias, verifying with ca.crt"
    out=$(compose run --rm -T client 2>&1); rc=$?
    if [ "$rc" = 0 ] && printf '%s\n' "$out" | grep -qx 'service api'; then
        pass "compose run client: fetch https://api.localhost/ --cacert /etc/ssl/dev-ca.crt -> $(printf '%s\n' "$out" | grep -m1 -E '^[0-9]{3} '), answered by api"
    else
        fail "compose run client (exit $rc): $(printf '%s' "$out" | tail -n5 | tr '\n' ' ')"
    fi
    info "several services: $(elapsed "$t0" "$(now)") s"
}
