"""Map screening: a map that drives survival passes, noise does not, and the fallback is explicit."""

import numpy as np
import pytest
import pandas as pd

from voxsurv.study.screening import screen_one_map, select_maps
from voxsurv.training.folds import stratified_patient_folds


def test_informative_map_passes_and_noise_does_not():
    rng = np.random.default_rng(0)
    n = 200
    signal = rng.normal(size=n)
    time = rng.exponential(700 * np.exp(-1.0 * signal))
    event = (rng.uniform(size=n) < 0.8).astype(int)
    folds = stratified_patient_folds(event, 5, 0)
    summaries = lambda s: np.stack([s, np.abs(s), s - 1, s, s + 1], 1) + rng.normal(0, 0.1, (n, 5))  # noqa: E731
    good = screen_one_map("good", summaries(signal), time, event, folds)
    noise = screen_one_map("noise", summaries(rng.normal(size=n)), time, event, folds)
    assert good["auc"] > 0.7 and len(good["fold_auc"]) == 5
    # cross-validated noise scores below 0.5 (fold-mean shifts anti-correlate with held-out data,
    # the same bias shows in the real screening's lowest maps); it must not pass the threshold
    assert noise["auc"] < 0.6


def test_selection_threshold_and_explicit_fallback():
    table = pd.DataFrame({"map": ["a", "b", "c"], "auc": [0.65, 0.61, 0.55]})
    names, rule = select_maps(table, threshold=0.6)
    assert names == ["a", "b"] and "2 of 3" in rule
    names, rule = select_maps(table, threshold=0.7, fallback_k=2)
    assert names == ["a", "b"] and "no map reached" in rule and "fallback" in rule


def test_voxel_correlation_is_pooled_spearman_and_handles_undefined_voxels():
    from scipy.stats import spearmanr

    from voxsurv.study.screening import voxel_correlation

    rng = np.random.default_rng(0)
    patients = [rng.normal(size=(3, n)) for n in (50, 80, 30)]
    for p in patients:
        p[1] = np.exp(p[0]) + 0.01 * rng.normal(size=p.shape[1])  # monotone near-duplicate of map 0
    r = voxel_correlation(patients, ["a", "b", "c"])
    pooled = np.concatenate(patients, axis=1)
    assert r.loc["a", "c"] == pytest.approx(spearmanr(pooled[0], pooled[2]).statistic, abs=1e-12)
    assert r.loc["a", "b"] > 0.99 and abs(r.loc["a", "c"]) < 0.2
    # a voxel where map c is undefined is left out of c's pairs only; ranks stay those over each
    # map's own defined voxels (documented), so r is close to, not equal to, pairwise Spearman
    patients[0][2, :10] = np.nan
    r2 = voxel_correlation(patients, ["a", "b", "c"])
    keep = np.isfinite(np.concatenate(patients, axis=1)[2])
    assert r2.loc["a", "b"] == pytest.approx(r.loc["a", "b"])
    assert r2.loc["a", "c"] == pytest.approx(spearmanr(pooled[0][keep], pooled[2][keep]).statistic, abs=0.005)
    assert r2.loc["a", "c"] != pytest.approx(r.loc["a", "c"], abs=1e-6)


def test_decorrelated_selection_skips_near_duplicates_greedily_by_auc():
    from voxsurv.study.screening import decorrelated_selection

    names = ["dup_of_a", "a", "b", "c", "weak"]
    table = pd.DataFrame({"map": names, "auc": [0.70, 0.69, 0.65, 0.62, 0.55]})
    r = pd.DataFrame(np.eye(5), index=names, columns=names)
    r.loc["a", "dup_of_a"] = r.loc["dup_of_a", "a"] = -0.95   # |r| counts, not the sign
    r.loc["c", "b"] = r.loc["b", "c"] = 0.79                  # just below the limit: kept
    kept, decisions, rule = decorrelated_selection(table, r, threshold=0.6, max_abs_r=0.8)
    assert kept == ["dup_of_a", "b", "c"]
    d = decisions.set_index("map")
    assert d.loc["a", "decision"].startswith("skipped") and d.loc["a", "closest_kept"] == "dup_of_a"
    assert d.loc["a", "max_abs_r_to_kept"] == pytest.approx(0.95)
    assert "not selected" in d.loc["weak", "decision"] and "greedy" in rule
    # a cap stops the greedy pass; no map above the threshold -> explicit fallback over all maps
    assert decorrelated_selection(table, r, max_maps=2)[0] == ["dup_of_a", "b"]
    kept, _, rule = decorrelated_selection(table, r, threshold=0.9, fallback_k=2)
    assert kept == ["dup_of_a", "b"] and "fallback" in rule
