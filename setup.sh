#!/usr/bin/env bash
# Set up nas on a Debian machine: the Fashion-MNIST package (the default data set), a CPU build
# of PyTorch where no torch is installed yet, then this package with its test extras.
# Installs into the active Python environment (activate a venv first to keep it apart).
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    echo "setup: installing Debian package dataset-fashion-mnist" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

PY=${PYTHON:-python3}
# An unpinned torch would pull a CUDA build of several GB: pin the CPU build when none is installed.
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 (CPU build)" >&2
    "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[dev]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
echo "setup: done ($("$PY" -c 'import torch, nas; print("nas", nas.__version__, "torch", torch.__version__)'))" >&2
