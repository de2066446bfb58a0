# Shell helpers shared by the Docker end-to-end tests (tests/e2e.sh, tests/swarm.sh): results,
# the Compose client (v2 or v1), bounded polling, curl and TLS probes, the answer check, and the
# settings each file sets.
# Source it after setting HTTP_PORT, HTTPS_PORT and HTTPS_URL (what the probes use):
#   . "$ROOT/tests/lib.sh"
# shellcheck shell=bash

passed=0
failed=0
failures=()

c_red=""; c_green=""; c_off=""
if [ -t 1 ]; then c_red=$'\e[31m'; c_green=$'\e[32m'; c_off=$'\e[0m'; fi
pass() { passed=$((passed + 1)); echo "${c_green}PASS${c_off} $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "${c_red}FAIL${c_off} $*"; }
info() { echo "     $*"; }
step() { echo; echo "==> $*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
# The closing line: "NAME: N passed, N failed (S s)" and one line per failure.
summary() {
    echo
    echo "$1: $passed passed, $failed failed ($(( $(date +%s) - T0 )) s)"
    local f
    for f in "${failures[@]}"; do echo "  failed: $f"; done
}

# pick_compose: sets COMPOSE to Compose v2 (`docker compose`) when the plugin answers, else to
# v1.29 (`docker-compose`); CT_COMPOSE ("docker compose" or "docker-compose") forces one.
# Returns 1 when neither is there. docker-compose.yml is written for both (tests/e2e.sh checks).
pick_compose() {
    case "${CT_COMPOSE:-}" in
        "docker compose") COMPOSE=(docker compose) ;;
        docker-compose) COMPOSE=(docker-compose) ;;
        "") if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
            elif command -v docker-compose >/dev/null 2>&1; then COMPOSE=(docker-compose)
            else return 1; fi ;;
        *) echo "CT_COMPOSE='$CT_COMPOSE': use 'docker compose' or 'docker-compose'" >&2; return 1 ;;
    esac
    "${COMPOSE[@]}" version >/dev/null 2>&1
}

# curl that never hangs. -k: some steps serve a pair the development CA did not sign (a test's own);
# the CA's leaf is checked with `--cacert conf/tls/ca.crt` instead.
ck() { curl -sk --max-time 5 "$@"; }
# wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds.
wait_for() {
    local limit="$1"; shift
    local deadline; deadline=$(awk -v n="$(now)" -v l="$limit" 'BEGIN { printf "%.3f", n + l }')
    while :; do
        "$@" && return 0
        awk -v n="$(now)" -v d="$deadline" 'BEGIN { exit !(n > d) }' && return 1
        sleep 0.1
    done
}

# SHA-256 fingerprint of the certificate served on 127.0.0.1:$HTTPS_PORT, and of a PEM file.
served_fingerprint() {
    openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost </dev/null 2>/dev/null \
        | openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//'
}
file_fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//'; }
# A throwaway self-signed keypair for localhost: new_keypair KEY CRT
new_keypair() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
        -keyout "$1" -out "$2" >/dev/null 2>&1
}

# answer_is_valid FILE: the app's answer as the proxy forwards it: a quote first, then
# X-Forwarded-For and X-Real-IP (IPv4 addresses) and X-Forwarded-Proto: https.
answer_is_valid() {
    local ipv4='([0-9]{1,3}\.){3}[0-9]{1,3}' quote
    quote=$(head -n1 "$1" 2>/dev/null)
    [ -n "$quote" ] && ! printf '%s' "$quote" | grep -q '^X-' \
        && grep -Eq "^X-Forwarded-For: $ipv4\$" "$1" \
        && grep -Eq "^X-Real-IP: $ipv4\$" "$1" \
        && grep -Eq '^X-Forwarded-Proto: https$' "$1"
}

# check_answer FILE: GET $HTTPS_URL/ (body kept in FILE) is 200 with a valid answer.
check_answer() {
    step "HTTPS answer"
    local code
    code=$(ck -o "$1" -w '%{http_code}' "$HTTPS_URL/")
    sed 's/^/     | /' "$1" 2>/dev/null
    if [ "$code" = 200 ] && answer_is_valid "$1"; then
        pass "GET $HTTPS_URL/ -> 200, a quote and X-Forwarded-For/X-Real-IP (IPv4), X-Forwarded-Proto: https"
    else
        fail "GET $HTTPS_URL/ -> $code with an unexpected body"
    fi
}
# check_redirect: plain HTTP on $HTTP_PORT answers 301 to the same path on $HTTPS_PORT.
check_redirect() {
    step "HTTP -> HTTPS"
    local url="http://localhost:$HTTP_PORT/some/path?x=1" want="301 https://localhost:$HTTPS_PORT/some/path?x=1" got
    got=$(ck -o /dev/null -w '%{http_code} %{redirect_url}' "$url")
    if [ "$got" = "$want" ]; then pass "GET $url -> $got"; else fail "GET $url -> '$got' (want $want)"; fi
}

# config_env: reads a resolved Compose file (`docker-compose config`, `docker stack config`) on
# stdin, prints one "SERVICE NAME=VALUE" line per environment variable (quotes around the value
# removed, so both tools' spellings compare equal).
config_env() {
    awk '
    /^services:/ { s = 1; next }  /^[^ ]/ { s = 0 }
    s && /^  [a-z]/ { svc = $1; sub(":", "", svc); env = 0; next }
    s && /^    environment:/ { env = 1; next }  s && /^    [a-z]/ { env = 0 }
    s && env && /^      [A-Z]/ {
        line = $0; sub(/^ +/, "", line)
        k = line; sub(/:.*/, "", k)
        v = line; sub(/^[^:]*: ?/, "", v)
        if (v ~ /^".*"$/ || v ~ /^\047.*\047$/) v = substr(v, 2, length(v) - 2)
        print svc, k "=" v
    }'
}

# check_settings_listed TAG CONFIG_ENV WHERE: every variable that `containerize-<svc>:TAG --help`
# documents is set in that service's environment (CONFIG_ENV: config_env's output).
check_settings_listed() {
    local tag="$1" env="$2" where="$3" s documented missing v
    for s in app proxy; do
        documented=$(docker run --rm "containerize-$s:$tag" --help 2>/dev/null \
            | grep -oE '^[[:space:]]+((APP|PROXY)_[A-Z0-9_]+|LOG_RETENTION)[[:space:]]' | tr -d ' ')
        missing=""
        for v in $documented; do
            printf '%s\n' "$env" | grep -q "^$s $v=" || missing="$missing $v"
        done
        if [ -z "$documented" ]; then
            fail "$s --help lists no settings"
        elif [ -z "$missing" ]; then
            pass "all $(printf '%s\n' "$documented" | wc -l) settings of '$s --help' are set in $where"
        else
            fail "settings of '$s --help' missing from $where:$missing"
        fi
    done
}
