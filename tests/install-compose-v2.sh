#!/usr/bin/env bash
# Installs Docker Compose v2 and Buildx as Docker CLI plugins for the current user, from the
# Debian packages of `trixie` (docker-compose 2.26.1, docker-buildx 0.13.1), on a bookworm host
# whose own Debian packages stay exactly as they are:
#
#   bash tests/install-compose-v2.sh        # then: docker compose version; docker buildx version
#
# 1. trixie, on the same mirror /etc/apt/sources.list.d/ already uses, goes into a SEPARATE apt
#    state under $APT_DIR (sources list, package lists, cache): apt is pointed at it with
#    -o Dir::Etc::sourcelist=... -o Dir::Etc::sourceparts=- -o Dir::State::Lists=... -o
#    Dir::Cache=..., for `apt-get update` and `apt-get download` only. The system's sources,
#    lists and package cache are never read for it nor written; nothing is installed with apt
#    or dpkg (so bookworm's docker-compose 1.29 stays too: `docker-compose` is v1, `docker
#    compose` is v2);
# 2. the two .debs are unpacked with `dpkg-deb -x` into a scratch folder, and
#    usr/libexec/docker/cli-plugins/docker-{compose,buildx} copied into $PLUGIN_DIR;
# 3. `docker compose version` and `docker buildx version` must answer.
# Idempotent: when both plugins already answer with the expected versions nothing is fetched.
#
# Environment: PLUGIN_DIR (${DOCKER_CONFIG:-~/.docker}/cli-plugins), APT_DIR
# (/var/tmp/containerize-apt-trixie), COMPOSE_V2_VERSION (2.26.1), BUILDX_VERSION (0.13.1):
# the versions a present plugin must report to be kept (the download is trixie's candidate).
set -euo pipefail

PLUGIN_DIR="${PLUGIN_DIR:-${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins}"
APT_DIR="${APT_DIR:-/var/tmp/containerize-apt-trixie}"
COMPOSE_V2_VERSION="${COMPOSE_V2_VERSION:-2.26.1}"
BUILDX_VERSION="${BUILDX_VERSION:-0.13.1}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { echo "install-compose-v2: $*"; }
die() { echo "install-compose-v2: ERROR: $*" >&2; exit 1; }

compose_v() { docker compose version --short 2>/dev/null | sed 's/^v//; s/-[0-9]*$//'; }
buildx_v() { docker buildx version 2>/dev/null | awk '{ print $2 }' | sed 's/^v//; s/+.*//'; }

if [ "$(compose_v)" = "$COMPOSE_V2_VERSION" ] && [ "$(buildx_v)" = "$BUILDX_VERSION" ]; then
    say "already installed: docker compose $(compose_v), docker buildx $(buildx_v) (nothing to do)"
    exit 0
fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb (a Debian host)"
[ -r "$KEYRING" ] || die "$KEYRING is missing (package debian-archive-keyring)"
# the mirror of the system's Debian source (deb822 .sources or one-line .list)
mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
[ -n "$mirror" ] || mirror="$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\/debian\)\/*[[:space:]].*/\2/p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)"
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list.d/ or /etc/apt/sources.list"

say "trixie from $mirror, in a separate apt state under $APT_DIR (the system's apt is untouched)"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs"
echo "deb [signed-by=$KEYRING] $mirror trixie main" > "$APT_DIR/sources.list"
apt_trixie() {
    apt-get -q -o Dir::Etc::sourcelist="$APT_DIR/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Sandbox::User="$(id -un)" "$@"
}
apt_trixie update >"$APT_DIR/update.log" 2>&1 || { tail -n 20 "$APT_DIR/update.log" >&2; die "apt-get update of trixie failed"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/compose-v2.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(cd "$APT_DIR/debs" && rm -f ./*.deb && apt_trixie download docker-compose docker-buildx) \
    || die "apt-get download docker-compose docker-buildx (trixie) failed"
mkdir -p "$PLUGIN_DIR"
for pkg in docker-compose docker-buildx; do
    deb="$(ls "$APT_DIR"/debs/"${pkg}"_*.deb 2>/dev/null | head -n1)"
    [ -n "$deb" ] || die "$pkg: no .deb was downloaded"
    say "$(basename "$deb"): unpacked with dpkg-deb -x (not installed)"
    dpkg-deb -x "$deb" "$work/$pkg"
    bin="$work/$pkg/usr/libexec/docker/cli-plugins/$pkg"
    [ -x "$bin" ] || die "$deb has no usr/libexec/docker/cli-plugins/$pkg"
    install -m 0755 "$bin" "$PLUGIN_DIR/$pkg"
    say "installed $PLUGIN_DIR/$pkg"
done

[ -n "$(compose_v)" ] || die "'docker compose version' does not answer after the install"
[ -n "$(buildx_v)" ] || die "'docker buildx version' does not answer after the install"
say "docker compose $(compose_v) (wanted $COMPOSE_V2_VERSION), docker buildx $(buildx_v) (wanted $BUILDX_VERSION)"
if [ "$(compose_v)" != "$COMPOSE_V2_VERSION" ] || [ "$(buildx_v)" != "$BUILDX_VERSION" ]; then
    say "note: trixie now ships other versions than the ones this repository was tested with"
fi
