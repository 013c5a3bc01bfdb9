"""Issue 13, speed: the voxsurv program imports MONAI without Ignite, matplotlib and scikit-learn
(prediction never uses them; they were half of MONAI's import), gives the same report as a process
with every package, and a caller of ``voxsurv.cli.main(argv)`` (tests, scripts) keeps its process as
it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from inference_helpers import shared_tiny_bundle, write_synthetic_patient

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
SKIPPED = ["ignite", "matplotlib", "sklearn"]


def test_monai_imported_for_prediction_lacks_only_the_unused_packages_which_import_normally_afterwards():
    code = """
import json, sys
from voxsurv.inference.monai_import import import_monai_for_prediction
skipped = import_monai_for_prediction()
absent = sorted(m for m in ("ignite", "matplotlib", "sklearn") if m in sys.modules)
from monai.bundle import ConfigParser
from monai.transforms import Compose, LoadImaged, ScaleIntensityRanged
from monai.networks.blocks import Convolution
again = import_monai_for_prediction()
import ignite.engine, matplotlib.pyplot, sklearn.metrics
print(json.dumps({"skipped": skipped, "loaded_during_import": absent, "again": again}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"skipped": SKIPPED, "loaded_during_import": [], "again": []}


def test_only_the_program_itself_imports_monai_lean(monkeypatch, tmp_path):
    """main(argv) (tests, scripts) -> owns_process False; main() (console script, python -m voxsurv) -> True."""
    import voxsurv.inference.batch as batch
    from voxsurv.cli import main

    seen = []

    def fake_predict_patients(*args, **kwargs):
        seen.append(kwargs.get("owns_process"))
        raise KeyboardInterrupt  # stop here: the CLI turns it into exit code 130

    monkeypatch.setattr(batch, "predict_patients", fake_predict_patients)
    argv = ["predict", "--image", str(tmp_path / "ct.nii.gz"), "--mask", str(tmp_path / "m.nii.gz"),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 130
    monkeypatch.setattr(sys, "argv", ["voxsurv", *argv])
    assert main() == 130
    assert seen == [False, True]


@pytest.mark.slow
def test_program_report_equals_a_full_monai_process_report(tmp_path):
    """`python -m voxsurv predict` (MONAI without the unused packages) and the same command through
    main(argv) in a process holding every package: same risk, tier, S(t) and Grad-CAM voxels."""
    image, mask = write_synthetic_patient(tmp_path, "syn", seed=3)
    args = ["predict", "--bundle", str(shared_tiny_bundle()), "--image", str(image), "--mask", str(mask)]
    lean = subprocess.run([sys.executable, "-m", "voxsurv", *args, "--out", str(tmp_path / "lean"), "--verbose"],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert lean.returncode == 0, lean.stderr
    assert "MONAI imported without ignite, matplotlib, sklearn" in lean.stderr
    code = ("import sys, monai, ignite, matplotlib, sklearn; from voxsurv.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    full = subprocess.run([sys.executable, "-c", code, *args, "--out", str(tmp_path / "full")], capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert full.returncode == 0, full.stderr
    reports = [json.loads(next((tmp_path / run).glob("*/report.json")).read_text()) for run in ("lean", "full")]
    for key in ("risk", "tier", "survival", "in_training_range", "slices", "n_slices"):
        assert reports[0][key] == reports[1][key], key
    cams = [sitk.GetArrayFromImage(sitk.ReadImage(str(next((tmp_path / run).glob("*/gradcam.nii.gz")))))
            for run in ("lean", "full")]
    assert cams[0].max() > 0 and (cams[0] == cams[1]).all()
