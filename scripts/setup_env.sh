#!/usr/bin/env bash
# Creates .venv and installs voxsurv with the given extras (default: test).
# torch==2.13.0 goes first: it is a CPU build on this kind of machine's disk, and every later
# range in setup.cfg admits it, so nothing pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "voxsurv installed in .venv (extras: ${extras})"
