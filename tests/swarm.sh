#!/usr/bin/env bash
# Docker Swarm end-to-end test: docker-stack.yml on a single-node swarm, with the real images.
#
#   bash tests/swarm.sh
#
# 1. the files: docker-stack.yml parses for `docker stack`, its two anchors list the same settings
#    with the same values as docker-compose.yml's (but for the keypair and the upstream), and set
#    every variable the binaries' --help documents;
# 2. a swarm: `docker swarm init --advertise-addr 127.0.0.1` when the engine is in none (and
#    `docker swarm leave --force` at the end only then: the engine is left as it was found);
# 3. the images, offline (docker/build.sh all --prebuilt --tag swarm), and a throwaway keypair;
# 4. `docker stack deploy --resolve-image never` of an unchanged copy of docker-stack.yml in a
#    work dir (copies of conf/app/templates and conf/proxy, an empty logs, the keypair in
#    conf/tls) on ports 29480/29843 under the stack name ctswarm<pid>; what clients see before the
#    app resolves is recorded;
# 5. checks: the answer, the 301, the served certificate is the secret's (mounted 0400 for uid
#    1000), spread over 3 replicas (each app task's own log), a rolling update of the app
#    (`docker service update --force`) under a steady load of new TLS connections with 0 failed
#    requests, and a keypair rotation through a new secret name;
# 6. always: `docker stack rm`, wait until its containers and networks are gone, remove the
#    secrets, the images it built and the work dir; service logs are printed when a check failed.
#
# The VIP and the ingress routing mesh need IPVS, which this VM's kernel lacks: the stack uses
# endpoint_mode dnsrr and host-mode ports, so neither is used (README "Docker Swarm").
#
# Environment: SWARM_HTTP_PORT (29480), SWARM_HTTPS_PORT (29843), SWARM_TAG (image tag, swarm),
# SWARM_SKIP_BUILD=1 (reuse containerize-{app,proxy}:$SWARM_TAG; they are then kept), SWARM_KEEP=1
# (keep the work dir).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1

HTTP_PORT="${SWARM_HTTP_PORT:-29480}"
HTTPS_PORT="${SWARM_HTTPS_PORT:-29843}"
TAG="${SWARM_TAG:-swarm}"
STACK="ctswarm$$"
EXPECT_UID=1000
EXPECT_GID=1000
HTTPS_URL="https://localhost:$HTTPS_PORT"
NODE_LABEL="containerize.swarm-test"   # on the node of a swarm this test initialised
LOAD_RATE=20                           # requests per second of the steady load

T0=$(date +%s)
. "$ROOT/tests/lib.sh"

# ---- engine ---------------------------------------------------------------------------------
step "Docker engine"
if ! bash "$ROOT/tests/ensure-docker.sh"; then
    echo "swarm: FATAL: no Docker engine (see above); not skipping" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
info "engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), client $(docker version --format '{{.Client.Version}}' 2>/dev/null)"

svc() { echo "${STACK}_$1"; }
# running containers of a service of this stack
task_containers() { docker ps -q --filter "label=com.docker.swarm.service.name=$(svc "$1")" 2>/dev/null; }
healthy_count() {
    local n=0 id
    for id in $(task_containers "$1"); do
        [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && n=$((n + 1))
    done
    echo "$n"
}
# converged SERVICE N: N running tasks, all healthy, and nothing else running
converged() {
    [ "$(healthy_count "$1")" -eq "$2" ] && [ "$(task_containers "$1" | wc -l)" -eq "$2" ] \
        && [ "$(docker service ls --filter "name=$(svc "$1")" --format '{{.Replicas}}' 2>/dev/null | head -n1 | cut -d' ' -f1)" = "$2/$2" ]
}
status_is() { [ "$(ck -o /dev/null -w '%{http_code}' "$HTTPS_URL/")" = "$1" ]; }
stack_networks() { docker network ls -q --filter "label=com.docker.stack.namespace=$1" 2>/dev/null; }
stack_containers() { docker ps -aq --filter "label=com.docker.stack.namespace=$1" 2>/dev/null; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2" 2>/dev/null; }
# stack_rm NAME: remove a stack and wait (<= 60 s) until its containers and networks are gone
stack_rm() {
    docker stack rm "$1" 2>&1 | sed 's/^/     /'
    wait_for 60 sh -c "[ -z \"\$(docker ps -aq --filter label=com.docker.stack.namespace=$1)\" ] && [ -z \"\$(docker network ls -q --filter label=com.docker.stack.namespace=$1)\" ]"
}

# ---- teardown (trap) ------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/containerize-swarm.XXXXXX")"
initialised=0
gwbridge_before=x
deployed=0
built=0
LOAD_PID=""
teardown() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
    if [ "$deployed" = 1 ]; then
        if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
            for s in app proxy; do
                step "docker service ps / logs $(svc "$s") (a check failed)"
                docker service ps --no-trunc --format '{{.Name}} {{.Image}} {{.DesiredState}} {{.CurrentState}} {{.Error}}' "$(svc "$s")" 2>&1 | sed 's/^/     /'
                docker service logs --timestamps --no-trunc "$(svc "$s")" 2>&1 | tail -n 150
            done
        fi
        step "teardown: docker stack rm $STACK"
        if stack_rm "$STACK"; then
            info "containers and networks of $STACK are gone"
        else
            fail "containers or networks of $STACK still there 60 s after 'stack rm': $(stack_containers "$STACK" | tr '\n' ' ') $(stack_networks "$STACK" | tr '\n' ' ')"
        fi
    fi
    for sec in $(docker secret ls --format '{{.Name}}' 2>/dev/null | grep -E "^containerize_tls_(cert|key)_${STACK}[a-z]?\$"); do
        docker secret rm "$sec" >/dev/null 2>&1 || fail "could not remove secret $sec"
    done
    if [ "$built" = 1 ]; then
        docker image rm "containerize-app:$TAG" "containerize-proxy:$TAG" >/dev/null 2>&1 \
            && info "removed images containerize-{app,proxy}:$TAG"
    fi
    if [ "$initialised" = 1 ] || [ -n "$(docker node ls --filter "node.label=$NODE_LABEL" -q 2>/dev/null)" ]; then
        # a swarm this test (or a concurrent run of it) initialised: leave once nothing else runs in it
        others=$(docker service ls -q 2>/dev/null | wc -l)
        if [ "$others" -gt 0 ]; then
            info "the swarm still runs $others other service(s): not leaving it"
        elif docker swarm leave --force >/dev/null 2>&1; then
            info "left the swarm (the engine was in none before)"
            # `swarm init` made docker_gwbridge; `leave` keeps it
            if [ -z "$gwbridge_before" ] && [ "$initialised" = 1 ]; then
                docker network rm docker_gwbridge >/dev/null 2>&1 || info "could not remove docker_gwbridge"
            fi
        else
            fail "docker swarm leave --force"
        fi
    fi
    if [ "${SWARM_KEEP:-0}" = 1 ]; then info "work dir kept: $WORK"; else rm -rf "$WORK" 2>/dev/null; fi
    summary swarm
    if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then exit 1; fi
    exit 0
}
trap teardown EXIT
trap 'echo "swarm: interrupted" >&2; failed=$((failed + 1)); exit 1' INT TERM

# ---- 1. the files ---------------------------------------------------------------------------
step "docker-stack.yml and docker-compose.yml"
# `docker stack config` (client >= 23) is the parser `stack deploy` uses; older clients: Compose's.
stack_config() {
    local parser=(docker stack config -c "$ROOT/docker-stack.yml")
    docker stack config --help >/dev/null 2>&1 \
        || parser=(docker-compose -f "$ROOT/docker-stack.yml" --project-directory "$ROOT" config)
    env -u HTTP_PORT -u HTTPS_PORT -u IMAGE_TAG -u CONTAINER_UID -u CONTAINER_GID -u TLS_SECRET_VERSION \
        "${parser[@]}"
}
pick_compose || { echo "swarm: FATAL: no Compose client" >&2; exit 1; }
compose_config() {
    env -u HTTP_PORT -u HTTPS_PORT -u IMAGE_TAG -u CONTAINER_UID -u CONTAINER_GID -u COMPOSE_FILE \
        "${COMPOSE[@]}" -f "$ROOT/docker-compose.yml" --project-directory "$ROOT" config
}
stack_env=$(stack_config 2>"$WORK/stack-config.err" | config_env)
if [ -n "$stack_env" ]; then
    pass "docker stack config accepts docker-stack.yml ($(printf '%s\n' "$stack_env" | wc -l) variables)"
else
    fail "docker stack config rejects docker-stack.yml: $(cat "$WORK/stack-config.err" 2>/dev/null)"
fi
# `init` is the compose file's one-shot that prepares ./logs and ./conf/tls; a stack has no
# one-shot ordered before a service (the keypair comes from secrets there), and init's
# variables are the proxy anchor's, compared below as `proxy`.
compose_env=$(compose_config 2>/dev/null | config_env | grep -v '^init ')
# The settings that differ on purpose: the keypair comes from secrets, the upstream is tasks.app,
# the inspector is off (README "Inspector").
intended='^proxy (PROXY_TLS_CERT|PROXY_TLS_KEY|PROXY_TLS_GENERATE|PROXY_UPSTREAM|PROXY_INSPECT_LISTEN)='
only_compose=$(comm -23 <(printf '%s\n' "$compose_env" | grep -Ev "$intended" | sort) <(printf '%s\n' "$stack_env" | grep -Ev "$intended" | sort))
only_stack=$(comm -13 <(printf '%s\n' "$compose_env" | grep -Ev "$intended" | sort) <(printf '%s\n' "$stack_env" | grep -Ev "$intended" | sort))
intended_keys=$(printf '%s\n' "$stack_env" | grep -Ec "$intended")
if [ -z "$compose_env" ]; then
    fail "docker-compose config printed no environment for docker-compose.yml"
elif [ -z "$only_compose$only_stack" ] && [ "$intended_keys" = 5 ]; then
    pass "the anchors of docker-stack.yml and docker-compose.yml set the same $(printf '%s\n' "$compose_env" | wc -l) variables to the same values (but the keypair, PROXY_UPSTREAM and PROXY_INSPECT_LISTEN)"
else
    fail "docker-stack.yml's anchors differ from docker-compose.yml's (copy the setting over):$(printf '%s\n' "$only_compose" | sed '/^$/d; s/^/ [docker-compose.yml] /' | tr '\n' ';')$(printf '%s\n' "$only_stack" | sed '/^$/d; s/^/ [docker-stack.yml] /' | tr '\n' ';')"
fi
if printf '%s\n' "$stack_env" | grep -qx 'proxy PROXY_UPSTREAM=tasks.app:8000'; then
    pass "docker-stack.yml: PROXY_UPSTREAM=tasks.app:8000 (every task's address)"
else
    fail "docker-stack.yml: PROXY_UPSTREAM is not tasks.app:8000: $(printf '%s\n' "$stack_env" | grep PROXY_UPSTREAM=)"
fi

# ---- 2. a swarm -----------------------------------------------------------------------------
step "swarm"
swarm_state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)
gwbridge_before=$(docker network ls -q --filter name=^docker_gwbridge$ 2>/dev/null)
if [ "$swarm_state" = inactive ]; then
    if docker swarm init --advertise-addr 127.0.0.1 >/dev/null 2>"$WORK/swarm-init.err"; then
        initialised=1
        docker node update --label-add "$NODE_LABEL=1" self >/dev/null 2>&1
        pass "docker swarm init --advertise-addr 127.0.0.1 (the engine was in no swarm; it leaves at the end)"
    else
        fail "docker swarm init: $(cat "$WORK/swarm-init.err")"
    fi
elif [ "$swarm_state" = active ] && [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ]; then
    pass "the engine is already a swarm manager: using it as is (it stays in its swarm)"
else
    fail "the engine is in swarm state '$swarm_state' but not a manager: cannot deploy a stack"
fi
[ "$failed" -eq 0 ] || exit 1

# Leftovers of an earlier run that was killed (SIGKILL skips the trap): stacks ctswarm<pid> and
# their secrets whose pid is gone.
for s in $(docker stack ls --format '{{.Name}}' 2>/dev/null | grep '^ctswarm[0-9]*$'); do
    if ! kill -0 "${s#ctswarm}" 2>/dev/null; then info "removing leftover stack $s"; stack_rm "$s"; fi
done
for sec in $(docker secret ls --format '{{.Name}}' 2>/dev/null | grep -E '^containerize_tls_(cert|key)_ctswarm[0-9]+[a-z]?$'); do
    p="${sec##*_ctswarm}"; p="${p%[a-z]}"
    kill -0 "$p" 2>/dev/null || docker secret rm "$sec" >/dev/null 2>&1
done

# ---- 3. images and keypair ------------------------------------------------------------------
step "static binaries + images (docker/build.sh all --prebuilt --tag $TAG)"
if [ "${SWARM_SKIP_BUILD:-0}" = 1 ]; then
    info "SWARM_SKIP_BUILD=1: reusing containerize-app:$TAG and containerize-proxy:$TAG"
elif bash "$ROOT/docker/build.sh" all --prebuilt --tag "$TAG" >"$WORK/build.log" 2>&1; then
    built=1
    sed -n '/==> image sizes/,$p' "$WORK/build.log" | sed 's/^/     /'
    pass "images containerize-{app,proxy}:$TAG built with the offline targets"
else
    tail -n 40 "$WORK/build.log"
    fail "docker/build.sh all --prebuilt --tag $TAG"
    exit 1
fi
check_settings_listed "$TAG" "$stack_env" "docker-stack.yml"

# The work dir: an unchanged copy of docker-stack.yml (relative paths resolve next to it).
mkdir -p "$WORK/conf/app" "$WORK/conf/tls" "$WORK/logs"
cp "$ROOT/docker-stack.yml" "$WORK/docker-stack.yml"
cp -R "$ROOT/conf/app/templates" "$WORK/conf/app/templates"
cp -R "$ROOT/conf/proxy" "$WORK/conf/proxy"
cp -R "$ROOT/static" "$WORK/static"   # the static-file roots (bind mounts must exist on the node)
cp -R "$ROOT/media" "$WORK/media"
chmod -R a+rX "$WORK"
if [ "$(id -u)" = 0 ]; then chown "$EXPECT_UID:$EXPECT_GID" "$WORK/logs"; else chmod 0777 "$WORK/logs"; fi
if new_keypair "$WORK/conf/tls/localhost.key" "$WORK/conf/tls/localhost.crt"; then
    secret_fp=$(file_fingerprint "$WORK/conf/tls/localhost.crt")
    pass "a throwaway keypair in the work dir (sha256 $secret_fp)"
else
    fail "openssl could not generate a keypair"; exit 1
fi

# ---- 4. deploy ------------------------------------------------------------------------------
export HTTP_PORT HTTPS_PORT IMAGE_TAG="$TAG" TLS_SECRET_VERSION="$STACK"
unset CONTAINER_UID CONTAINER_GID
deploy() { docker stack deploy --resolve-image never -c "$WORK/docker-stack.yml" "$STACK" 2>&1 | sed 's/^/     /'; return "${PIPESTATUS[0]}"; }

step "docker stack deploy --resolve-image never (stack $STACK, ports $HTTP_PORT/$HTTPS_PORT)"
busy=$(ss -Hltn "( sport = :$HTTP_PORT or sport = :$HTTPS_PORT )" 2>/dev/null)
if [ -n "$busy" ]; then
    fail "host ports $HTTP_PORT/$HTTPS_PORT are already in use (set SWARM_HTTP_PORT/SWARM_HTTPS_PORT): $busy"
    exit 1
fi
# What a client sees on a fresh deploy, from the moment of `stack deploy` to the first answer.
python3 "$ROOT/tests/load.py" --port "$HTTPS_PORT" --rate "$LOAD_RATE" --workers 1 --timeout 5 \
    --max-seconds 120 --until-ok > "$WORK/fresh.json" 2>"$WORK/fresh.err" &
LOAD_PID=$!
deployed=1
t_deploy=$(now)
if ! deploy; then fail "docker stack deploy"; exit 1; fi
wait "$LOAD_PID"; LOAD_PID=""
if [ "$(json_field "$WORK/fresh.json" ok)" = 1 ]; then
    pass "first answer $(json_field "$WORK/fresh.json" first_ok_after) s after 'stack deploy' started"
    info "before it: $(json_field "$WORK/fresh.json" by_outcome) (ConnectionRefusedError: the proxy was not listening yet); Retry-After: $(json_field "$WORK/fresh.json" retry_after)"
    info "seconds after 'stack deploy', [first, last] of each outcome: $(json_field "$WORK/fresh.json" spans)"
else
    fail "no answer within 120 s of 'stack deploy': $(cat "$WORK/fresh.json" "$WORK/fresh.err" 2>/dev/null)"
fi
if wait_for 90 converged app 2 && wait_for 60 converged proxy 1; then
    pass "app 2/2 and proxy 1/1 tasks running and healthy $(elapsed "$t_deploy" "$(now)") s after 'stack deploy'"
else
    fail "not converged within 90 s: app $(healthy_count app) healthy of $(task_containers app | wc -l), proxy $(healthy_count proxy) of $(task_containers proxy | wc -l)"
    exit 1
fi
PROXY_CID=$(task_containers proxy | head -n1)

# ---- 5. checks ------------------------------------------------------------------------------
step "the stack as Swarm runs it"
mode=$(docker service inspect -f '{{.Spec.EndpointSpec.Mode}}' "$(svc app)" 2>/dev/null)
app_ports=$(docker service inspect -f '{{json .Endpoint.Ports}}' "$(svc app)" 2>/dev/null)
proxy_ports=$(docker service inspect -f '{{range .Endpoint.Ports}}{{.PublishMode}}:{{.PublishedPort}}->{{.TargetPort}} {{end}}' "$(svc proxy)" 2>/dev/null)
order=$(docker service inspect -f '{{.Spec.UpdateConfig.Order}}/{{.Spec.UpdateConfig.Parallelism}}/{{.Spec.UpdateConfig.FailureAction}}' "$(svc app)" 2>/dev/null)
if [ "$mode" = dnsrr ] && { [ "$app_ports" = null ] || [ "$app_ports" = '[]' ]; } \
    && [ "$proxy_ports" = "host:$HTTP_PORT->80 host:$HTTPS_PORT->443 " ] && [ "$order" = start-first/1/rollback ]; then
    pass "app: endpoint_mode dnsrr, no published port, updates start-first/1/rollback; proxy: ${proxy_ports% }"
else
    fail "service specs: app mode '$mode' ports '$app_ports' update '$order'; proxy ports '$proxy_ports'"
fi
pid=$(docker inspect -f '{{.State.Pid}}' "$PROXY_CID" 2>/dev/null)
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status" 2>/dev/null)
capeff=$(awk '/^CapEff:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
nnp=$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
ro=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$PROXY_CID" 2>/dev/null)
if [ "$uids" = "$EXPECT_UID $EXPECT_UID $EXPECT_UID $EXPECT_UID" ] && [ "$capeff" = 0000000000000000 ] && [ "$ro" = true ]; then
    pass "proxy task (pid $pid): uid $EXPECT_UID, no effective capabilities, read-only root filesystem"
else
    fail "proxy task (pid $pid): Uid '$uids' CapEff '$capeff' ReadonlyRootfs '$ro'"
fi
info "proxy NoNewPrivs: $nnp (Swarm ignores security_opt; 1 only where the engine runs with no-new-privileges)"
secret_modes=$(stat -c '%n %u:%g %a' "/proc/$pid/root/run/secrets/tls_cert" "/proc/$pid/root/run/secrets/tls_key" 2>/dev/null | sed "s#/proc/$pid/root##" | tr '\n' ' ')
if [ "$(id -u)" != 0 ]; then
    info "not root: the secret files' owner and mode (under /proc/$pid/root) are not checked"
elif [ "$secret_modes" = "/run/secrets/tls_cert $EXPECT_UID:$EXPECT_GID 400 /run/secrets/tls_key $EXPECT_UID:$EXPECT_GID 400 " ]; then
    pass "secrets mounted as ${secret_modes% }"
else
    fail "secret files in the proxy task: '$secret_modes' (want uid/gid $EXPECT_UID:$EXPECT_GID, mode 400)"
fi

check_answer "$WORK/body"
check_redirect

step "TLS certificate from the secrets"
served=$(served_fingerprint)
secrets=$(docker secret ls --format '{{.Name}}' | grep -cE "^containerize_tls_(cert|key)_${STACK}\$")
if [ -n "$served" ] && [ "$served" = "$secret_fp" ] && [ "$secrets" = 2 ]; then
    pass "the served certificate is the secret containerize_tls_cert_$STACK (sha256 $served)"
else
    fail "served certificate '$served', secret's '$secret_fp' ($secrets of 2 secrets found)"
fi

step "scale app=3: requests spread over every replica (each task's own log)"
docker service scale --detach "$(svc app)=3" >/dev/null 2>&1
if wait_for 90 converged app 3; then
    sleep 2   # the proxy re-resolves tasks.app at most every second
    since=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
    sleep 1
    n=60
    python3 "$ROOT/tests/load.py" --port "$HTTPS_PORT" --rate 30 --workers 2 --max-requests "$n" --max-seconds 60 > "$WORK/spread.json"
    sleep 1
    counts=""; total=0; zero=0
    for id in $(task_containers app); do
        c=$(docker logs --since "$since" "$id" 2>&1 | grep -c ' request ')
        counts="$counts $(docker inspect -f '{{index .Config.Labels "com.docker.swarm.task.name"}}' "$id" | sed "s/^$(svc app)\.//; s/\..*//")=$c"
        total=$((total + c)); [ "$c" -eq 0 ] && zero=$((zero + 1))
    done
    if [ "$(json_field "$WORK/spread.json" ok)" = "$n" ] && [ "$zero" = 0 ] && [ "$total" = "$n" ]; then
        pass "$n requests (new connections) spread over 3 replicas: requests per task (slot=count):$counts"
    else
        fail "$n requests over 3 replicas: ok $(json_field "$WORK/spread.json" ok), per task:$counts (total $total)"
    fi
else
    fail "scale app=3: 3 healthy tasks within 90 s ($(healthy_count app) healthy)"
fi

# load_start NAME [ARGS]: a steady load of new TLS connections in the background (tests/load.py,
# loopback, bounded) until load_stop; its JSON summary goes to $WORK/NAME.json.
load_start() {
    local name="$1"; shift
    rm -f "$WORK/stop"
    python3 "$ROOT/tests/load.py" --port "$HTTPS_PORT" --rate "$LOAD_RATE" --workers 2 \
        --max-seconds 300 --stop-file "$WORK/stop" "$@" > "$WORK/$name.json" 2>"$WORK/$name.err" &
    LOAD_PID=$!
    sleep 2
}
load_stop() { sleep 2; touch "$WORK/stop"; wait "$LOAD_PID"; LOAD_PID=""; }
# no_failures NAME MIN WHAT: the load NAME sent at least MIN requests, none failed
no_failures() {
    local total bad
    total=$(json_field "$WORK/$1.json" total); bad=$(json_field "$WORK/$1.json" failed)
    if [ -n "$total" ] && [ "$total" -ge "$2" ] && [ "$bad" = 0 ]; then
        pass "0 failed of $total requests (a new TLS connection each, $LOAD_RATE/s) $3"
    else
        fail "$bad failed of $total requests $3: $(json_field "$WORK/$1.json" first_failures) $(cat "$WORK/$1.err" 2>/dev/null)"
    fi
}
update_done() {
    case "$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$(svc app)" 2>/dev/null)" in
        completed|rollback_completed|rollback_paused|paused) return 0 ;;
        *) return 1 ;;
    esac
}
# rolling_update N: `docker service update --force` of the app's N tasks under a steady load
rolling_update() {
    local n="$1" before after state t replaced
    step "rolling update of $n app task(s) (docker service update --force) under a steady load"
    before=$(task_containers app | sort)
    load_start "rolling$n"
    t=$(now)
    docker service update --detach --force "$(svc app)" >/dev/null 2>&1
    wait_for 300 update_done
    state=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.Message}}{{end}}' "$(svc app)" 2>/dev/null)
    t=$(elapsed "$t" "$(now)")
    wait_for 60 converged app "$n"
    load_stop
    after=$(task_containers app | sort)
    replaced=$(comm -12 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | wc -l)
    info "update: '$state' after $t s; load: $(json_field "$WORK/rolling$n.json" by_outcome) in $(json_field "$WORK/rolling$n.json" seconds) s"
    if [ "${state%% *}" = completed ] && [ "$replaced" = 0 ] && converged app "$n"; then
        pass "every one of the $n old app task(s) replaced, one at a time, start-first, in $t s"
    else
        fail "rolling update of $n: state '$state', $replaced of the old tasks still running, $(healthy_count app) healthy"
    fi
    no_failures "rolling$n" 50 "during the rolling update of $n task(s)"
}

rolling_update 3

step "scale app=1 under a steady load (two tasks removed)"
load_start down
docker service scale --detach "$(svc app)=1" >/dev/null 2>&1
wait_for 60 converged app 1 || fail "scale app=1: not 1 healthy task within 60 s"
load_stop
no_failures down 20 "while two of three tasks were removed"

# One task: start-first is what keeps it serving (stop-first gave 502s and connect timeouts here)
rolling_update 1
after=$(task_containers app | sort | tr '\n' ' ')

step "keypair rotation: a new secret name (TLS_SECRET_VERSION) and stack deploy"
if new_keypair "$WORK/new.key" "$WORK/new.crt"; then
    new_fp=$(file_fingerprint "$WORK/new.crt")
    mv -f "$WORK/new.key" "$WORK/conf/tls/localhost.key"; mv -f "$WORK/new.crt" "$WORK/conf/tls/localhost.crt"
    load_start rotate --timeout 5
    t_rot=$(now)
    TLS_SECRET_VERSION="${STACK}b" deploy
    if wait_for 90 sh -c "[ \"\$(openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null | sed 's/.*=//')\" = '$new_fp' ]"; then
        pass "the new keypair is served $(elapsed "$t_rot" "$(now)") s after 'stack deploy' with TLS_SECRET_VERSION=${STACK}b (sha256 $new_fp)"
    else
        fail "after the rotation the served certificate is '$(served_fingerprint)', want '$new_fp'"
    fi
    wait_for 60 converged proxy 1 || fail "proxy not healthy again after the rotation"
    load_stop
    info "during the proxy's update (one replica, stop-first on a host port: an outage, see README): $(json_field "$WORK/rotate.json" by_outcome)"
    # the deploy also scales the app back to the file's 2 replicas: one new task, none replaced
    wait_for 60 converged app 2 || fail "after the deploy: not the file's 2 healthy app tasks"
    n_app=$(task_containers app | sort | tr '\n' ' ')
    if [ -n "$after" ] && [ "${n_app#*"${after% }"}" != "$n_app" ]; then
        pass "the app task was not replaced by the rotation (scaled back to the file's 2 replicas)"
    else
        fail "the rotation replaced the app task: before '$after', after '$n_app'"
    fi
else
    fail "openssl could not generate the second keypair"
fi

step "proxy logs"
access=$(grep -rhcE '"GET /[^"]* HTTP/[0-9.]+" [0-9]{3} ' "$WORK/logs" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
if [ -L "$WORK/logs/latest" ] && [ "$access" -gt 0 ]; then
    pass "bind-mounted ./logs: $(find "$WORK/logs" -mindepth 1 -maxdepth 1 -type d | wc -l) dated folder(s), latest -> $(readlink "$WORK/logs/latest"), $access access lines"
else
    fail "no dated log folders or access lines in the work dir's logs: $(ls -la "$WORK/logs" | tr '\n' ' ')"
fi
# teardown() removes the stack and prints the summary
