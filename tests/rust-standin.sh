#!/usr/bin/env bash
# Make a local stand-in for the pinned Rust builder image (`rust:<RUST_VERSION>-slim-<DEBIAN_RELEASE>`,
# the ARG defaults of docker/Dockerfile) when no registry is reachable, from what this machine
# already has: no download at all.
#
#   bash tests/rust-standin.sh [--force]
#
# The image is `docker import`ed from a root filesystem assembled like the real one:
#   - the Debian userland of bookworm-slim plus what rust:*-slim adds (ca-certificates, gcc,
#     libc6-dev): the host's installed files of every Essential/required package and of the
#     dependency closure of those three (dpkg -L), without docs, man pages and locales;
#   - the host's rustup toolchain of that exact Rust version (std for the host triple
#     included, the HTML docs left out) as /usr/local/rustup/toolchains/<version>-<triple>,
#     with rustup's proxies in /usr/local/cargo/bin, and the image's ENV RUSTUP_HOME, CARGO_HOME,
#     PATH and RUST_VERSION.
# An image of that name that already answers `cargo --version` with the right version, has a C
# compiler and glibc's static libraries is kept (a real pulled image passes too): nothing is
# done unless --force is given. About 1 GB; a minute or two.
#
# Needs: root (the files keep their owners and modes), dpkg/apt-cache (Debian), rustup or a
# rustc of the pinned version, gcc and libc6-dev installed on the host.
# Environment: DOCKER (client, default docker), RUST_VERSION, DEBIAN_RELEASE (override the
# Dockerfile's ARG defaults).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DOCKER="${DOCKER:-docker}"
log() { echo "rust-standin: $*" >&2; }
die() { echo "rust-standin: FATAL: $*" >&2; exit 1; }

force=0
case "${1:-}" in
    --force) force=1 ;;
    "") ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (usage: tests/rust-standin.sh [--force])" ;;
esac

dockerfile_arg() { sed -n "s/^ARG $1=//p" "$ROOT/docker/Dockerfile" | head -n1; }
RUST_VERSION="${RUST_VERSION:-$(dockerfile_arg RUST_VERSION)}"
DEBIAN_RELEASE="${DEBIAN_RELEASE:-$(dockerfile_arg DEBIAN_RELEASE)}"
{ [ -n "$RUST_VERSION" ] && [ -n "$DEBIAN_RELEASE" ]; } \
    || die "no ARG RUST_VERSION=/DEBIAN_RELEASE= default in docker/Dockerfile"
IMAGE="rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE}"
TRIPLE="$(uname -m)-unknown-linux-gnu"
TOOLCHAIN="$RUST_VERSION-$TRIPLE"

# ---- an existing image that works is kept ---------------------------------------------------
works() {
    "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 || return 1
    "$DOCKER" run --rm --network none --entrypoint sh "$IMAGE" -c "
        set -e
        rustc --version | grep -q '^rustc $RUST_VERSION '
        cargo --version | grep -q '^cargo $RUST_VERSION '
        test -d \"\$(rustc --print sysroot)/lib/rustlib/$TRIPLE/lib\"
        cc --version >/dev/null
        test -f /usr/lib/$(uname -m)-linux-gnu/libc.a
        test -f /etc/ssl/certs/ca-certificates.crt" >/dev/null 2>&1
}
if [ "$force" = 0 ] && works; then
    log "$IMAGE exists and works (rustc $RUST_VERSION, cc, static glibc): kept"
    exit 0
fi
"$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 && log "$IMAGE exists but does not work (or --force): replacing it"

[ "$(id -u)" = 0 ] || die "run as root: the root filesystem must keep its files' owners and modes"
{ command -v dpkg-query && command -v apt-cache; } >/dev/null 2>&1 \
    || die "needs a Debian host (dpkg-query, apt-cache) to copy the userland from"
# shellcheck disable=SC1091
host_release="$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")"
[ "$host_release" = "$DEBIAN_RELEASE" ] \
    || log "warning: the host is Debian '$host_release', the image is named for '$DEBIAN_RELEASE'"

# ---- the toolchain: the host's rustup toolchain of exactly RUST_VERSION ----------------------
sysroot=""
for tc in "$TOOLCHAIN" "$RUST_VERSION" ""; do
    if [ -n "$tc" ]; then
        command -v rustup >/dev/null 2>&1 || continue
        s="$(RUSTUP_AUTO_INSTALL=0 rustup run "$tc" rustc --print sysroot 2>/dev/null || true)"
    else
        s="$(rustc --print sysroot 2>/dev/null || true)"
    fi
    if [ -n "$s" ] && "$s/bin/rustc" --version 2>/dev/null | grep -q "^rustc $RUST_VERSION "; then
        sysroot="$(readlink -f "$s")"; break
    fi
done
[ -n "$sysroot" ] || die "no Rust $RUST_VERSION toolchain on this host (rustup toolchain list; the Dockerfile pins $RUST_VERSION)"
[ -x "$sysroot/bin/cargo" ] || die "$sysroot has no cargo"
[ -d "$sysroot/lib/rustlib/$TRIPLE/lib" ] || die "$sysroot has no standard library for $TRIPLE"
rustup_bin="$(command -v rustup 2>/dev/null || true)"
[ -n "$rustup_bin" ] && rustup_bin="$(readlink -f "$rustup_bin")"

# ---- the userland: installed Debian packages, as in bookworm-slim + gcc/libc6-dev -------------
# (apt-cache lists every alternative of an `a | b` dependency: only the installed ones are kept)
for p in gcc libc6-dev ca-certificates; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] \
        || die "the host lacks the Debian package $p (apt-get install gcc libc6-dev ca-certificates)"
done
mapfile -t base < <(dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' | awk '$2 == "yes" || $3 == "required" { print $1 }')
# shellcheck disable=SC2016 # dpkg-query's own ${...} format
mapfile -t pkgs < <(apt-cache depends --recurse --installed --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances "${base[@]}" gcc libc6-dev ca-certificates \
        2>/dev/null | grep -v '^[ <]' | sort -u \
    | xargs dpkg-query -W -f='${db:Status-Status} ${Package}\n' 2>/dev/null | awk '$1 == "installed" { print $2 }')
[ "${#pkgs[@]}" -gt 20 ] || die "could not list the packages' dependencies (apt-cache depends)"

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/rust-standin.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
t0=$(date +%s)
log "assembling $IMAGE from ${#pkgs[@]} installed packages and $sysroot"

# Paths through the merged-/usr links (/bin -> usr/bin ...) are rewritten to their target so
# tar never writes through a symlink; the links themselves are stored as links.
canon=()
for d in bin sbin lib lib32 lib64 libx32; do
    [ -L "/$d" ] && canon+=(-e "s|^$d/|$(readlink "/$d" | sed 's|^/||')/|")
done
dpkg-query -L "${pkgs[@]}" 2>/dev/null \
    | grep '^/' \
    | grep -vE '^/usr/share/(doc|doc-base|man|info|locale|lintian|linda)/' \
    | sed -e 's|^/||' -e '/^\.\{0,1\}$/d' \
    | { if [ ${#canon[@]} -gt 0 ]; then sed "${canon[@]}"; else cat; fi; } \
    | sort -u \
    | while IFS= read -r f; do if [ -e "/$f" ] || [ -L "/$f" ]; then printf '%s\n' "$f"; fi; done \
    > "$STAGE/files.list"
mkdir -p "$STAGE/root"
tar -C / --no-recursion --verbatim-files-from -T "$STAGE/files.list" -cf - | tar -C "$STAGE/root" -xpf -
R="$STAGE/root"
for d in bin sbin lib lib32 lib64 libx32; do
    [ -L "/$d" ] && [ ! -e "$R/$d" ] && ln -s "$(readlink "/$d")" "$R/$d"
done
# what package scripts would have generated: users and groups, the CA bundle, the loader cache
install -d -m 0755 "$R/etc" "$R/dev" "$R/proc" "$R/sys" "$R/run" "$R/home"
install -d -m 0700 "$R/root"
install -d -m 1777 "$R/tmp" "$R/var/tmp"
cp /usr/share/base-passwd/passwd.master "$R/etc/passwd"
cp /usr/share/base-passwd/group.master "$R/etc/group"
[ -d /etc/ssl/certs ] && tar -C / -cf - etc/ssl/certs | tar -C "$R" -xpf -
[ -f "$R/etc/ssl/certs/ca-certificates.crt" ] || die "no /etc/ssl/certs/ca-certificates.crt on the host (update-ca-certificates)"
ldconfig -r "$R" 2>/dev/null || log "warning: ldconfig -r failed; the loader's default paths apply"
# update-alternatives links (cc -> gcc, awk -> mawk ...) whose chosen target is in the image.
# A dpkg alternatives file: mode, master link, then (slave name, slave link) pairs, blank line.
mkdir -p "$R/etc/alternatives"
for db in /var/lib/dpkg/alternatives/*; do
    [ -f "$db" ] || continue
    {
        read -r _mode; read -r master; echo "${db##*/} $master"
        while read -r sname && [ -n "$sname" ]; do read -r slink; echo "$sname $slink"; done
    } < "$db" | while read -r name link; do
        alt="/etc/alternatives/$name"
        [ -L "$alt" ] || continue
        target="$(readlink "$alt")"
        [ -e "$R$target" ] || [ -L "$R$target" ] || continue
        cp -P "$alt" "$R$alt"
        link="$(printf '%s\n' "${link#/}" | { if [ ${#canon[@]} -gt 0 ]; then sed "${canon[@]}"; else cat; fi; })"
        mkdir -p "$(dirname "$R/$link")"
        ln -sfn "$alt" "$R/$link"
    done
done

# the toolchain, where the official image has it
tdir="$R/usr/local/rustup/toolchains/$TOOLCHAIN"
mkdir -p "$tdir" "$R/usr/local/cargo/bin"
tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$tdir" -xpf -
printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$TOOLCHAIN" > "$R/usr/local/rustup/settings.toml"
tools=(cargo rustc rustdoc cargo-clippy clippy-driver rustfmt cargo-fmt rust-gdb rust-gdbgui rust-lldb)
if [ -n "$rustup_bin" ] && [ -x "$rustup_bin" ]; then
    cp "$rustup_bin" "$R/usr/local/cargo/bin/rustup"
    for t in "${tools[@]}"; do [ -e "$tdir/bin/$t" ] && ln -s rustup "$R/usr/local/cargo/bin/$t"; done
else   # no rustup on the host: the toolchain's own binaries
    for t in "${tools[@]}"; do
        [ -e "$tdir/bin/$t" ] && ln -s "../../rustup/toolchains/$TOOLCHAIN/bin/$t" "$R/usr/local/cargo/bin/$t"
    done
fi
chmod -R a+rX,go-w "$R/usr/local/rustup" "$R/usr/local/cargo"

# ---- import ---------------------------------------------------------------------------------
log "importing ($(du -sh "$R" | cut -f1) on disk)"
"$DOCKER" image rm -f "$IMAGE" >/dev/null 2>&1 || true
tar -C "$R" --numeric-owner -cf - . | "$DOCKER" import \
    --change "ENV RUSTUP_HOME=/usr/local/rustup" \
    --change "ENV CARGO_HOME=/usr/local/cargo" \
    --change "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV RUST_VERSION=$RUST_VERSION" \
    --change 'CMD ["bash"]' \
    --change "LABEL org.containerize.standin=tests/rust-standin.sh" \
    --message "local stand-in for $IMAGE (tests/rust-standin.sh)" \
    - "$IMAGE" >/dev/null
works || die "the imported $IMAGE does not pass its own check (rustc/cargo $RUST_VERSION, cc, libc.a, CA bundle)"
bytes="$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")"
log "$IMAGE ready: $(awk -v b="$bytes" 'BEGIN { printf "%.2f GB", b / 1e9 }'), $(( $(date +%s) - t0 )) s"
