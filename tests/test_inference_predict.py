"""`voxsurv predict` on the IBSI CT phantom (NIfTI and DICOM + RTSTRUCT, ROI GTV) with a tiny packaged
bundle: report.json contents, Grad-CAM NIfTI on the input CT's grid, PNG overlay with contour and
heat map, input hashes, no DICOM UID or patient name in the logs, --checkpoint."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import SimpleITK as sitk

from inference_helpers import make_finetune_output, shared_tiny_bundle
from voxsurv.inference.bundle_info import TIERS, sha256_file

UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?!\d)")


@pytest.fixture(scope="module")
def bundle():
    # a 128 mm field of view holds the whole IBSI tumour, so the crops cover the mask entirely
    return shared_tiny_bundle()


@pytest.fixture(scope="module")
def predictor(bundle):
    from voxsurv.inference.predictor import RiskPredictor

    return RiskPredictor(bundle)


@pytest.fixture(scope="module")
def phantom(ibsi):
    d = ibsi / "ct_phantom" / "nifti"
    return {"patient_id": "ibsi-phantom", "image": str(d / "image" / "phantom.nii.gz"),
            "mask": str(d / "mask" / "mask.nii.gz")}


@pytest.fixture(scope="module")
def nifti_run(predictor, phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("pred_nifti")
    prepared = predictor.prepare(phantom, out)
    report = predictor.infer(prepared, out)
    return prepared, report, out


def test_report_has_risk_tier_survival_slices_version_and_hashes(nifti_run, predictor, phantom):
    _, report, out = nifti_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["risk"] == pytest.approx(report["risk"])
    risk, (c1, c2) = report["risk"], report["tier_cutoffs"]
    assert np.isfinite(risk)
    assert report["tier"] == TIERS[int(risk >= c1) + int(risk >= c2)]
    assert report["tier_cutoffs"] == pytest.approx(predictor.info.tier_cutoffs)
    s = report["survival"]
    assert list(s) == ["s_365", "s_730", "s_1095"]
    assert 1.0 >= s["s_365"] >= s["s_730"] >= s["s_1095"] > 0.0
    b = predictor.info.breslow()  # S(t) = exp(-H0(t) exp(risk)) from the stored baseline
    assert s["s_730"] == pytest.approx(float(np.exp(-b.cumulative_hazard([730])[0] * np.exp(risk))))
    assert report["n_slices"] == len(report["slices"]) >= 5
    assert np.mean([sl["risk"] for sl in report["slices"]]) == pytest.approx(risk)
    from inference_helpers import BUNDLE

    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    sha = predictor.info.weights_sha256
    assert report["model"]["version"] == f"{version}+{sha[:12]}" and report["model"]["bundle_version"] == version
    assert report["calibration_applies"] is True
    assert report["model"]["weights_sha256"] == predictor.info.weights_sha256
    assert report["inputs"]["image"]["sha256"] == sha256_file(phantom["image"])
    assert report["inputs"]["mask"]["sha256"] == sha256_file(phantom["mask"])


def test_gradcam_nifti_has_the_input_ct_geometry_and_sits_on_the_tumour(nifti_run, phantom):
    _, _, out = nifti_run
    cam, ct = sitk.ReadImage(str(out / "gradcam.nii.gz")), sitk.ReadImage(phantom["image"])
    assert cam.GetSize() == ct.GetSize()
    assert np.allclose(cam.GetSpacing(), ct.GetSpacing()) and np.allclose(cam.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    assert np.allclose(cam.GetDirection(), ct.GetDirection())
    c = sitk.GetArrayFromImage(cam)
    m = sitk.GetArrayFromImage(sitk.ReadImage(phantom["mask"])) > 0
    assert 0.99 < c.max() <= 1.0 + 1e-6 and c.min() >= 0.0
    zs = np.nonzero(c.max(axis=(1, 2)) > 0)[0]
    tumour_z = np.nonzero(m.any(axis=(1, 2)))[0]
    assert zs.min() >= tumour_z.min() - 2 and zs.max() <= tumour_z.max() + 2  # only on tumour slices


def test_crops_resampled_back_reproduce_the_input_mask(nifti_run, phantom):
    """Geometry check of the Grad-CAM placement: the mask crops the network saw, put back through
    the same code, land on the input mask (Dice; z is coarsened to 5 mm on the way)."""
    from voxsurv.inference.attention import crops_to_volume, resample_like

    prepared, _, _ = nifti_run
    crops = [s["mask"] for s in prepared.slices]
    ref = sitk.ReadImage(phantom["image"])
    back = sitk.GetArrayFromImage(resample_like(crops_to_volume([c[0] for c in crops], crops), ref)) > 0.5
    m = sitk.GetArrayFromImage(sitk.ReadImage(phantom["mask"])) > 0
    dice = 2 * (back & m).sum() / (back.sum() + m.sum())
    assert dice > 0.85, dice


def assert_overlay_shows_ct_contour_and_heat_map(path):
    from PIL import Image

    from voxsurv.inference.overlay import CONTOUR_RGB

    png = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert png.shape[0] >= 600 and png.shape[1] >= 900
    panels, colour_bar = png[:, : int(png.shape[1] * 0.84)], png[:, int(png.shape[1] * 0.84):]
    contour = np.all(panels == CONTOUR_RGB, axis=-1)
    chroma = panels.max(axis=-1) - panels.min(axis=-1)
    heat = ((chroma > 60) & ~contour).sum()  # heat-map pixels on the CT panels (colour bar excluded)
    grey = (chroma < 8) & (panels.min(axis=-1) > 20) & (panels.max(axis=-1) < 235)
    assert contour.sum() > 500, contour.sum()
    assert heat > 1000, heat
    assert grey.sum() > 20000  # the CT itself
    assert ((colour_bar.max(axis=-1) - colour_bar.min(axis=-1)) > 60).sum() > 5000  # the colour bar


def test_overlay_png_shows_ct_contour_and_heat_map(nifti_run):
    _, report, out = nifti_run
    assert_overlay_shows_ct_contour_and_heat_map(out / "overlay.png")
    assert 1 <= len(report["overlay_input_slices"]) <= 12


def test_dicom_input_with_roi_writes_report_nifti_png_without_uids_or_names(bundle, ibsi, tmp_path, caplog):
    """Acceptance: `voxsurv predict --ct-dir --rtstruct --roi GTV` on the IBSI phantom DICOM, with the
    bundle as committed (weights of the finetune main command) when it is packaged."""
    import pydicom

    from inference_helpers import BUNDLE
    from voxsurv.cli import main

    if (BUNDLE / "models" / "model.pt").exists():
        bundle = BUNDLE

    dicom = ibsi / "ct_phantom" / "dicom"
    rtstruct = next((dicom / "mask").glob("*.dcm"))
    caplog.set_level(logging.INFO)
    rc = main(["predict", "--bundle", str(bundle), "--ct-dir", str(dicom / "image"), "--rtstruct", str(rtstruct),
               "--roi", "GTV", "--out", str(tmp_path / "out"), "--verbose"])
    assert rc == 0
    folder = tmp_path / "out" / "anonymous"  # one folder per patient; DICOM without --patient-id: "anonymous"
    report = json.loads((folder / "report.json").read_text())
    assert report["inputs"]["roi"].upper().startswith("GTV") and report["inputs"]["ct_series"]["files"] == 60
    cam, ct = sitk.ReadImage(str(folder / "gradcam.nii.gz")), sitk.ReadImage(str(folder / "input" / "image.nii.gz"))
    assert cam.GetSize() == ct.GetSize() and np.allclose(cam.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    assert_overlay_shows_ct_contour_and_heat_map(folder / "overlay.png")
    assert report["calibration_applies"] is True and report["tier"] in TIERS
    ds = pydicom.dcmread(rtstruct, stop_before_pixels=True)
    text = caplog.text + (folder / "report.json").read_text() + (tmp_path / "out" / "predictions.csv").read_text()
    assert not UID.search(text), UID.search(text)
    assert str(ds.SeriesInstanceUID) not in text and str(ds.StudyInstanceUID) not in text
    name = str(ds.get("PatientName", "")).strip()
    if len(name) > 2:
        assert name not in text


def test_checkpoint_option_runs_other_weights_and_flags_the_calibration(bundle, nifti_run, tmp_path):
    from voxsurv.inference.predictor import RiskPredictor

    prepared, report, _ = nifti_run
    other = make_finetune_output(tmp_path / "other", seed=1) / "models" / "model_last.pt"
    alt = RiskPredictor(bundle, checkpoint=other).infer(prepared, tmp_path / "out")
    assert alt["calibration_applies"] is False and "not these" in alt["calibration_note"]
    assert alt["model"]["weights_sha256"] == sha256_file(other)
    assert alt["risk"] != pytest.approx(report["risk"])
