"""`voxsurv predict`'s model side on the IBSI CT phantom (NIfTI and DICOM + RTSTRUCT, ROI GTV) with a
tiny packaged patient-level bundle: report.json contents, Grad-CAM per slice of the tumour stack
pasted back onto the input CT's grid (geometry checked against the crop boxes independently), PNG
overlay, input hashes, no DICOM UID in the logs, and --checkpoint with other weights: a single
network, an ensemble of another size, an ensemble packaged with its own calibration, the wrong
architecture."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from inference_helpers import BUNDLE, make_tiny_bundle, make_training_output, shared_tiny_bundle, tiny_network
from voxsurv.inference.bundle_info import TIERS, sha256_file

UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?!\d)")


@pytest.fixture(scope="module")
def bundle():
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


def test_report_has_patient_risk_tier_survival_range_fov_version_and_hashes(nifti_run, predictor, phantom):
    prepared, report, out = nifti_run
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["risk"] == pytest.approx(report["risk"])
    risk, (c1, c2) = report["risk"], report["tier_cutoffs"]
    assert risk == pytest.approx(predictor.risk(prepared), abs=1e-6)  # the network's own output, nothing averaged
    assert report["tier"] == TIERS[int(risk >= c1) + int(risk >= c2)]
    assert report["tier_cutoffs"] == pytest.approx(predictor.info.tier_cutoffs)
    lo, hi = predictor.info.training_risk_range
    assert report["training_risk_range"] == pytest.approx([lo, hi])
    assert report["in_training_range"] is bool(lo <= risk <= hi)
    s = report["survival"]
    assert list(s) == ["s_365", "s_730", "s_1095"]
    b = predictor.info.breslow()  # S(t) = exp(-H0(t) exp(risk)) from the stored baseline
    assert s["s_730"] == pytest.approx(float(np.exp(-b.cumulative_hazard([730])[0] * np.exp(risk))))
    # the phantom's GTV is ~100 mm wide: the patient's field of view holds it (no slice cut)
    assert report["n_slices"] == len(report["slices"]) == prepared.image.shape[-1] >= 10
    assert prepared.image.shape[:3] == (4, 32, 32)
    assert report["field_of_view_mm"] > 100 and report["tumour_cut_slices"] == 0
    assert "anchor_offset" not in report  # not anchored
    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    sha = predictor.info.weights_sha256
    assert report["model"]["version"] == f"{version}+{sha[:12]}" and report["model"]["bundle_version"] == version
    assert report["calibration_applies"] is True
    assert report["model"]["weights_sha256"] == predictor.info.weights_sha256
    assert report["inputs"]["image"]["sha256"] == sha256_file(phantom["image"])
    assert report["inputs"]["mask"]["sha256"] == sha256_file(phantom["mask"])


def test_gradcam_nifti_is_on_the_ct_grid_and_only_inside_the_fields_of_view(nifti_run, phantom):
    """Independent geometry check: every voxel the heat map lights up on the CT grid, taken to world
    coordinates and back into the resampled volume with the stack's own affine, lies inside the
    crop box of a stack slice at that z."""
    prepared, _, out = nifti_run
    cam, ct = sitk.ReadImage(str(out / "gradcam.nii.gz")), sitk.ReadImage(phantom["image"])
    assert cam.GetSize() == ct.GetSize()
    assert np.allclose(cam.GetSpacing(), ct.GetSpacing()) and np.allclose(cam.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    assert np.allclose(cam.GetDirection(), ct.GetDirection())
    c = sitk.GetArrayFromImage(cam)  # (z, y, x)
    assert 0.99 < c.max() <= 1.0 + 1e-6 and c.min() >= 0.0
    hot = np.argwhere(c > 0.05)
    assert len(hot) > 500
    stack = prepared.stack
    ras_to_voxel = np.linalg.inv(np.asarray(stack["volume_affine"], dtype=float))
    boxes = {int(k): b for k, b in zip(stack["slice_indices"], stack["crop_boxes"])}
    idx = hot[:: max(1, len(hot) // 2000)]
    for z, y, x in idx:
        lps = np.asarray(ct.TransformIndexToPhysicalPoint((int(x), int(y), int(z))))
        i, j, k = (ras_to_voxel @ np.array([-lps[0], -lps[1], lps[2], 1.0]))[:3]
        near = [kk for kk in boxes if abs(kk - k) < 1.0]  # linear resampling in z reaches the next 5 mm slice
        assert near, (z, y, x, k)
        assert any(boxes[kk][0] - 1 <= i <= boxes[kk][0] + boxes[kk][2] and
                   boxes[kk][1] - 1 <= j <= boxes[kk][1] + boxes[kk][3] for kk in near), (i, j, k)


def test_stack_mask_channel_pasted_back_lands_on_the_input_mask(nifti_run, phantom):
    """The same paste-back code applied to the stack's mask channel (what the network saw as the
    tumour) reproduces the input mask on the CT grid (Dice; z is coarsened to 5 mm on the way)."""
    from voxsurv.inference.attention import resample_like, stack_to_volume

    prepared, _, _ = nifti_run
    mask_channel = prepared.image[-1].permute(2, 0, 1)  # (S, H, W)
    ref = sitk.ReadImage(phantom["image"])
    back = sitk.GetArrayFromImage(resample_like(stack_to_volume(mask_channel, prepared.stack), ref)) > 0.5
    m = sitk.GetArrayFromImage(sitk.ReadImage(phantom["mask"])) > 0
    dice = 2 * (back & m).sum() / (back.sum() + m.sum())
    assert dice > 0.85, dice


def test_slice_gradcam_equals_monai_gradcam_and_sums_over_ensemble_members(nifti_run):
    """One network: MONAI's GradCAM on a wrapper whose batch is the patient's S slices (the risk
    pooled over them) gives the same maps. Ensemble: the maps are the sum of each member's maps
    for the ensemble's mean risk (= each member's own Grad-CAM / n_members)."""
    from monai.visualize import GradCAM

    from voxsurv.inference.attention import risk_and_slice_gradcam, slice_gradcam

    prepared, _, _ = nifti_run
    image = prepared.image
    net = tiny_network(seed=7).eval()

    class PatientOfSlices(torch.nn.Module):
        def __init__(self, network):
            super().__init__()
            self.network = network

        def forward(self, slices):  # (S, C, H, W) -> the patient's (1, 1) risk
            return self.network(slices.permute(1, 2, 3, 0)[None])

    ours = slice_gradcam(net, image)
    assert all(p.grad is None for p in net.parameters())  # no side effect on the network
    wrapper = PatientOfSlices(net).eval()
    theirs = GradCAM(nn_module=wrapper, target_layers="network.stem.conv2", postprocessing=lambda x: x)(
        image.permute(3, 0, 1, 2).clone().requires_grad_(True), class_idx=0)[:, 0]
    assert ours.shape == (image.shape[-1], 32, 32)
    assert float(ours.max()) > 0
    assert torch.allclose(ours, theirs, atol=1e-6 * float(theirs.abs().max()) + 1e-12)

    ensemble = tiny_network(n_members=2, seed=7).eval()
    per_member = [slice_gradcam(m, image) for m in ensemble.members]
    risk, cams = risk_and_slice_gradcam(ensemble, image)
    assert torch.allclose(cams, (per_member[0] + per_member[1]) / 2, atol=1e-6)
    with torch.no_grad():  # the risk of the Grad-CAM pass is the network's plain forward
        assert float(risk) == pytest.approx(float(ensemble(image[None])), abs=1e-6)


def test_gradcam_pass_leaves_frozen_and_trainable_parameters_and_the_mode_as_they_were():
    """Grad-CAM turns parameter gradients off during its pass (speed): every parameter's
    requires_grad (fine-tuning freezes live there), the training mode and .grad come back unchanged,
    and the maps equal each member's own Grad-CAM with its parameters trainable."""
    from voxsurv.inference.attention import risk_and_slice_gradcam

    image = torch.rand(2 + 2, 32, 32, 3, generator=torch.Generator().manual_seed(3))
    ensemble = tiny_network(features=("a", "b"), n_members=2, seed=11)
    ensemble.members[0].freeze()  # stem + first blocks frozen, the rest trainable
    ensemble.train()
    flags = [p.requires_grad for p in ensemble.parameters()]
    assert any(flags) and not all(flags)
    _, cams = risk_and_slice_gradcam(ensemble, image)
    assert [p.requires_grad for p in ensemble.parameters()] == flags
    assert ensemble.training and all(p.grad is None for p in ensemble.parameters())
    assert not ensemble.members[0].stem.conv1.adn.N.training  # frozen BatchNorm stays in eval mode
    own = []
    for m in ensemble.members:
        m.eval().requires_grad_(True)
        own.append(risk_and_slice_gradcam(m, image)[1])
    assert float(cams.max()) > 0
    assert torch.allclose(cams, (own[0] + own[1]) / 2, rtol=0, atol=1e-6 * float(cams.max()))


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
    """`voxsurv predict --ct-dir --rtstruct --roi GTV` on the IBSI phantom DICOM."""
    import pydicom

    from voxsurv.cli import main

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
    """A single network's file and an ensemble of another member count both run through the bundle
    (ensemble risk = mean of its members); the report says the tiers and S(t) do not apply."""
    from voxsurv.inference.predictor import RiskPredictor

    prepared, report, _ = nifti_run
    single = make_training_output(tmp_path / "single", seed=1) / "models" / "model.pt"
    alt = RiskPredictor(bundle, checkpoint=single)
    alt_report = alt.infer(prepared, tmp_path / "out")
    assert alt_report["calibration_applies"] is False and "not these" in alt_report["calibration_note"]
    assert alt_report["model"]["weights_sha256"] == sha256_file(single)
    assert alt_report["risk"] != pytest.approx(report["risk"], abs=1e-7)

    ensemble = tiny_network(n_members=3, seed=11)
    path = tmp_path / "ensemble.pt"
    torch.save(ensemble.state_dict(), path)
    risk = RiskPredictor(bundle, checkpoint=path).risk(prepared)
    x, d = prepared.image[None], prepared.descriptors[None]
    with torch.no_grad():
        members = [float(m.eval()(x, d)) for m in ensemble.members]
    assert risk == pytest.approx(np.mean(members), abs=1e-6)


def test_checkpoint_of_another_architecture_is_refused_by_name(bundle, tmp_path):
    from voxsurv.core.errors import InputError
    from voxsurv.inference.predictor import RiskPredictor

    path = tmp_path / "wide.pt"
    torch.save(tiny_network(embed_dim=48).state_dict(), path)
    with pytest.raises(InputError, match=r"embed_dim 48 \(bundle: 32\)"):
        RiskPredictor(bundle, checkpoint=path)
    text = tmp_path / "text.pt"
    text.write_text("not weights")
    with pytest.raises(InputError, match="weights file is a text file, not PyTorch weights") as err:
        RiskPredictor(bundle, checkpoint=text)
    assert "weights_only" not in str(err.value)


def test_checkpoint_packaged_with_its_own_calibration_uses_it(bundle, phantom, tmp_path):
    """`voxsurv predict --checkpoint PRETRAIN/models/model.pt` where the pre-training bundle packaged
    its ensemble (inference_info.json beside it, same sha256): the report uses that ensemble AND its
    own calibration."""
    from voxsurv.cli import main

    ensemble = tiny_network(n_members=2, seed=21)
    pretrain = make_tiny_bundle(tmp_path / "pretrain", network=ensemble)
    checkpoint = pretrain / "models" / "model.pt"
    out = tmp_path / "out"
    rc = main(["predict", "--bundle", str(bundle), "--checkpoint", str(checkpoint), "--image", phantom["image"],
               "--mask", phantom["mask"], "--patient-id", "ibsi", "--out", str(out)])
    assert rc == 0
    report = json.loads((out / "ibsi" / "report.json").read_text())
    pre_info = json.loads((pretrain / "models" / "inference_info.json").read_text())
    assert report["calibration_applies"] is True
    assert report["model"]["weights_sha256"] == pre_info["weights_sha256"] == sha256_file(checkpoint)
    assert report["tier_cutoffs"] == pytest.approx(pre_info["tier_cutoffs"])
    assert "mean of 2 ensemble members" in report["risk_definition"]
    shutil.rmtree(out)
