"""MONAI transforms: (1, x, y, z) MetaTensors from LoadImaged -> (F, x, y, z) maps with channel
names, spacing and affine kept, equal to the engine on the (z, y, x) array; then normalisation."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from custom_transforms import NormaliseMapsd, VoxelRadiomicsMapsd
from maps_pipeline_helpers import crop_patient
from voxsurv.maps import compute_maps
from voxsurv.maps.normalise import MapStatistics
from voxsurv.core.errors import InputError

FEATURES = ["firstorder_Mean", "glcm_Contrast", "glszm_ZoneEntropy"]


@pytest.fixture(scope="module")
def sample(lung_crops, tmp_path_factory):
    d = tmp_path_factory.mktemp("tf")
    rec = crop_patient(lung_crops, "radiogenomics-202", d, slices=3, half=13)
    for key in ("image", "mask"):  # as if already resampled to the map grid
        vol = sitk.ReadImage(rec[key])
        vol.SetSpacing((1.0, 1.0, 5.0))
        sitk.WriteImage(vol, rec[key])
    return rec


def test_maps_transform_shapes_metadata_and_values(sample):
    load = Compose([LoadImaged(["image", "mask"], image_only=True),
                    EnsureChannelFirstd(["image", "mask"])])
    data = load({"image": sample["image"], "mask": sample["mask"]})
    out = VoxelRadiomicsMapsd(keys="image", mask_key="mask", output_key="maps",
                              features=FEATURES, backend="pyradiomics")(data)
    maps, image = out["maps"], out["image"]
    assert isinstance(maps, MetaTensor)
    assert image.shape[0] == 1 and maps.shape == (3,) + tuple(image.shape[1:])  # (F, x, y, z)
    assert maps.meta["channel_names"] == FEATURES
    assert maps.meta["maps_settings"]["bin_width"] == 25.0
    np.testing.assert_allclose(maps.pixdim[:3].numpy(), [1.0, 1.0, 5.0])
    np.testing.assert_allclose(maps.affine.numpy(), image.affine.numpy())
    # the same maps as the engine on SimpleITK's (z, y, x) array
    ref, _ = compute_maps(sitk.GetArrayFromImage(sitk.ReadImage(sample["image"])),
                          sitk.GetArrayFromImage(sitk.ReadImage(sample["mask"])),
                          (5.0, 1.0, 1.0), FEATURES, backend="pyradiomics")
    assert maps.dtype == torch.float32  # computed in float64, handed on in float32
    np.testing.assert_array_equal(maps.numpy(), ref.transpose(0, 3, 2, 1).astype(np.float32))
    outside = out["mask"][0] == 0
    assert outside.any() and torch.isnan(maps[:, outside]).all()

    stats = MapStatistics.fit([ref], FEATURES, n_bins=8)
    norm = NormaliseMapsd(keys="maps", statistics=stats.select(FEATURES[::-1]).select(FEATURES),
                          mask_key="mask")(out)["maps"]
    assert norm.shape == maps.shape and norm.meta["channel_names"] == FEATURES
    inside = norm[:, ~outside]
    assert float(inside.min()) >= 1 / 8 - 0.5 and float(inside.max()) <= 0.5  # centred bins of 8
    assert set(np.unique(inside.numpy() * 8 + 4).tolist()) <= set(range(1, 9))
    assert (norm[:, outside] == 0).all()


def test_normalise_picks_the_statistics_maps_by_channel_name(sample, tmp_path):
    stats = MapStatistics(["b", "a"], np.array([0.0, 100.0]), np.array([1.0, 1.0]),
                          np.array([1.0, 1.0]), n_bins=4, z_clip=2.0)
    path = stats.save(tmp_path / "s.json")
    # the maps hold more channels, in another order (e.g. read from a cache with all 90)
    maps = MetaTensor(torch.stack([torch.full((2, 2, 1), v) for v in (7.0, 100.0, 1.0)]),
                      meta={"channel_names": ["c", "a", "b"]})
    out = NormaliseMapsd(keys="maps", statistics=str(path))({"maps": maps})["maps"]
    assert out.shape == (2, 2, 2, 1) and out.meta["channel_names"] == ["b", "a"]
    # b: z = 1 -> bin 4 of 4 over [-2, 2] -> 4 / 4 - 0.5; a: z = 0 -> bin 3 -> 3 / 4 - 0.5
    assert (out[0] == 0.5).all() and (out[1] == 0.25).all()
    zs = NormaliseMapsd(keys="maps", statistics=stats, scale="zscore")({"maps": maps})["maps"]
    assert (zs[0] == 1.0).all() and (zs[1] == 0.0).all()
    lacking = MetaTensor(torch.ones((1, 2, 2, 1)), meta={"channel_names": ["a"]})
    with pytest.raises(InputError, match=r"patient p1: maps \['b'\] have statistics but were not computed"):
        NormaliseMapsd(keys="maps", statistics=stats)({"maps": lacking, "patient_id": "p1"})
