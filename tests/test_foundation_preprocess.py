"""Issue 2, item 6 (worked example's last step): `voxsurv preprocess` turns a CT + mask into the
saved tumour slices; SimpleITK volumes enter the transforms exactly as MONAI's loader gives them."""

from __future__ import annotations


import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from voxsurv.ingest.volumes import to_metatensor


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
    # 1 mm slices -> 5 mm: output slice k is original slice 5k
    expected = [k for k in range(19) if mask[5 * k].any()]
    assert data["slice_index"].tolist() == expected
    assert data["image"].shape == (len(expected), 1, 96, 96) and data["image"].dtype == np.float32
    assert data["mask"].shape == data["image"].shape
    inside = data["image"][data["mask"] > 0]
    assert abs(inside.mean()) < 0.05  # z-scored in the tumour (crops may cut nothing: mean ~0)
    assert f"patient {pid}: {len(expected)} tumour slices of shape (1, 96, 96)" in run.stdout


def test_cli_preprocess_empty_mask_names_patient(lung_crops, tmp_path, capsys):
    pid = "lung1-263"
    mask = lung_crops / f"images/{pid}_gtv.nii.gz"
    run = _cli(["preprocess", "--image", str(lung_crops / f"images/{pid}_ct.nii.gz"),
                          "--mask", str(mask), "--patient-id", pid, "--out-dir", str(tmp_path)], capsys)
    assert run.returncode == 1
    assert (f"error: patient {pid}: mask is empty (no voxel > 0) ({mask}). "
            "Fix: re-export the tumour contour or exclude this patient") in run.stderr
