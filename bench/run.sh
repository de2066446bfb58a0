#!/usr/bin/env bash
# Benchmark our proxy against nginx (as the original system had it, and tuned), HAProxy and
# Caddy, with the app reached directly as the ceiling, on loopback only. Writes
# bench/results/latest.{md,svg,json}; the run's duration is in latest.md.
#
#   bench/run.sh            full run (3 rounds x 6 s per contender and scenario)
#   bench/run.sh --quick    smoke run (1 round x 1 s)
#   bench/run.sh --help     all options (passed to bench/bench.py)
#
# Extra options handled here: --no-build (use target/release/{app,proxy} as they are).
# BENCH_BIN_DIR=DIR: use DIR/app and DIR/proxy and build nothing (e.g. the static binaries
# tests/e2e.sh built: target/x86_64-unknown-linux-gnu/release).
# Then bench/idle.py (memory per idle keep-alive TLS connection, proxy vs tuned nginx) writes
# idle.{md,json} beside latest.*, and bench/feature_cost.py (what 50 routes and the inspector
# cost against the same binary without them) writes feature-cost.{md,json}; both get --quick,
# --out, --app-bin, --proxy-bin.
# Installs nginx, wrk, h2load (nghttp2-client), haproxy and caddy with apt-get when missing
# (needs root). Exits non-zero when a tool or binary is missing, the release build fails, a
# contender cannot start, or a contender answers nothing or more than 1 % errors -- never
# because numbers are slow.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

build=1
want_proxy=1
app_bin_given=0
proxy_bin_given=0
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0; continue ;;
        --no-proxy) want_proxy=0 ;;
        --contenders=*) [[ "$a" == *proxy* ]] || want_proxy=0 ;;
        --app-bin|--app-bin=*) app_bin_given=1 ;;
        --proxy-bin|--proxy-bin=*) proxy_bin_given=1 ;;
        -h|--help)
            sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exec python3 "$here/bench.py" --help ;;
    esac
    args+=("$a")
done
if [[ -n "${BENCH_BIN_DIR:-}" ]]; then
    for b in app proxy; do
        [[ -x "$BENCH_BIN_DIR/$b" ]] || { printf '[bench] error: BENCH_BIN_DIR=%s has no executable %s\n' "$BENCH_BIN_DIR" "$b" >&2; exit 2; }
    done
    ((app_bin_given)) || { args+=(--app-bin "$BENCH_BIN_DIR/app"); app_bin_given=1; }
    ((proxy_bin_given)) || { args+=(--proxy-bin "$BENCH_BIN_DIR/proxy"); proxy_bin_given=1; }
fi
# `--contenders LIST` (space-separated form)
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ "${args[$i]}" == --contenders ]] && (( i + 1 < ${#args[@]} )) && [[ "${args[$((i + 1))]}" != *proxy* ]]; then
        want_proxy=0
    fi
done

say() { printf '[bench] %s\n' "$*"; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 2; }

command -v python3 >/dev/null || die "python3 is required"
command -v openssl >/dev/null || die "openssl is required"

# --- tools: Debian's packages, installed if missing
missing=()
command -v nginx  >/dev/null || missing+=(nginx)
command -v wrk    >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v caddy  >/dev/null || missing+=(caddy)
if ((${#missing[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; install them (apt-get install -y ${missing[*]}) or run as root"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
    # the packages' own services are not what we measure; never leave them running
    if command -v service >/dev/null; then
        for svc in nginx haproxy caddy; do service "$svc" stop >/dev/null 2>&1 || true; done
    fi
fi
for t in nginx wrk h2load haproxy caddy; do command -v "$t" >/dev/null || die "$t still not found after installing"; done

# --- open files: 1,000 client connections + upstream connections per contender
want_nofile=65536
hard=$(ulimit -Hn)
if [[ "$hard" != unlimited ]] && (( hard < want_nofile )); then
    ulimit -Hn "$want_nofile" 2>/dev/null || want_nofile=$hard
fi
ulimit -n "$want_nofile" 2>/dev/null || true
(( $(ulimit -n) >= 4096 )) || die "open-file limit $(ulimit -n) is too low for 1,000 connections (ulimit -n 65536)"

# --- binaries: release build (fat LTO: a few minutes the first time)
if ((build)); then
    command -v cargo >/dev/null || die "cargo not found (or pass --no-build with built binaries)"
    pkgs=()
    ((app_bin_given)) || pkgs+=(-p app)
    if ((want_proxy && !proxy_bin_given)); then pkgs+=(-p proxy); fi
    if ((${#pkgs[@]})); then
        say "cargo build --release --locked ${pkgs[*]}"
        # --locked: the binaries measured are built from the committed Cargo.lock, or not at all
        (cd "$root" && cargo build --release --locked "${pkgs[@]}") \
            || die "release build failed (cargo build --release --locked ${pkgs[*]})"
    fi
fi

# --- run; forward Ctrl-C / TERM so bench.py stops everything it started
py_pid=
on_signal() {
    trap - INT TERM HUP
    if [[ -n "$py_pid" ]]; then kill -TERM "$py_pid" 2>/dev/null || true; wait "$py_pid" 2>/dev/null || true; fi
    exit 130
}
trap on_signal INT TERM HUP
cd "$root"
python3 "$here/bench.py" "${args[@]}" &
py_pid=$!
set +e
wait "$py_pid"
rc=$?
set -e
# --- then, with our proxy: bench/idle.py (idle keep-alive TLS connections: proxy vs tuned nginx)
# and bench/feature_cost.py (50 routes against 1, inspector on against off); none after a failure
if ((rc == 0 && want_proxy)); then
    more_args=()
    for ((i = 0; i < ${#args[@]}; i++)); do
        case "${args[$i]}" in
            --quick|--out=*|--app-bin=*|--proxy-bin=*) more_args+=("${args[$i]}") ;;
            --out|--app-bin|--proxy-bin) more_args+=("${args[$i]}" "${args[$((i + 1))]}") ;;
        esac
    done
    for script in idle.py feature_cost.py; do
        ((rc == 0)) || break
        python3 "$here/$script" "${more_args[@]}" &
        py_pid=$!
        set +e
        wait "$py_pid"
        rc=$?
        set -e
    done
fi
trap - INT TERM HUP
exit "$rc"
