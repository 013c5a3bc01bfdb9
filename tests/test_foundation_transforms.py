"""Issue 2, item 5 / issue 14: resampling to 1 x 1 x 5 mm on the IBSI CT phantom and real lung_crops
patients (shapes, spacing, binary mask), with the interpolation mode given per key. The rest of the
chain is tested in tests/test_patient_preprocessing.py."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from custom_transforms import ResampleToSpacingd

LOAD = Compose([LoadImaged(("image", "mask"), reader="NibabelReader", image_only=True),
                EnsureChannelFirstd(("image", "mask"))])
LUNG_PATIENTS = ["lung1-002", "lung1-371", "radiogenomics-202"]


def _cases(ibsi, lung_crops):
    cases = [("ibsi-ct-phantom", ibsi / "ct_phantom/nifti/image/phantom.nii.gz",
              ibsi / "ct_phantom/nifti/mask/mask.nii.gz")]
    cases += [(p, lung_crops / f"images/{p}_ct.nii.gz", lung_crops / f"images/{p}_gtv.nii.gz") for p in LUNG_PATIENTS]
    return cases


@pytest.fixture(scope="module")
def resampled(ibsi, lung_crops):
    """patient -> (original sitk mask, sample resampled to 1 x 1 x 5 mm)."""
    out = {}
    for pid, image, mask in _cases(ibsi, lung_crops):
        d = LOAD({"image": str(image), "mask": str(mask), "patient_id": pid})
        out[pid] = (sitk.ReadImage(str(mask)), ResampleToSpacingd(("image", "mask"), mode=("bilinear", "nearest"))(d))
    return out


def _expected_tumour_slices_at_5mm(mask_img: sitk.Image, n_out: int) -> int:
    """Independent count: output slice k sits at z0 + 5k mm; nearest original slice is round(5k / dz),
    clamped to the volume (MONAI's border padding)."""
    arr = sitk.GetArrayFromImage(mask_img)  # (z, y, x)
    dz = mask_img.GetSpacing()[2]
    has = arr.reshape(arr.shape[0], -1).any(axis=1)
    idx = [min(int(np.floor(5.0 * k / dz + 0.5)), len(has) - 1) for k in range(n_out)]
    return int(sum(has[i] for i in idx))


def test_resampling_to_1x1x5_mm(resampled):
    for pid, (mask_img, d) in resampled.items():
        img, m = d["image"], d["mask"]
        assert isinstance(img, MetaTensor) and img.shape == m.shape
        np.testing.assert_allclose(img.pixdim.numpy(), [1.0, 1.0, 5.0], atol=1e-6)
        size, spacing = mask_img.GetSize(), mask_img.GetSpacing()
        # MONAI keeps the first voxel centre and rounds the extent: round((n - 1) * spacing / new + 1)
        expected = tuple(int(np.round((n - 1) * s / t + 1)) for n, s, t in zip(size, spacing, (1, 1, 5)))
        assert tuple(img.shape[1:]) == expected, pid
        assert set(torch.unique(m).tolist()) == {0.0, 1.0}, pid  # nearest keeps the mask binary
        n_tumour_slices = int((m[0].sum(dim=(0, 1)) > 0).sum())
        assert n_tumour_slices == _expected_tumour_slices_at_5mm(mask_img, m.shape[-1]), pid
    # phantom: 204 x 201 x 60 voxels of 0.977 x 0.977 x 3 mm
    assert tuple(resampled["ibsi-ct-phantom"][1]["image"].shape) == (1, 199, 196, 36)
    assert tuple(resampled["lung1-002"][1]["image"].shape) == (1, 92, 92, 19)


def test_resampling_mode_is_explicit_per_key():
    """No interpolation chosen from a key's name (issue 14): keys and modes are the caller's."""
    with pytest.raises(TypeError):
        ResampleToSpacingd(("image", "mask"))  # mode missing
    image = MetaTensor(torch.arange(24.0).reshape(1, 2, 3, 4), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    d = {"image": image, "seg": image.clone()}
    out = ResampleToSpacingd(["image", "seg"], mode=["bilinear", "nearest"], pixdim=(1.0, 1.0, 1.0))(d)
    assert set(torch.unique(out["seg"]).tolist()) <= set(range(24))  # nearest: original values only
    assert len(set(torch.unique(out["image"]).tolist()) - set(range(24))) > 0  # bilinear: new values
