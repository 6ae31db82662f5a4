#!/usr/bin/env bash
# Installs what lbctl's demo and tests need on a fresh Debian/Ubuntu machine, idempotently:
# the load balancers and sshd from Debian's packages (services not started), and a
# virtualenv in .venv with lbctl and its test tools. Sourced by scripts/demo and scripts/test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have haproxy || missing+=(haproxy)
have nginx || missing+=(nginx)
have caddy || missing+=(caddy)
have sshd || missing+=(openssh-server)
have socat || missing+=(socat)
have git || missing+=(git)
# `lbctl watch` feeds Prometheus and Alertmanager: its tests run the real ones (and promtool).
have promtool || missing+=(prometheus)
have prometheus-alertmanager || missing+=(prometheus-alertmanager)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]} from Debian's packages" >&2
    # Packages must not start services on this machine: tests start their own on loopback.
    policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$policy_added" -eq 1 ] && as_root rm -f /usr/sbin/policy-rc.d
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "bootstrap: lbctl needs Python 3.11 or newer (found $(python3 --version))" >&2
    exit 1
}
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.lbctl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing lbctl and its test tools into .venv (log: .venv/pip-install.log)" >&2
    # pip and the build backend can print pages (warnings about the machine's own pip settings,
    # the build's notices): keep them in a log, and show its end only when the install fails.
    log=.venv/pip-install.log
    if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip \
        && .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'; } >"$log" 2>&1; then
        echo "bootstrap: pip failed; the end of $log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
    touch "$stamp"
    echo "bootstrap: done" >&2
fi
# Bytecode for lbctl itself (pip compiled the dependencies): with PYTHONDONTWRITEBYTECODE set,
# an editable install would otherwise recompile every module on every command.
.venv/bin/python -m compileall -q lbctl >/dev/null
