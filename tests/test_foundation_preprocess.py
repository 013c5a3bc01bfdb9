"""Issue 2, item 6 (worked example's last step): `voxsurv preprocess` turns a CT + mask into the
saved tumour slices; SimpleITK volumes enter the transforms exactly as MONAI's loader gives them."""

from __future__ import annotations


import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from voxsurv.data.ingest.volumes import to_metatensor


def _cli(args, capsys):
    """Run `voxsurv ARGS` in this process (a subprocess would re-import torch/MONAI)."""
    from types import SimpleNamespace

    from voxsurv.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


def test_to_metatensor_matches_monai_loader(ibsi):
    path = ibsi / "ct_phantom/nifti/image/phantom.nii.gz"
    ref = Compose([LoadImaged("image", reader="NibabelReader", image_only=True), EnsureChannelFirstd("image")])(
        {"image": str(path)})["image"]
    got = to_metatensor(sitk.ReadImage(str(path)), path)
    assert got.shape == ref.shape == (1, 204, 201, 60)
    assert torch.equal(got.as_tensor(), ref.as_tensor())
    assert torch.allclose(got.affine, ref.affine.double(), atol=1e-5)


def test_cli_preprocess_one_lung_crops_patient(lung_crops, tmp_path, capsys):
    pid = "lung1-002"
    out = tmp_path / "pre"
    run = _cli(["preprocess", "--image", str(lung_crops / f"images/{pid}_ct.nii.gz"),
                          "--mask", str(lung_crops / f"images/{pid}_gtv.nii.gz"), "--patient-id", pid,
                          "--out-dir", str(out)], capsys)
    assert run.returncode == 0, run.stderr
    data = np.load(out / "slices.npz")
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(lung_crops / f"images/{pid}_gtv.nii.gz")))
    # 1 mm slices -> 5 mm: output slice k is original slice 5k; kept when its tumour has >= 10 mm2
    expected = [k for k in range(19) if mask[5 * k].sum() >= 10]
    assert data["slice_index"].tolist() == expected
    assert data["image"].shape == (2, 48, 48, len(expected)) and data["image"].dtype == np.float32
    assert data["channel_names"].tolist() == ["ct", "mask"]
    ct, m = data["image"][0], data["image"][1]
    assert 0.0 <= ct.min() and ct.max() <= 1.0 + 1e-6  # fixed HU window -> [0, 1], not a z-score
    ct_hu = sitk.GetArrayFromImage(sitk.ReadImage(str(lung_crops / f"images/{pid}_ct.nii.gz")))[mask > 0]
    assert abs(ct[m > 0.99].mean() - (np.clip(ct_hu, -95, 155).mean() + 95) / 250) < 0.05  # tumour density kept
    assert data["fov_mm"] == 107.0  # 1.3 x the tumour's 82 mm, whole voxels: the tumour is never cut
    assert f"patient {pid}: {len(expected)} tumour slices, network input (2, 48, 48, {len(expected)})" in run.stdout
    assert "field of view 107 mm, 0 slices cut" in run.stdout


def test_cli_preprocess_empty_mask_names_patient(lung_crops, tmp_path, capsys):
    pid = "lung1-263"
    mask = lung_crops / f"images/{pid}_gtv.nii.gz"
    run = _cli(["preprocess", "--image", str(lung_crops / f"images/{pid}_ct.nii.gz"),
                          "--mask", str(mask), "--patient-id", pid, "--out-dir", str(tmp_path)], capsys)
    assert run.returncode == 1
    assert (f"error: patient {pid}: mask is empty (no voxel > 0) ({mask}). "
            "Fix: re-export the tumour contour or exclude this patient") in run.stderr
