"""The MONAI Deploy application (deploy/voxsurv_app) on the IBSI CT phantom DICOM + RTSTRUCT, on CPU:
DICOM Basic Text SR with risk, tier and S(t), report.json, Grad-CAM NIfTI and overlay PNG out.

Needs the optional `deploy` extra (monai-deploy-app-sdk, which pulls holoscan and cupy). It runs in
this interpreter when the SDK imports here, else in the interpreter named by VOXSURV_DEPLOY_PYTHON
(a separate virtual environment with `pip install -e .[deploy]`); otherwise it is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from inference_helpers import REPO, make_tiny_bundle

pytestmark = pytest.mark.deploy
UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?!\d)")


def _deploy_python() -> str:
    if importlib.util.find_spec("monai") and importlib.util.find_spec("monai.deploy"):
        return sys.executable
    other = os.environ.get("VOXSURV_DEPLOY_PYTHON")
    if other:  # asked for: run, never skip
        assert os.path.exists(other), f"VOXSURV_DEPLOY_PYTHON={other} does not exist (scripts/setup_deploy_env.sh)"
        return other
    pytest.skip("MONAI Deploy App SDK not importable here (optional extra `deploy`: pip install -e .[deploy], "
                "or point VOXSURV_DEPLOY_PYTHON at a Python that has it)")


def test_deploy_app_writes_sr_report_overlay_and_gradcam(ibsi, tmp_path):
    import pydicom

    python = _deploy_python()
    bundle = make_tiny_bundle(tmp_path / "tiny")
    out = tmp_path / "out"
    cmd = [python, str(REPO / "deploy" / "voxsurv_app"), "-i", str(ibsi / "ct_phantom" / "dicom"), "-o", str(out),
           "-m", str(bundle)]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "VOXSURV_ROI": "GTV"}
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=400)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    report = json.loads((out / "report.json").read_text())
    assert (out / "overlay.png").stat().st_size > 20_000 and (out / "gradcam.nii.gz").exists()
    srs = list(out.glob("*.dcm"))
    assert len(srs) == 1
    sr = pydicom.dcmread(srs[0])
    assert sr.Modality == "SR" and sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR

    def texts(items):
        for it in items:
            if "TextValue" in it:
                yield str(it.TextValue)
            if "ContentSequence" in it:
                yield from texts(it.ContentSequence)

    text = "\n".join(texts([sr]))
    assert f"Risk tier: {report['tier']}" in text
    assert f"{report['risk']:.4f}" in text
    assert f"Predicted survival at 1 year: {100 * report['survival']['s_365']:.1f}%" in text
    assert ("outside the training patients' range" in text) is (not report["in_training_range"])
    assert report["n_slices"] >= 10 and report["tumour_cut_slices"] == 0  # the patient-level stack
    ct = pydicom.dcmread(next((ibsi / "ct_phantom" / "dicom" / "image").glob("*.dcm")), stop_before_pixels=True)
    assert sr.StudyInstanceUID == ct.StudyInstanceUID  # the SR joins the CT's study
    assert not UID.search(log), UID.search(log)
