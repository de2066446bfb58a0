#!/usr/bin/env bash
# Make sure a Docker engine answers and a Compose client exists, or fail loudly.
# Starts the engine if it is installed but down; installs Debian's docker.io (and
# docker-compose) first if it is missing, and iproute2 when `ss` is (the tests check host ports
# with it). Never skips: exit 0 means `docker info` works and `ss` runs.
set -euo pipefail

log() { echo "ensure-docker: $*" >&2; }
die() { echo "ensure-docker: FATAL: $*" >&2; exit 1; }

engine_answers() { command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; }
compose_exists() {
    command -v docker-compose >/dev/null 2>&1 || timeout 20 docker compose version >/dev/null 2>&1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
    else die "need root (or password-less sudo) to run: $*"; fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "no Docker and no apt-get to install it with: install Docker Engine yourself"
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

start_engine() {
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        log "starting docker with systemctl"
        as_root systemctl start docker && return 0
    fi
    if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/docker ]; then
        log "starting docker with service"
        as_root service docker start && return 0
    fi
    command -v dockerd >/dev/null 2>&1 || die "dockerd not found"
    log "starting dockerd in the background (log: /var/log/dockerd-ensure.log)"
    as_root sh -c 'nohup dockerd >>/var/log/dockerd-ensure.log 2>&1 &'
}

if ! engine_answers; then
    log "no Docker engine answers"
    if ! command -v dockerd >/dev/null 2>&1; then
        apt_install docker.io
    fi
    start_engine || log "the start command failed; waiting anyway"
    for _ in $(seq 60); do
        engine_answers && break
        sleep 1
    done
    if ! engine_answers; then
        [ -f /var/log/dockerd-ensure.log ] && tail -n 30 /var/log/dockerd-ensure.log >&2
        die "the Docker engine did not come up within 60 s"
    fi
    log "the Docker engine is up"
fi

if ! compose_exists; then
    log "no Compose client (docker-compose or docker compose)"
    apt_install docker-compose
    compose_exists || die "Compose is still missing after installing docker-compose"
fi

# `ss` finds what listens on the host's ports (e2e: nothing on 8000, test ports free): without
# it those checks would pass on an empty answer
if ! ss -Hltn >/dev/null 2>&1; then
    log "no working ss (package iproute2)"
    apt_install iproute2
    ss -Hltn >/dev/null 2>&1 || die "ss still does not run after installing iproute2"
fi

exit 0
