"""Issue 11, maps cache: every map of every patient is computed once. The cache inside
VoxelRadiomicsMapsd is addressed by the resampled image + mask + grid + settings + backend (not by
the feature list): a second call computes nothing, a subset is read from a superset entry, a
missing name is computed alone and added, two processes writing one entry at once are safe, and
the resampled CT + mask of a cached patient can be read back (row b's PyRadiomics features)."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import torch

import voxsurv.maps.api
from custom_transforms.maps import VoxelRadiomicsMaps
from custom_transforms.pipeline import volume_preprocessing
from maps_pipeline_helpers import crop_patient
from voxsurv.maps.cache import MapsCache, cache_key
from voxsurv.maps.settings import MapSettings

SUPERSET = ["firstorder_Mean", "firstorder_Entropy", "glcm_Contrast", "ngtdm_Busyness"]


@pytest.fixture(scope="module")
def patient(lung_crops, tmp_path_factory):
    """A small real patient, resampled to 1 x 1 x 5 mm by the chain (no maps yet)."""
    rec = crop_patient(lung_crops, "radiogenomics-202", tmp_path_factory.mktemp("cache"), slices=15, half=12)
    return volume_preprocessing(features=[])({"image": rec["image"], "mask": rec["mask"], "patient_id": "p1"})


@pytest.fixture
def engine_calls(monkeypatch):
    """Names requested from the maps engine, one list per call."""
    calls = []
    real = voxsurv.maps.api.compute_maps

    def counting(image, mask, spacing, features=None, **kwargs):
        calls.append(list(features))
        return real(image, mask, spacing, features, **kwargs)

    monkeypatch.setattr(voxsurv.maps.api, "compute_maps", counting)
    return calls


def _maps(patient, features, cache_dir, **kw):
    return VoxelRadiomicsMaps(features, backend="torch", cache_dir=cache_dir, **kw)(patient["image"], patient["mask"])


def test_second_call_computes_nothing_and_subsets_read_from_a_superset(patient, tmp_path, engine_calls):
    fresh = VoxelRadiomicsMaps(SUPERSET, backend="torch")(patient["image"], patient["mask"])  # no cache
    assert engine_calls == [SUPERSET]

    first = _maps(patient, SUPERSET, tmp_path)
    assert engine_calls[1:] == [SUPERSET] and first.meta["maps_computed"] == SUPERSET
    again = _maps(patient, SUPERSET, tmp_path)
    assert len(engine_calls) == 2 and again.meta["maps_computed"] == []  # nothing computed
    np.testing.assert_array_equal(again.numpy(), fresh.numpy())  # bit for bit, NaN outside
    np.testing.assert_array_equal(first.numpy(), fresh.numpy())

    subset = ["glcm_Contrast", "firstorder_Mean"]  # other order, fewer names: read, not computed
    sub = _maps(patient, subset, tmp_path)
    assert len(engine_calls) == 2 and sub.meta["channel_names"] == subset
    np.testing.assert_array_equal(sub.numpy(), fresh.numpy()[[2, 0]])
    assert sub.meta["maps_cache_key"] == first.meta["maps_cache_key"]  # key ignores the feature list

    wider = _maps(patient, ["firstorder_Mean", "glrlm_RunEntropy"], tmp_path)
    assert engine_calls[2:] == [["glrlm_RunEntropy"]]  # only the missing name is computed
    assert wider.meta["maps_computed"] == ["glrlm_RunEntropy"]
    assert MapsCache(tmp_path).cached_names(first.meta["maps_cache_key"]) == set(SUPERSET) | {"glrlm_RunEntropy"}
    roi = patient["mask"][0] > 0
    assert torch.isnan(wider[:, ~roi]).all() and torch.isfinite(wider[:, roi]).all()


def test_key_changes_with_content_geometry_settings_backend_only(patient):
    img, mask = patient["image"][0].numpy(), patient["mask"][0].numpy()
    aff = patient["image"].affine.numpy()
    base = cache_key(img, mask, aff, MapSettings(), "torch")
    assert cache_key(img.copy(), (mask > 0) * 7, aff.copy(), MapSettings(), "torch") == base  # mask labels: > 0 counts
    img2 = img.copy()
    img2.flat[0] += 1.0
    shifted = aff.copy()
    shifted[0, 3] += 1.0
    mask2 = mask.copy()
    mask2.flat[np.flatnonzero(mask)[0]] = 0
    others = [cache_key(img2, mask, aff, MapSettings(), "torch"), cache_key(img, mask2, aff, MapSettings(), "torch"),
              cache_key(img, mask, shifted, MapSettings(), "torch"),
              cache_key(img, mask, aff, MapSettings(bin_width=10.0), "torch"),
              cache_key(img, mask, aff, MapSettings(), "pyradiomics"),
              cache_key(img, mask, aff, MapSettings(), "torch", store_dtype="float64")]
    assert len({base, *others}) == 7


def _write_in_process(args):
    image, mask, features, cache_dir = args
    torch.set_num_threads(1)
    out = VoxelRadiomicsMaps(features, backend="torch", cache_dir=cache_dir)(image, mask)
    return out.meta["maps_cache_key"], out.numpy()


def test_two_processes_writing_one_entry_are_safe(patient, tmp_path):
    a, b = ["firstorder_Mean", "glcm_Contrast", "ngtdm_Busyness"], ["glcm_Contrast", "firstorder_Entropy"]
    jobs = [(patient["image"], patient["mask"], feats, str(tmp_path)) for feats in (a, b, a, b)]
    # fork: the workers need nothing re-imported (spawn costs ~30 s of imports on a busy machine);
    # the point is two processes renaming files into one entry at once.
    with mp.get_context("fork").Pool(2) as pool:
        results = pool.map(_write_in_process, jobs)
    keys = {k for k, _ in results}
    assert len(keys) == 1
    key = keys.pop()
    cache = MapsCache(tmp_path)
    assert cache.cached_names(key) == set(a) | set(b)
    assert not [p for p in cache.entry(key).rglob("*") if p.name.startswith(".")]  # no temporary left
    ref = VoxelRadiomicsMaps(sorted(set(a) | set(b)), backend="torch")(patient["image"], patient["mask"])
    names = list(ref.meta["channel_names"])
    np.testing.assert_array_equal(cache.read_maps(key, names), ref.numpy())
    for (_, maps), feats in zip(results, (a, b, a, b)):
        np.testing.assert_array_equal(maps, ref.numpy()[[names.index(n) for n in feats]])


def test_resampled_ct_and_mask_of_a_cached_patient_read_back(patient, tmp_path):
    out = _maps(patient, ["firstorder_Mean"], tmp_path)
    vol = MapsCache(tmp_path).read_volume(out.meta["maps_cache_key"])
    np.testing.assert_array_equal(vol["image"], patient["image"][0].numpy())  # HU, not clipped
    np.testing.assert_array_equal(vol["mask"], (patient["mask"][0].numpy() > 0).astype(np.uint8))
    np.testing.assert_allclose(vol["affine"], patient["image"].affine.numpy())
    np.testing.assert_allclose(vol["spacing_xyz_mm"], [1.0, 1.0, 5.0])
    assert vol["roi_voxels"] == int((patient["mask"] > 0).sum()) and vol["backend"] == "torch"
    assert float(vol["image"].min()) < -95.0  # the stored CT is the unclipped HU image
    roi = MapsCache(tmp_path).read_roi_values(out.meta["maps_cache_key"], ["firstorder_Mean"])
    np.testing.assert_array_equal(roi[0], out[0].numpy()[vol["mask"] > 0])
