"""Issue 11, "inputs without artefacts": the one per-patient chain (custom_transforms.pipeline).

- CT by a fixed HU transform (window 250/30 -> [0, 1]), not z-scored per patient;
- maps as centred bins (bin / 32 - 0.5) inside the tumour, 0 outside, plus a mask channel;
- 0 padding in every channel after scaling;
- one field of view per patient that holds the tumour (no cut slice), resized to img_size;
- descriptors (log volume, mean HU) measured on the resampled grid before any scaling;
- K random slices per patient, reproducibly; MONAI's in-plane rotation of the (C, H, W, K) stack
  rotates each slice alone (no bleeding between slices).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandFlipd, RandRotated, Rotate, Rotated

from custom_transforms import (DESCRIPTOR_NAMES, RandTumourSlicesd, TumourDescriptorsd, TumourStack,
                               patient_preprocessing, stack_preprocessing, volume_preprocessing)
from voxsurv.maps.normalise import MapStatistics
from voxsurv.core.errors import InputError, input_error_in

FEATURES = ["firstorder_Mean", "glcm_Contrast", "glszm_ZoneEntropy"]
# a large tumour (wider than the old 64 mm crop), a small one, one of the target cohort
PATIENTS = ["lung1-002", "lung1-371", "radiogenomics-202"]


def _files(lung_crops, pid):
    return {"image": str(lung_crops / "images" / f"{pid}_ct.nii.gz"),
            "mask": str(lung_crops / "images" / f"{pid}_gtv.nii.gz"), "patient_id": pid}


@pytest.fixture(scope="module")
def volumes(lung_crops, tmp_path_factory):
    chain = volume_preprocessing(FEATURES, maps_cache_dir=tmp_path_factory.mktemp("maps"))
    return {pid: chain(_files(lung_crops, pid)) for pid in PATIENTS}


@pytest.fixture(scope="module")
def statistics(volumes):
    # a superset of the maps used, in another order: the chain picks the features by name
    names = FEATURES[::-1] + ["firstorder_Entropy"]
    pairs = []
    for d in volumes.values():
        maps = d["maps"].numpy()
        pairs.append((np.concatenate([maps[::-1], maps[:1]]), d["mask"][0].numpy()))
    return MapStatistics.fit(pairs, names)


def _volume(shape=(30, 30, 6), spacing=(1.0, 1.0, 5.0), hu=40.0):
    """Synthetic channel-first CT (constant HU) and mask MetaTensors with the given spacing."""
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.full((1, *shape), hu), affine=affine)
    mask = MetaTensor(torch.zeros((1, *shape)), affine=affine.clone())
    return image, mask


def test_volume_stage_outputs_and_descriptors_on_the_resampled_grid(lung_crops, volumes):
    for pid, d in volumes.items():
        assert d["patient_id"] == pid
        assert d["image"].shape[0] == 1 and d["maps"].shape == (3, *d["image"].shape[1:])
        np.testing.assert_allclose(d["image"].pixdim[:3].numpy(), [1.0, 1.0, 5.0])
        roi = d["mask"][0] > 0
        assert torch.isnan(d["maps"][:, ~roi]).all() and d["maps"].meta["channel_names"] == FEATURES
        # independent: the same quantities on the ORIGINAL 1 mm grid (resampling changes them a little)
        ct = sitk.GetArrayFromImage(sitk.ReadImage(_files(lung_crops, pid)["image"]))
        m = sitk.GetArrayFromImage(sitk.ReadImage(_files(lung_crops, pid)["mask"])) > 0
        log_ml, mean_hu = d["descriptors"].tolist()
        assert d["descriptors"].dtype == torch.float32 and DESCRIPTOR_NAMES == ("log_volume_ml", "mean_hu")
        assert abs(log_ml - math.log(m.sum() / 1000.0)) < 0.1, pid  # volume within ~10%
        assert abs(mean_hu - float(ct[m].mean())) < 10.0, pid
        # exact: on the resampled grid, before any scaling
        assert log_ml == pytest.approx(math.log(int(roi.sum()) * 5.0 / 1000.0), abs=1e-5)
        assert mean_hu == pytest.approx(float(d["image"][0][roi].double().mean()), abs=1e-3)


def test_descriptors_synthetic_and_empty_mask_names_the_patient():
    image, mask = _volume(spacing=(2.0, 2.0, 5.0))
    image[0, :, :, 2] = -100.0
    mask[0, 3:6, 4:8, 2:4] = 1  # 24 voxels of 20 mm3; half at -100 HU, half at 40 HU
    out = TumourDescriptorsd("image", mask_key="mask")({"image": image, "mask": mask})["descriptors"]
    np.testing.assert_allclose(out.numpy(), [math.log(24 * 20 / 1000.0), -30.0], rtol=1e-6)
    with pytest.raises(InputError, match="patient p9: mask is empty"):
        TumourDescriptorsd("image")({"image": image, "mask": mask * 0, "patient_id": "p9"})


def test_stack_holds_the_whole_tumour_in_one_field_of_view(volumes, statistics):
    chain = stack_preprocessing(statistics, features=FEATURES, img_size=48)
    for pid, d in volumes.items():
        out = chain(d)
        x = out["image"]
        assert set(out) == {"image", "descriptors", "patient_id"}
        assert torch.equal(out["descriptors"], d["descriptors"])  # measured before scaling
        assert x.meta["channel_names"] == ["ct", *FEATURES, "mask"] and x.shape[:3] == (5, 48, 48)
        m = (d["mask"][0] > 0).numpy()
        area = m.sum(axis=(0, 1)) * 1.0
        kept = [k for k in range(m.shape[2]) if area[k] >= 10.0]
        assert x.meta["slice_indices"].tolist() == kept and x.shape[3] == len(kept)
        # FOV = 1.3 x the largest in-plane extent of the kept slices (>= 20 mm)
        extents = []
        for k in kept:
            xs, ys = np.nonzero(m[:, :, k])
            extents.append(max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
        assert x.meta["fov_mm"] == math.ceil(max(20.0, 1.3 * max(extents)) - 1e-6)  # whole 1 mm voxels
        assert x.meta["tumour_cut_slices"] == 0
        mask_ch = x[-1]
        # independent check that nothing is cut: the mask channel is 0 on every slice's border
        border = torch.cat([mask_ch[0], mask_ch[-1], mask_ch[:, 0], mask_ch[:, -1]])
        assert float(border.abs().max()) == 0.0, pid
        # same scale for every slice: pixel area x mask sum = tumour area (size information kept)
        px_mm2 = (x.meta["fov_mm"] / 48) ** 2
        np.testing.assert_allclose(mask_ch.sum(dim=(0, 1)).numpy() * px_mm2, area[kept], rtol=0.03)
        # value ranges: CT [0, 1]; maps centred bins in [-0.47, 0.5]; 0 wherever the mask channel is 0
        assert 0.0 <= float(x[0].min()) and float(x[0].max()) <= 1.0 + 1e-6
        maps = x[1:-1]
        assert float(maps.min()) >= -31 / 64 - 1e-6 and float(maps.max()) <= 0.5 + 1e-6
        assert float(maps[:, mask_ch == 0].abs().max()) == 0.0


def test_ct_scaling_maps_bins_and_zero_padding_exact_without_resize():
    """img_size = crop size: no interpolation, so values can be checked exactly."""
    image, mask = _volume(shape=(30, 30, 6))
    image[0] = torch.linspace(-300, 300, 30)[:, None, None].expand(30, 30, 6)
    mask[0, 0:4, 10:14, 2] = 1  # a 16 mm2 tumour at the volume's edge: the crop leaves the volume
    mask[0, 1:3, 11:13, 3] = 1  # 4 mm2: below min_area_mm2, dropped
    maps = MetaTensor(torch.full((2, 30, 30, 6), float("nan")), affine=image.affine,
                      meta={"channel_names": ["a", "b"]})
    maps[0][mask[0] > 0] = 0.0    # z = 0 -> bin 17 of 32 -> 17 / 32 - 0.5
    maps[1][mask[0] > 0] = 100.0  # z = 10 -> clipped -> bin 32 -> 0.5
    stats = MapStatistics(["a", "b"], np.zeros(2), np.ones(2), np.ones(2))
    out = stack_preprocessing(stats, img_size=20)({"image": image, "mask": mask, "maps": maps,
                                                   "descriptors": torch.zeros(2), "patient_id": "p"})
    x = out["image"]
    assert x.shape == (4, 20, 20, 1) and x.meta["slice_indices"].tolist() == [2]
    x0, y0, nx, ny = x.meta["crop_boxes"][0].tolist()
    assert (nx, ny) == (20, 20) and x0 < 0  # min_fov_mm 20 -> 20 voxels, centred on the tumour
    inside = slice(-x0, 20)  # crop rows that lie in the volume
    hu = image[0, : 20 + x0, y0:y0 + 20, 2]
    np.testing.assert_allclose(x[0, inside, :, 0].numpy(), ((hu.clamp(-95, 155) + 95) / 250).numpy(), atol=1e-6)
    assert float(x[:, : -x0].abs().max()) == 0.0  # padding: 0 in EVERY channel, CT included
    tumour = x[3] > 0
    assert int(tumour.sum()) == 16
    np.testing.assert_allclose(x[1][tumour].numpy(), 17 / 32 - 0.5)
    np.testing.assert_allclose(x[2][tumour].numpy(), 0.5)
    assert float(x[1:3][:, ~tumour].abs().max()) == 0.0
    # paste back: the crop box maps stack pixels onto volume voxels
    np.testing.assert_array_equal(x[3, inside, :, 0].numpy(), mask[0, : 20 + x0, y0:y0 + 20, 2].numpy())


def test_no_qualifying_slice_is_an_input_error_naming_the_patient():
    image, mask = _volume()
    mask[0, 5, 5, 2] = 1  # 1 mm2
    with pytest.raises(RuntimeError) as caught:  # MONAI's Compose wraps it; batch jobs unwrap it
        stack_preprocessing(features=[])({"image": image, "mask": mask, "patient_id": "p3"})
    assert "patient p3: no axial slice with tumour area >= 10" in str(input_error_in(caught.value))


def test_ct_and_mask_only_control_and_patient_chain_equal_the_two_stages(lung_crops, volumes, statistics):
    only = stack_preprocessing(features=[])(volumes["lung1-371"])["image"]
    assert only.meta["channel_names"] == ["ct", "mask"] and only.shape[0] == 2
    both = patient_preprocessing(statistics, features=FEATURES)(_files(lung_crops, "lung1-371"))
    staged = stack_preprocessing(statistics, features=FEATURES)(volumes["lung1-371"])
    assert torch.equal(both["image"], staged["image"]) and torch.equal(both["descriptors"], staged["descriptors"])


def test_random_slices_reproducible_without_replacement(volumes, statistics):
    stack = stack_preprocessing(statistics, features=FEATURES)(volumes["lung1-002"])
    S = stack["image"].shape[-1]
    pick = RandTumourSlicesd("image", num_slices=4)
    outs = [pick.set_random_state(7)(stack)["image"] for _ in range(2)]
    assert torch.equal(outs[0], outs[1]) and outs[0].shape == (5, 48, 48, 4)
    pos = outs[0].meta["stack_positions"]
    assert len(set(pos.tolist())) == 4 and pos.tolist() == sorted(pos.tolist())
    assert torch.equal(outs[0], stack["image"][..., pos].as_tensor())
    assert torch.equal(outs[0].meta["slice_indices"], stack["image"].meta["slice_indices"][pos])
    assert torch.equal(outs[0].meta["crop_boxes"], stack["image"].meta["crop_boxes"][pos])
    draws = {tuple(pick(stack)["image"].meta["stack_positions"].tolist()) for _ in range(20)}
    assert len(draws) > 1  # it is random
    few = RandTumourSlicesd("image", num_slices=S + 3).set_random_state(0)(stack)["image"]
    assert few.shape[-1] == S + 3 and set(few.meta["stack_positions"].tolist()) == set(range(S))


def test_in_plane_rotation_of_the_stack_rotates_each_slice_alone():
    g = torch.Generator().manual_seed(0)
    stack = torch.rand((3, 48, 48, 4), generator=g)
    stack[..., 1] = 0.0  # an empty slice between full ones must stay empty
    angle = 0.7
    rotated = Rotated("image", angle=(0.0, 0.0, angle), padding_mode="zeros")({"image": stack})["image"]
    per_slice = torch.stack([Rotate(angle, padding_mode="zeros")(stack[..., k]) for k in range(4)], dim=-1)
    assert float((rotated - per_slice).abs().max()) < 1e-5
    assert float(rotated[..., 1].abs().max()) < 1e-6
    # the training augmentation as configured: random angle and flip, still slice by slice
    aug = Compose([RandFlipd("image", prob=1.0, spatial_axis=0),
                   RandRotated("image", range_z=math.pi / 3, prob=1.0, padding_mode="zeros")])
    aug.set_random_state(3)
    out = aug({"image": stack})["image"]
    assert float(out[..., 1].abs().max()) < 1e-6
    assert float(out[..., 0].abs().sum()) > 0 and out.shape == stack.shape


def test_stack_plan_covers_anisotropic_in_plane_spacing():
    image, mask = _volume(shape=(40, 40, 3), spacing=(0.5, 1.0, 5.0))
    mask[0, 10:30, 15:25, 1] = 1  # 10 x 10 mm
    plan = TumourStack(img_size=32, min_fov_mm=5.0).plan(mask)
    assert plan["fov_mm"] == pytest.approx(13.0) and plan["crop_boxes"][0][2:] == (26, 13)
    assert plan["tumour_cut_slices"] == 0


def test_a_training_batch_of_patients_collates(volumes, statistics):
    """What the training data loader does: K random slices per patient, flip + rotate, then MONAI's
    collate stacks patients into (B, C, H, W, K) with descriptors (B, 2) and per-slice meta."""
    from monai.data import list_data_collate

    chain = Compose([stack_preprocessing(statistics, features=FEATURES), RandTumourSlicesd("image", num_slices=3),
                     RandFlipd("image", prob=0.5, spatial_axis=0),
                     RandRotated("image", range_z=math.pi / 3, prob=1.0, padding_mode="zeros")])
    chain.set_random_state(0)
    samples = [{**chain(d), "label": torch.tensor([100.0 * i, 1.0])} for i, d in enumerate(volumes.values())]
    batch = list_data_collate(samples)
    assert tuple(batch["image"].shape) == (3, 5, 48, 48, 3) and tuple(batch["descriptors"].shape) == (3, 2)
    assert batch["patient_id"] == PATIENTS and tuple(batch["label"].shape) == (3, 2)
    assert tuple(batch["image"].meta["slice_indices"].shape) == (3, 3)
