#!/usr/bin/env bash
# Device check for issue 3 (voxel-level radiomics maps), one command, < 5 min on one GPU:
#   all 90 torch-engine maps of the IBSI CT phantom tumour (1 x 1 x 5 mm, 73,684 voxels) on CUDA
#   (float64, float32) and on the CPU (1 thread, all threads), each CUDA/float32 map compared with
#   the CPU float64 maps (which tests/test_maps_engine_*.py tie to PyRadiomics), and timings.
#
# The GPU machine has no SimpleITK/PyRadiomics and no ../shared data, so prepare here first:
#   .venv/bin/python scripts/bench_maps.py --export-phantom .device_data/maps/phantom_1x1x5.npz
#   echo /.device_data/ >> .git/info/exclude
# then run with carry [".device_data"]:
#   PYRADIOMICS_SECONDS=<PyRadiomics time from bench_maps.json here> bash scripts/device_check_maps.sh
# PyRadiomics cannot run there, so speedups are against a PyRadiomics time measured elsewhere and
# are reported under "speedup_vs_pyradiomics_elsewhere".
# Writes bench_maps_device.json to $OUT (if set) or the current directory; exit 1 on a mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA=.device_data/maps/phantom_1x1x5.npz
OUT_JSON="${OUT:-.}/bench_maps_device.json"
[ -f "$DATA" ] || { echo "missing $DATA: run scripts/bench_maps.py --export-phantom first" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
EXTRA=()
if [ -n "${PYRADIOMICS_SECONDS:-}" ]; then EXTRA=(--pyradiomics-seconds "$PYRADIOMICS_SECONDS"); fi
timeout 280 "$PY" scripts/bench_maps.py --json "$OUT_JSON" --phantom-npz "$DATA" \
  --no-pyradiomics --repeats 3 "${EXTRA[@]}"
exec "$PY" - "$OUT_JSON" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
agree = report.get("agreement_vs_torch_cpu_float64", {})
ok = not report["errors"] and any(k.startswith("torch_cuda") for k in report["seconds"])
for name, a in agree.items():
    tol = 1e-10 if name.endswith("float64") else 1e-4
    good = a["nan_mismatch"] == 0 and a["max_diff_over_range"] <= tol
    ok &= good
    print(f"{name}: max diff/range {a['max_diff_over_range']:.3g} ({a['worst_map']}), "
          f"NaN mismatches {a['nan_mismatch']} -> {'ok' if good else 'MISMATCH'}")
print("device check", "ok" if ok else "FAILED (see errors / mismatches above)")
sys.exit(0 if ok else 1)
PYEOF
