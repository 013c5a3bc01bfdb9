"""Cohort z-score + binning statistics: fitted on ROI voxels only, pooled over patients exactly
as one big array would give, stored as JSON and re-applied unchanged."""

import numpy as np
import pytest

from voxsurv.maps.normalise import MapStatistics
from voxsurv.core.errors import InputError


def _cohort(seed=0):
    rng = np.random.default_rng(seed)
    patients = []
    for i in range(3):
        maps = rng.normal(10.0 * i, 1.0 + i, size=(3, 4, 6, 5))
        mask = rng.random((4, 6, 5)) > 0.4
        maps[:, ~mask] = 1e6  # huge values outside the ROI must not leak into the statistics
        patients.append((maps, mask))
    return patients


def test_fit_uses_roi_voxels_only_and_pools_patients():
    patients = _cohort()
    stats = MapStatistics.fit(iter(patients), ["a", "b", "c"])  # a generator: streaming fit
    pooled = np.concatenate([m[:, k] for m, k in patients], axis=1)
    np.testing.assert_allclose(stats.mean, pooled.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, pooled.std(axis=1), rtol=1e-12)
    assert (stats.count == pooled.shape[1]).all()
    # without a mask, NaN marks outside the ROI (how backends write maps)
    nan_maps = [np.where(k, m, np.nan) for m, k in patients]
    again = MapStatistics.fit(nan_maps, ["a", "b", "c"])
    np.testing.assert_allclose(again.mean, stats.mean, rtol=1e-12)


def test_save_load_round_trip_is_identical(tmp_path):
    stats = MapStatistics.fit(_cohort(), ["a", "b", "c"], n_bins=16, z_clip=2.5,
                              settings={"radius": 1})
    loaded = MapStatistics.load(stats.save(tmp_path / "stats.json"))
    assert loaded.names == stats.names and loaded.n_bins == 16 and loaded.z_clip == 2.5
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)
    maps, mask = _cohort(seed=1)[0]
    np.testing.assert_array_equal(loaded.apply(maps, mask), stats.apply(maps, mask))
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a map-statistics file"):
        MapStatistics.load(tmp_path / "bad.json")


def test_bins_then_centred_values_and_outside_value():
    stats = MapStatistics(["a"], np.array([0.0]), np.array([1.0]), np.array([10.0]), n_bins=32,
                          z_clip=3.0)
    z = np.array([[-10.0, -3.0, -2.9, 0.0, 2.99, 3.0, 50.0, np.nan]])
    np.testing.assert_array_equal(stats.discretise(z)[0, :7], [1, 1, 1, 17, 32, 32, 32])
    out = stats.apply(z)
    np.testing.assert_array_equal(out[0], np.array([1, 1, 1, 17, 32, 32, 32, 16.0], np.float32) / 32 - 0.5)
    assert out.dtype == np.float32
    # a map that was constant in training (std 0) z-scores to 0, not inf
    flat = MapStatistics(["a"], np.array([5.0]), np.array([0.0]), np.array([3.0]))
    assert flat.zscore(np.array([[5.0, 7.0]])).tolist() == [[0.0, 0.0]]


def test_centred_scale_is_bin_over_n_bins_minus_half_and_zero_outside():
    """The network's map input (issue 11): inside the tumour (-0.47, 0.5], mean ~0 over the
    training cohort, 0 outside; the same bins as the paper's integers, only shifted and scaled."""
    patients = _cohort()
    stats = MapStatistics.fit(patients, ["a", "b", "c"])
    maps, mask = patients[1]
    bins = stats.discretise(stats.zscore(maps, mask))
    centred = stats.apply(maps, mask, scale="centred")
    np.testing.assert_allclose(centred[:, mask], bins[:, mask] / 32 - 0.5, atol=1e-7)
    assert (centred[:, ~mask] == 0).all()
    assert centred.min() >= 1 / 32 - 0.5 and centred.max() <= 0.5
    pooled = np.concatenate([stats.apply(m, k, scale="centred")[:, k] for m, k in patients], axis=1)
    assert np.abs(pooled.mean(axis=1)).max() < 0.05  # centred over the training cohort
    np.testing.assert_allclose(stats.apply(maps, mask, scale="zscore")[:, mask],
                               np.clip(stats.zscore(maps, mask)[:, mask], -3, 3), atol=1e-6)
    with pytest.raises(ValueError, match="scale must be one of"):
        stats.apply(maps, mask, scale="minmax")


def test_per_patient_zscore_is_optional_and_differs_from_cohort():
    patients = _cohort()
    stats = MapStatistics.fit(patients, ["a", "b", "c"])
    maps, mask = patients[2]
    cohort_z = stats.zscore(maps, mask)[:, mask]
    own_z = stats.zscore(maps, mask, per_patient=True)[:, mask]
    np.testing.assert_allclose(own_z.mean(axis=1), 0.0, atol=1e-12)
    assert (cohort_z.mean(axis=1) > 0.5).all()  # patient 2 is above the cohort mean
