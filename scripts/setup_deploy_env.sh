#!/usr/bin/env bash
# Creates .venv-deploy with the optional `deploy` extra (MONAI Deploy App SDK). It is a separate
# environment because the SDK pulls holoscan-cu13, cupy and tritonclient (~535 MB beyond .venv);
# tests/test_deploy_app.py runs the app with it when VOXSURV_DEPLOY_PYTHON points at its python.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-deploy/bin/python ] || python3 -m venv .venv-deploy
.venv-deploy/bin/python -m pip install -q --upgrade pip
.venv-deploy/bin/python -m pip install -q "torch==2.13.0"
.venv-deploy/bin/python -m pip install -q -e ".[deploy]"
echo "MONAI Deploy extra installed in .venv-deploy: export VOXSURV_DEPLOY_PYTHON=$PWD/.venv-deploy/bin/python"
