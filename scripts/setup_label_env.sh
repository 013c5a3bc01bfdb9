#!/usr/bin/env bash
# Creates .venv-label: MONAI Label 0.8.5 + this repository's code, for apps/monailabel and
# tests/test_monailabel_app.py (which runs the real server when VOXSURV_LABEL_PYTHON points at this
# venv's python). A separate venv because Label's dependencies pin numpy<2, pydicom<3 and
# jsonschema<4 (through pydicom-seg), which the project's main venv cannot take; the pins and why
# are in apps/monailabel/requirements.txt.
# Measured here (2 shared cores, warm pip cache): torch ~3.5 min, the rest ~14 min; 3.7 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VOXSURV_LABEL_VENV:-.venv-label}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first: 2.13.0 is the CPU build on this kind of machine's disk; with it installed, nothing
# below can pull a multi-GB CUDA torch (torchvision is pinned to the release built for 2.13).
"$venv/bin/python" -m pip install -q "torch==2.13.0"
"$venv/bin/python" -m pip install -q -r apps/monailabel/requirements.txt
# the project's own code (voxsurv, networks, custom_transforms, ...); its dependencies are above
"$venv/bin/python" -m pip install -q --no-deps -e .
"$venv/bin/python" -c "import monailabel, voxsurv.inference.predictor; print('monailabel', monailabel.__version__)"
echo "MONAI Label installed in $venv: export VOXSURV_LABEL_PYTHON=$PWD/$venv/bin/python"
