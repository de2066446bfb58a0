#!/usr/bin/env bash
# Kubernetes manifests (deploy/k8s/): schema validation, offline, and consistency with the repo.
#
#   bash tests/k8s.sh
#
# 1. installs kubernetes-validate (PyPI; it bundles the JSON schemas of every Kubernetes release)
#    into a virtualenv, target/k8s-venv (kept for the next run; K8S_VENV moves it);
# 2. validates every manifest, and the Secret's example, with --strict (unknown fields are
#    errors) against Kubernetes 1.30 (the oldest the manifests claim: preStop `sleep`) and 1.37,
#    in a network namespace of its own when `unshare -n` works, so the check provably needs no
#    network once installed;
# 3. tests/k8s_check.py: the generated ConfigMaps match conf/, the environment ConfigMaps match
#    docker-compose.yml's anchors, references resolve, probes run `healthcheck`.
# Nothing is applied to a cluster: there is none here (README "Kubernetes" says what is untested).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
VENV="${K8S_VENV:-$ROOT/target/k8s-venv}"
VALIDATOR="kubernetes-validate==1.37.0"
VERSIONS="1.30.0 1.37.0"

T0=$(date +%s)
. "$ROOT/tests/lib.sh"

step "kubernetes-validate in $VENV"
if [ ! -x "$VENV/bin/kubernetes-validate" ] || ! "$VENV/bin/pip" show -q "${VALIDATOR%%=*}" 2>/dev/null \
    || [ "$("$VENV/bin/pip" show "${VALIDATOR%%=*}" 2>/dev/null | sed -n 's/^Version: //p')" != "${VALIDATOR##*=}" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check "$VALIDATOR" 2>&1 | tail -n 5
fi
if [ -x "$VENV/bin/kubernetes-validate" ]; then
    pass "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1 | tail -n1) installed"
else
    fail "pip install $VALIDATOR"
    summary k8s; exit 1
fi

offline=()
if unshare -n true 2>/dev/null; then
    offline=(unshare -n)
    info "validating without a network (unshare -n)"
else
    info "unshare -n is not available: validating with the network present (it is not used)"
fi

step "schemas (--strict) for Kubernetes ${VERSIONS// /, }"
manifests=(deploy/k8s/*.yaml)
for v in $VERSIONS; do
    out=$("${offline[@]}" "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}" 2>&1)
    rc=$?
    out_example=$("${offline[@]}" "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" - <deploy/k8s/secret-tls.yaml.example 2>&1)
    rc_example=$?
    if [ "$rc" = 0 ] && [ "$rc_example" = 0 ]; then
        pass "Kubernetes $v: ${manifests[*]#deploy/k8s/} and secret-tls.yaml.example are valid"
    else
        fail "Kubernetes $v: $out $out_example"
    fi
done

step "consistency with docker-compose.yml and conf/"
if "$VENV/bin/python" tests/k8s_check.py | tee "${TMPDIR:-/tmp}/k8s-check.$$" | sed 's/^/     /'; [ "${PIPESTATUS[0]}" = 0 ]; then
    pass "tests/k8s_check.py"
else
    fail "tests/k8s_check.py: $(grep -c '^FAIL' "${TMPDIR:-/tmp}/k8s-check.$$") problem(s)"
fi
rm -f "${TMPDIR:-/tmp}/k8s-check.$$"

summary k8s
[ "$failed" = 0 ]
