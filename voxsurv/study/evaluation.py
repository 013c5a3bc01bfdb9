"""One results row per model: the evaluation module's statistics on the target test split, plus
what the model was trained on, how long it took and where; the same code for every row, so the
comparison differs only in the model."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

TIMES_DAYS = (365.0, 730.0, 1095.0)


def patients_sha(ids) -> str:
    """Short fingerprint of a set of patient ids (order-free), to check roles across models."""
    return hashlib.sha1("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:12]


def predictions_table(rows: pd.DataFrame, risk) -> pd.DataFrame:
    """patient_id, risk, time_days, event (the evaluation module's predictions format)."""
    return pd.DataFrame({"patient_id": rows["patient_id"].to_numpy(), "risk": np.asarray(risk, float),
                         "time_days": rows["time_days"].to_numpy(float), "event": rows["event"].to_numpy(int)})


def results_row(model: str, description: str, train_pred: pd.DataFrame, test_pred: pd.DataFrame,
                trained_on: list[str], wall_s: float, device: str, n_resamples: int = 1000,
                seed: int = 0, extra: dict | None = None) -> dict:
    """Evaluate `test_pred` against the model's own training predictions (reference for the median
    cut-off and IPCW) with voxsurv.stats.evaluation.evaluate; flatten what the study table needs."""
    from voxsurv.stats.evaluation import evaluate

    ev = evaluate(test_pred, train_pred, times=TIMES_DAYS, n_resamples=n_resamples, seed=seed)
    m = ev.metrics
    hr = m["hazard_ratio"]
    return {
        "model": model, "description": description, "trained_on": trained_on,
        "n_train": int(len(train_pred)), "events_train": int(train_pred["event"].sum()),
        "c_index": m["c_index"]["value"], "ci95": m["c_index"]["ci95"],
        "n_test": m["n"], "events_test": m["events"],
        "td_auc": {f"{int(float(k) // 365)}y": v for k, v in m["td_auc"].items()},
        "td_auc_reason": {f"{int(float(k) // 365)}y": d["reason"] for k, d in m["td_auc_detail"].items() if d["reason"]},
        "hr": hr["value"], "hr_ci95": hr["ci95"], "logrank_p": m["logrank"]["p"],
        "median_split": {"cutoff": m["median_split"]["cutoff"], "n_high": m["median_split"]["n_high"],
                         "n_low": m["median_split"]["n_low"], "reason": m["median_split"].get("reason")},
        "wall_s": round(float(wall_s), 1), "device": device,
        "train_patients_sha": patients_sha(train_pred["patient_id"]),
        "test_patients_sha": patients_sha(test_pred["patient_id"]),
        **(extra or {}),
    }


def spearman_with_volume(pred: pd.DataFrame, descriptors: pd.DataFrame, column: str = "risk") -> float:
    """Spearman rho between a row's test `column` and tumour volume (log_volume_ml of the
    preprocessing chain; rank-based, so log or not is the same). Issue 11's check that a deep
    model learns more than size: the shipped models had 0.69-0.73."""
    from scipy.stats import spearmanr

    m = pred[["patient_id", column]].merge(descriptors[["patient_id", "log_volume_ml"]], on="patient_id")
    if len(m) != len(pred):
        raise ValueError(f"{len(pred) - len(m)} predicted patients have no descriptors")
    return float(spearmanr(m[column], m["log_volume_ml"]).statistic)


class RowWriter:
    """Evaluates every row the same way and keeps its per-patient predictions beside results.json
    (predictions/<row>_train.csv and <row>_test.csv): a test checks each row's patients."""

    def __init__(self, out_dir, test_rows: pd.DataFrame, n_resamples: int, seed: int, device: str = "cpu") -> None:
        from pathlib import Path

        self.folder = Path(out_dir) / "predictions"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.test_rows, self.n_resamples, self.seed, self.device = test_rows, n_resamples, seed, device

    def __call__(self, key: str, description: str, train_pred: pd.DataFrame, test_pred: pd.DataFrame,
                 trained_on: list[str], wall_s: float, extra: dict | None = None) -> dict:
        want = set(self.test_rows.patient_id.astype(str))
        got = set(test_pred.patient_id.astype(str))
        if got != want:
            raise RuntimeError(f"row {key}: test predictions cover {len(got & want)} of {len(want)} test patients"
                               f" (missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]})")
        keep = [c for c in test_pred.columns if c in ("patient_id", "risk", "image_risk", "anchor_offset",
                                                      "time_days", "event")]
        train_pred[[c for c in keep if c in train_pred]].assign(split="train").to_csv(
            self.folder / f"{key}_train.csv", index=False)
        test_pred[keep].assign(split="test").to_csv(self.folder / f"{key}_test.csv", index=False)
        return results_row(key, description, train_pred[["patient_id", "risk", "time_days", "event"]],
                           test_pred[["patient_id", "risk", "time_days", "event"]], trained_on, wall_s, self.device,
                           n_resamples=self.n_resamples, seed=self.seed, extra=extra)
