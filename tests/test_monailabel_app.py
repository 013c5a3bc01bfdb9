"""The MONAI Label app (apps/monailabel) served by the real `monailabel start_server` on 127.0.0.1:
/info lists the risk model as a non-segmentation model, /infer on the IBSI CT phantom (tumour label
from the datastore's labels/final) returns the Grad-CAM heat map on the CT's grid and the same risk
as `voxsurv predict`.

MONAI Label 0.8.5 needs numpy<2 / pydicom<3 / jsonschema<4, so it lives in its own venv
(scripts/setup_label_env.sh; .ci/run makes it and sets VOXSURV_LABEL_PYTHON). Without it the test
is skipped with that instruction.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from inference_helpers import REPO, make_tiny_bundle

pytestmark = [pytest.mark.label, pytest.mark.timeout(1800)]  # server start + inference on 2 loaded cores
APP = REPO / "apps" / "monailabel"
START_TIMEOUT_S = 240
INFER_TIMEOUT_S = 400


def _label_python() -> str:
    python = os.environ.get("VOXSURV_LABEL_PYTHON")
    if python and os.path.exists(python):
        return python
    pytest.skip("MONAI Label venv not found: run `bash scripts/setup_label_env.sh` and set "
                "VOXSURV_LABEL_PYTHON=$PWD/.venv-label/bin/python")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _post_infer(url: str, params: dict, timeout: float) -> tuple[dict, bytes]:
    """POST /infer with multipart `params`; returns (result JSON, label image bytes) from the
    multipart answer (output=all)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{json.dumps(params)}\r\n"
            f"--{boundary}--\r\n").encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        ctype, raw = r.headers["Content-Type"], r.read()
    assert ctype.startswith("multipart/form-data"), (ctype, raw[:500])
    sep = ("--" + ctype.split("boundary=")[1]).encode()
    parts = {}
    for part in raw.split(sep)[1:-1]:
        head, _, content = part.partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        parts[name] = content[:-2] if content.endswith(b"\r\n") else content
    return json.loads(parts["params"]), parts["image"]


@pytest.fixture(scope="module")
def label_server(ibsi, tmp_path_factory):
    """`monailabel start_server` on a free loopback port with a studies folder holding the phantom
    CT and its tumour as labels/final; stopped by its PID (process group) afterwards."""
    python = _label_python()
    tmp = tmp_path_factory.mktemp("label")
    # a packaged tiny model in the inference bundle's own configs (the shipped weights change with
    # the study; what is tested here is the serving path, which is the same for any weights)
    bundle = make_tiny_bundle(tmp / "tiny")
    studies = tmp / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    shutil.copyfile(ibsi / "ct_phantom" / "nifti" / "image" / "phantom.nii.gz", studies / "phantom.nii.gz")
    shutil.copyfile(ibsi / "ct_phantom" / "nifti" / "mask" / "mask.nii.gz", studies / "labels" / "final" / "phantom.nii.gz")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MONAI_LABEL_SESSION_PATH": str(tmp / "sessions"), "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false"}
    env.pop("PYTHONPATH", None)  # the Label venv has this checkout installed (editable)
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen(
        [python, "-m", "monailabel.main", "start_server", "--app", str(APP), "--studies", str(studies),
         "--host", "127.0.0.1", "--port", str(port), "--conf", "bundle", str(bundle)],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        info = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                info = _get_json(base + "/info/", timeout=10)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(2)
        if info is None:
            log.flush()
            pytest.fail(f"MONAI Label server did not answer /info within {START_TIMEOUT_S} s "
                        f"(exit {server.poll()}):\n{(tmp / 'server.log').read_text()[-4000:]}")
        yield base, info, tmp, bundle
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        log.close()


def test_info_lists_the_risk_model_as_not_segmentation(label_server):
    _, info, _, _ = label_server
    model = info["models"]["voxsurv_risk"]
    assert model["type"] == "others"
    assert model["dimension"] == 3
    assert model["labels"] == {f"Grad-CAM {20 * (b - 1)}-{20 * b}%": b for b in range(1, 6)}
    assert info["datastore"]["label_tags"] == {"final": 1}  # the tumour label the task reads


def test_infer_returns_heatmap_on_the_ct_grid_and_the_predict_risk(label_server, ibsi, tmp_path):
    import SimpleITK as sitk

    base, _, tmp, bundle = label_server
    result, image = _post_infer(f"{base}/infer/voxsurv_risk?image=phantom&output=all", {}, INFER_TIMEOUT_S)
    heat_file = tmp_path / "heat.nii.gz"
    heat_file.write_bytes(image)

    ct_path = ibsi / "ct_phantom" / "nifti" / "image" / "phantom.nii.gz"
    mask_path = ibsi / "ct_phantom" / "nifti" / "mask" / "mask.nii.gz"
    out = tmp_path / "predict"
    run = subprocess.run([sys.executable, "-m", "voxsurv", "predict", "--bundle", str(bundle), "--image", str(ct_path),
                          "--mask", str(mask_path), "--patient-id", "phantom", "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, timeout=INFER_TIMEOUT_S,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (report_file,) = out.rglob("report.json")  # OUT/report.json, or OUT/<patient>/report.json
    report = json.loads(report_file.read_text())

    assert abs(result["risk"] - report["risk"]) <= 1e-5, (result["risk"], report["risk"])
    assert result["tier"] == report["tier"]
    for t in ("s_365", "s_730", "s_1095"):
        assert abs(result["survival"][t] - report["survival"][t]) <= 1e-5
    assert result["model_version"] == report["model"]["version"]
    assert result["weights_sha256"] == report["model"]["weights_sha256"] == \
        __import__("hashlib").sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()
    assert result["tumour_label"] == "phantom.nii.gz"

    heat, ct = sitk.ReadImage(str(heat_file)), sitk.ReadImage(str(ct_path))
    assert heat.GetSize() == ct.GetSize()
    assert np.allclose(heat.GetSpacing(), ct.GetSpacing(), atol=1e-6)
    assert np.allclose(heat.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    assert np.allclose(heat.GetDirection(), ct.GetDirection(), atol=1e-6)
    # the bands are predict's Grad-CAM, quantised (ties at a band edge may round either way)
    bands = sitk.GetArrayFromImage(heat)
    cam = np.clip(sitk.GetArrayFromImage(sitk.ReadImage(str(report_file.parent / "gradcam.nii.gz"))).astype(np.float64), 0, 1)
    expected = np.ceil(cam * 5)
    edge = np.abs(cam * 5 - np.round(cam * 5)) < 1e-4
    assert np.array_equal(bands[~edge], expected[~edge])
    assert bands.max() == 5 and (bands > 0).sum() > 1000  # the attention covers the tumour region


def test_infer_without_a_tumour_label_names_the_image_and_the_fix(label_server, ibsi):
    base = label_server[0]
    params = {"tumour_label_tag": "no_such_tag"}
    with pytest.raises(urllib.error.HTTPError) as err:
        _post_infer(f"{base}/infer/voxsurv_risk?image=phantom&output=all", params, 120)
    assert err.value.code == 400
    body = err.value.read().decode()
    assert "image phantom: no tumour label" in body and "labels/no_such_tag/" in body, body
    with pytest.raises(urllib.error.HTTPError) as err:
        _post_infer(f"{base}/infer/voxsurv_risk?image=phantom&output=all", {"label": "/nonexistent/gtv.nii.gz"}, 120)
    assert err.value.code == 400 and "tumour label /nonexistent/gtv.nii.gz not found" in err.value.read().decode()
