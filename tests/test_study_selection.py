"""Selection on the source (voxsurv.study.selection): pooled out-of-fold C per seed and epoch,
the chosen epoch and candidate follow the fixed rules, and incomplete folds are an error."""

import shutil

import numpy as np
import pandas as pd
import pytest

from voxsurv.stats.metrics import harrell_c
from voxsurv.study.selection import (choose_candidate, choose_epoch, pooled_c_by_seed, pooled_oof,
                                     selection_table, summarise_protocol)


def _runs(tmp_path, n=40, folds=2, seeds=(0, 1), epochs=(0, 1, 2), signal=None):
    """Fake bundle run folders: predictions_val_epoch{E}.csv per (fold, seed); risk = signal x epoch + noise."""
    rng = np.random.default_rng(0)
    ids = [f"p{i:02d}" for i in range(n)]
    x = rng.normal(size=n)
    time = rng.exponential(500 * np.exp(-x))
    event = (rng.uniform(size=n) < 0.7).astype(int)
    fold = np.arange(n) % folds
    runs = {}
    for k in range(folds):
        for s in seeds:
            d = tmp_path / f"fold{k}_seed{s}"
            d.mkdir()
            for e in epochs:
                strength = (signal or {}).get(e, e)
                risk = strength * x + rng.normal(0, 1, n)
                v = fold == k
                pd.DataFrame({"patient_id": np.array(ids)[v], "risk": risk[v], "image_risk": risk[v],
                              "time_days": time[v], "event": event[v]}).to_csv(d / f"predictions_val_epoch{e}.csv",
                                                                               index=False)
            runs[(k, s)] = d
    return runs, ids


def test_pooled_c_is_one_harrell_c_over_all_source_patients_per_seed_and_epoch(tmp_path):
    runs, ids = _runs(tmp_path)
    long = pooled_oof(runs, ids)
    by_seed = pooled_c_by_seed(long)
    assert len(by_seed) == 2 * 3
    g = long[(long.seed == 1) & (long.epoch == 2)]
    assert len(g) == 40 and set(g.patient_id) == set(ids)
    assert by_seed.set_index(["seed", "epoch"]).c[(1, 2)] == pytest.approx(harrell_c(g.time_days, g.event, g.risk))
    table = selection_table(by_seed)
    c2 = by_seed[by_seed.epoch == 2].sort_values("seed").c.to_numpy()
    assert table.set_index("epoch").loc[2, "mean"] == pytest.approx(c2.mean())
    assert table.set_index("epoch").loc[2, "sd"] == pytest.approx(c2.std(ddof=1))


def test_a_missing_fold_is_an_error_not_a_smaller_pool(tmp_path):
    runs, ids = _runs(tmp_path)
    del runs[(1, 0)]
    with pytest.raises(ValueError, match="do not cover"):
        pooled_oof(runs, ids)


def test_an_epoch_only_a_resumed_run_evaluated_is_left_out_of_the_pool(tmp_path):
    runs, ids = _runs(tmp_path)
    # a run interrupted after epoch 1 and resumed validates once more at its resume point
    (runs[(1, 1)] / "predictions_val_epoch1.csv").rename(runs[(1, 1)] / "predictions_val_epoch5.csv")
    shutil.copy(runs[(1, 1)] / "predictions_val_epoch5.csv", runs[(1, 1)] / "predictions_val_epoch1.csv")
    long = pooled_oof(runs, ids)
    assert sorted(long.epoch.unique()) == [0, 1, 2]


def test_epoch_rule_never_chooses_the_untrained_epoch_and_prefers_the_earlier_tie():
    t = pd.DataFrame({"epoch": [0, 10, 20, 30], "mean": [0.9, 0.6, 0.7, 0.7], "sd": 0.01})
    assert choose_epoch(t) == 20
    s = [{"name": "a", "chosen_mean": 0.61}, {"name": "b", "chosen_mean": 0.65}, {"name": "c", "chosen_mean": 0.65}]
    assert choose_candidate(s) == "b"


def test_summary_reports_chosen_last_and_untrained_epochs(tmp_path):
    runs, ids = _runs(tmp_path, n=60, signal={0: 0.0, 1: 2.0, 2: 0.5})
    summ = summarise_protocol("cand", pooled_oof(runs, ids))
    assert summ["chosen_epoch"] == 1 and summ["last_epoch"] == 2
    assert summ["chosen_mean"] > summ["last_mean"] and summ["chosen_mean"] > summ["untrained_mean"]
    assert len(summ["chosen_per_seed"]) == 2 and [r["epoch"] for r in summ["table"]] == [0, 1, 2]
