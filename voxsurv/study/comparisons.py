"""Paired comparisons of the study's rows (voxsurv.stats.paired_bootstrap: same patients resampled for
both models, percentile CI, 1000 resamples, the study's seed).

On the test split (each row's one scoring): (e) against (b), (g) and volume + HU (issue 11),
and, to read the table, (e) against (d) (fine-tuning), (f) (maps), the untrained network and (a).
On the source: the chosen deep model's out-of-fold risks (seed mean at its chosen epoch) against
the volume + HU Cox's out-of-fold risks on the SAME folds (the acceptance target: CI above 0).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from voxsurv.stats.paired_bootstrap import paired_bootstrap_c

TEST_PAIRS = (("e", "b"), ("e", "g"), ("e", "volume_hu"), ("e", "d"), ("e", "f"), ("e", "untrained"),
              ("e", "a"), ("anchored", "volume_hu"), ("e_head_only", "e"))


def paired(a: pd.DataFrame, b: pd.DataFrame, label_a: str, label_b: str, n_resamples: int, seed: int) -> dict:
    """Paired bootstrap of C(a) - C(b) on the patients both frames score (must be the same set)."""
    m = a[["patient_id", "risk", "time_days", "event"]].merge(b[["patient_id", "risk"]], on="patient_id",
                                                              suffixes=("_a", "_b"))
    if len(m) != len(a) or len(m) != len(b):
        raise ValueError(f"{label_a} and {label_b} score different patients ({len(a)}, {len(b)}, {len(m)} shared)")
    res = paired_bootstrap_c(m.time_days, m.event, m.risk_a, m.risk_b, n_resamples=n_resamples, seed=seed,
                             label_a=label_a, label_b=label_b)
    return res.to_dict()


def compare_on_test(predictions_dir: str | Path, rows: dict, n_resamples: int, seed: int,
                     pairs=TEST_PAIRS) -> list[dict]:
    """Every pair of TEST_PAIRS whose two rows exist, on their test predictions."""
    folder = Path(predictions_dir)
    out = []
    for a, b in pairs:
        if a in rows and b in rows:
            pa = pd.read_csv(folder / f"{a}_test.csv", dtype={"patient_id": str})
            pb = pd.read_csv(folder / f"{b}_test.csv", dtype={"patient_id": str})
            out.append({"split": "test", **paired(pa, pb, a, b, n_resamples, seed)})
    return out


def compare_on_source(deep_oof: pd.DataFrame, volume_hu_oof: pd.DataFrame, deep_label: str, n_resamples: int,
                      seed: int) -> dict:
    """Chosen deep model vs volume + HU on the source out-of-fold predictions (same folds)."""
    if not (deep_oof.set_index("patient_id").fold.sort_index()
            .equals(volume_hu_oof.set_index("patient_id").fold.sort_index())):
        raise ValueError("the deep and volume + HU out-of-fold predictions use different source folds")
    return {"split": "source_out_of_fold",
            "note": "deep risks: mean over seeds of the out-of-fold risk at the chosen epoch (chosen on these "
                    "same predictions: optimistic for the deep model)",
            **paired(deep_oof, volume_hu_oof, deep_label, "volume_hu", n_resamples, seed)}
