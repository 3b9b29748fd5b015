#!/usr/bin/env bash
# Creates a virtualenv with Apache RocketMQ's official 5.x gRPC Python SDK for test_interop.py.
#   compat/python-grpc/setup_venv.sh VENV   # rocketmq-python-client 5.1.2 (grpcio, protobuf)
# Everything comes from PyPI, pinned by version and sha256 in requirements.txt. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:?usage: setup_venv.sh VENV}"
python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
"$py" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$here/requirements.txt"
"$py" -c 'import rocketmq, grpc' && echo "venv $venv ready (rocketmq-python-client $("$py" -c 'from importlib.metadata import version; print(version("rocketmq-python-client"))'))"
