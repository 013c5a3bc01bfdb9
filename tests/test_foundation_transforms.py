"""Issue 2, item 5: preprocessing transforms on the IBSI CT phantom and real lung_crops patients:
shapes, spacing after resampling, window bounds, z-score in the chosen region, slice count."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from custom_transforms import HUWindow, HUWindowd, HUWindowZScore, HUWindowZScored, ResampleToSpacingd, TumourSlicesd
from voxsurv.errors import InputError

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
        out[pid] = (sitk.ReadImage(str(mask)), ResampleToSpacingd()(d))
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
    # phantom: 204 x 201 x 60 voxels of 0.977 x 0.977 x 3 mm
    assert tuple(resampled["ibsi-ct-phantom"][1]["image"].shape) == (1, 199, 196, 36)
    assert tuple(resampled["lung1-002"][1]["image"].shape) == (1, 92, 92, 19)


def test_hu_window_bounds(resampled):
    d = HUWindowd("image")(dict(resampled["ibsi-ct-phantom"][1]))
    img = d["image"]
    assert isinstance(img, MetaTensor) and img.dtype == torch.float32
    assert float(img.min()) == -95.0 and float(img.max()) == 155.0  # lung air and bone both present
    np.testing.assert_allclose(img.pixdim.numpy(), [1.0, 1.0, 5.0])
    assert HUWindow(width=100, level=0)(np.array([-500.0, 0.0, 20.0, 900.0])).tolist() == [-50.0, 0.0, 20.0, 50.0]


@pytest.mark.parametrize("region", ["mask", "image"])
def test_window_then_zscore_in_region(resampled, region):
    for pid, (_, d) in resampled.items():
        out = HUWindowZScored("image", region=region)(dict(d))
        z = out["image"].numpy()[0]
        clipped = np.clip(d["image"].numpy()[0], -95, 155)
        sel = d["mask"].numpy()[0] > 0 if region == "mask" else np.ones_like(z, dtype=bool)
        assert abs(z[sel].mean()) < 1e-4, pid
        assert abs(z[sel].std() - 1.0) < 1e-4, pid
        # an affine map of the clipped HU: same statistics recorded in the metadata
        np.testing.assert_allclose(z * out["image"].meta["zscore_std_hu"] + out["image"].meta["zscore_mean_hu"],
                                   clipped, atol=1e-3)
        np.testing.assert_allclose(out["image"].pixdim.numpy(), [1.0, 1.0, 5.0])


def test_zscore_empty_mask_names_patient():
    d = {"image": torch.zeros(1, 4, 4, 2), "mask": torch.zeros(1, 4, 4, 2), "patient_id": "p7"}
    with pytest.raises(InputError) as exc:
        HUWindowZScored("image")(d)
    assert str(exc.value) == ("patient p7: mask is empty: z-score statistics need at least one tumour voxel. "
                              "Fix: exclude this patient or use region='image'")
    with pytest.raises(ValueError, match="region='mask' needs a mask"):
        HUWindowZScore()(torch.zeros(1, 2, 2, 2))


def test_tumour_slices_count_shape_metadata(resampled):
    for pid, (mask_img, d) in resampled.items():
        d = HUWindowZScored("image")(dict(d))
        slices = TumourSlicesd("image")(d)
        n_z = d["mask"].shape[-1]
        assert len(slices) == _expected_tumour_slices_at_5mm(mask_img, n_z), pid
        idx = [s["slice_index"] for s in slices]
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
        for s in slices:
            assert tuple(s["image"].shape) == (1, 96, 96) and tuple(s["mask"].shape) == (1, 96, 96)
            assert s["patient_id"] == pid and s["image"].meta["patient_id"] == pid
            assert s["image"].meta["slice_index"] == s["slice_index"]
            # physical position of the slice from the 5 mm volume's affine
            z_expected = float((d["mask"].affine @ torch.tensor([0.0, 0.0, s["slice_index"], 1.0], dtype=torch.float64))[2])
            assert abs(s["z_mm"] - z_expected) < 1e-6
            # the slice's whole tumour is inside the crop when it is at most 96 mm wide
            full = d["mask"][0, :, :, s["slice_index"]]
            xs, ys = np.nonzero(full.numpy())
            fits = xs.max() - xs.min() < 96 and ys.max() - ys.min() < 96
            inside, total = float(s["mask"].sum()), float(full.sum())
            assert (inside == total) if fits else (0 < inside < total), (pid, s["slice_index"])
    # phantom: tumour on original slices 17..42 at 3 mm -> 5 mm slices 10..25
    ph = TumourSlicesd("image")(resampled["ibsi-ct-phantom"][1])
    assert [s["slice_index"] for s in ph] == list(range(10, 26))
    assert abs(ph[0]["z_mm"] - (-100.4 + 50.0)) < 1e-3
    assert sum(s["mask"].sum() < resampled["ibsi-ct-phantom"][1]["mask"][0, :, :, s["slice_index"]].sum()
               for s in ph) == 1  # the phantom GTV spans 97 mm on one slice: clipped there


def test_tumour_slices_min_area_and_crop_centre(resampled):
    d = resampled["lung1-002"][1]
    all_slices = TumourSlicesd("image")(d)
    areas = sorted(s["image"].meta["tumour_area_mm2"] for s in all_slices)
    threshold = areas[len(areas) // 2]
    big = TumourSlicesd("image", min_area_mm2=threshold)(d)
    assert len(big) == sum(a >= threshold for a in areas) < len(all_slices)
    # crop centred on the tumour's bounding box (within one pixel)
    for s in big:
        xs, ys = np.nonzero(s["mask"][0].numpy())
        assert abs((xs.min() + xs.max()) / 2 - 47.5) <= 1.0 and abs((ys.min() + ys.max()) / 2 - 47.5) <= 1.0
    # lung crops are 92 px wide: the 96 mm crop is padded with the image minimum
    s0 = TumourSlicesd("image")(HUWindowd("image")(dict(d)))[0]
    assert float(s0["image"].min()) == -95.0
    with pytest.raises(InputError, match=r"^patient lung1-002: no axial slice with tumour area >= 1e\+06 mm2"):
        TumourSlicesd("image", min_area_mm2=1e6)(d)
