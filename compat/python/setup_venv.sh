#!/usr/bin/env bash
# Creates a virtualenv with one RocketMQ C++-based Python client for test_interop.py.
#   compat/python/setup_venv.sh VENV cpp2   # rocketmq-client-python 2.0.0 + librocketmq 2.1.0
#   compat/python/setup_venv.sh VENV cpp1   # rocketmq 0.4.4 (bundled older librocketmq)
# Everything comes from PyPI, pinned by version and sha256. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:?usage: setup_venv.sh VENV cpp2|cpp1}"
flavour="${2:-cpp2}"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
case "$flavour" in
cpp2)
    "$py" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$here/requirements.txt"
    pkg="$("$py" -c 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("rocketmq").origin))')"
    if [ ! -f "$pkg/librocketmq.so" ]; then
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        "$py" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
            --require-hashes -r "$here/librocketmq.txt" -d "$tmp"
        tar -xzf "$tmp"/rocketmq-python-cvs-2.1.0.3.tar.gz -C "$tmp" \
            rocketmq-python-cvs-2.1.0.3/rocketmq/librocketmq.so
        cp "$tmp"/rocketmq-python-cvs-2.1.0.3/rocketmq/librocketmq.so "$pkg/librocketmq.so"
    fi
    ;;
cpp1)
    "$py" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$here/requirements-cpp1.txt"
    ;;
*)
    echo "unknown flavour '$flavour' (cpp2 or cpp1)" >&2
    exit 2
    ;;
esac
"$py" -c 'import rocketmq.client' && echo "venv $venv ready ($flavour)"
