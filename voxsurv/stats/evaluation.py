"""The paper's evaluation of one risk score: every statistic, from a predictions table and the
reference (training) table of the same model. Numbers only; files are written by
`voxsurv evaluate` (figures: `voxsurv.stats.figures`, HTML: `voxsurv.stats.report`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from voxsurv.stats.calibration import (BreslowBaseline, CalibrationResult, breslow_baseline,
                                  default_calibration_times, grouped_calibration)
from voxsurv.stats.decision_curve import DEFAULT_THRESHOLDS, decision_curve
from voxsurv.stats.metrics import ConcordanceResult, TimeDependentAUC, cumulative_dynamic_auc, harrell_c_bootstrap
from voxsurv.stats.risk_groups import MedianSplitResult, high_risk_group, median_cutoff, median_split
from voxsurv.core.errors import InputError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("patient_id", "risk", "time_days", "event")
DEFAULT_TIMES = (365.0, 730.0, 1095.0)


def read_predictions(path, required=REQUIRED_COLUMNS) -> pd.DataFrame:
    """Read a predictions CSV (patient_id, risk, time_days, event; extra columns kept) and check
    it: missing columns, duplicate patients, missing/non-finite values, events not 0/1."""
    path = Path(path)
    if not path.is_file():
        raise InputError("predictions file not found", path=path, fix="check the path")
    df = pd.read_csv(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"missing columns {missing} (has {list(df.columns)})", path=path,
                         fix=f"provide columns {list(required)}")
    dup = df.patient_id[df.patient_id.duplicated()].astype(str).tolist()
    if dup:
        raise InputError(f"duplicate patient_id {dup[:5]}", path=path, fix="one row per patient")
    for col in ("risk", "time_days", "event"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = df.patient_id[~np.isfinite(values.to_numpy(float))].astype(str).tolist()
        if bad:
            raise InputError(f"{col} is missing or not a number", patient_id=bad[0], path=path,
                             fix=f"complete or drop {len(bad)} such patient(s): {bad[:5]}")
        df[col] = values
    bad = df.patient_id[~df.event.isin((0, 1))].astype(str).tolist()
    if bad:
        raise InputError("event must be 0 (censored) or 1 (death)", patient_id=bad[0], path=path)
    bad = df.patient_id[df.time_days < 0].astype(str).tolist()
    if bad:
        raise InputError("negative time_days", patient_id=bad[0], path=path)
    return df


@dataclass
class Evaluation:
    """All results of one evaluation; `metrics` is the JSON-ready summary."""
    predictions: pd.DataFrame
    reference: pd.DataFrame
    times: list[float]
    concordance: ConcordanceResult
    td_auc: list[TimeDependentAUC]
    split: MedianSplitResult | None  # None when all patients fall in one group (see metrics)
    high_risk: np.ndarray
    baseline: BreslowBaseline
    calibration: dict[float, CalibrationResult]
    calibration_skipped: dict[float, str]
    dca: dict[float, pd.DataFrame]
    dca_skipped: dict[float, str]
    metrics: dict = field(default_factory=dict)


def _key(t: float) -> str:
    return f"{t:g}"


def _clean(value):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def _split_metrics(split, cutoff, high_risk, reason) -> dict:
    rule = "risk > median risk of the reference (training) data = high"
    counts = {"cutoff": cutoff, "rule": rule, "n_high": int(high_risk.sum()), "n_low": int((1 - high_risk).sum())}
    if split is None:
        return {"logrank": {"chi2": None, "p": None, "df": None, "reason": reason},
                "hazard_ratio": {"value": None, "ci95": [None, None], "p": None, "reason": reason},
                "median_split": {**counts, "reason": reason}}
    return {
        "logrank": {"chi2": split.logrank.test_statistic, "p": split.logrank.p_value,
                    "df": split.logrank.degrees_of_freedom},
        "hazard_ratio": {"value": split.hazard_ratio.value, "ci95": list(split.hazard_ratio.ci95),
                         "p": split.hazard_ratio.p_value, "ties": split.hazard_ratio.ties,
                         "contrast": "high vs low risk"},
        "median_split": {**counts, "median_os_days": {
            name: {"median": m.median, "ci95": list(m.ci95), "n": m.n, "events": m.events}
            for name, m in (("low", split.median_low), ("high", split.median_high))}}}


def evaluate(predictions: pd.DataFrame, reference: pd.DataFrame, times=DEFAULT_TIMES,
             n_resamples: int = 1000, seed: int = 0, calibration_times=None,
             calibration_groups: int = 5, thresholds=DEFAULT_THRESHOLDS) -> Evaluation:
    """Evaluate `predictions` (patient_id, risk, time_days, event) against the model's
    `reference` (training) predictions: Harrell's C + bootstrap CI, cumulative/dynamic AUC at
    `times` (IPCW from the reference), reference-median split (log-rank, HR, KM medians),
    Breslow S(t|x) from the reference and grouped calibration, decision curves at `times`."""
    t, e, r = (predictions.time_days.to_numpy(float), predictions.event.to_numpy(int),
               predictions.risk.to_numpy(float))
    rt, re_, rr = (reference.time_days.to_numpy(float), reference.event.to_numpy(int),
                   reference.risk.to_numpy(float))
    times = [float(x) for x in times]
    log.info("Harrell's C with %d bootstrap resamples (n = %d)", n_resamples, t.size)
    conc = harrell_c_bootstrap(t, e, r, n_resamples=n_resamples, seed=seed)
    aucs = cumulative_dynamic_auc(t, e, r, times, rt, re_, with_curve=True)
    cutoff = median_cutoff(rr)
    high_risk = high_risk_group(r, cutoff)
    try:
        split, split_reason = median_split(t, e, r, rr), None
    except ValueError as exc:  # InputError (a cohort shift puts everyone on one side), Cox non-convergence
        split, split_reason = None, str(exc)
    baseline = breslow_baseline(rt, re_, rr)
    if calibration_times is None:
        calibration_times = default_calibration_times(t, e)
    calibration, calibration_skipped = {}, {}
    for ct in [float(x) for x in calibration_times]:
        h0 = baseline.cumulative_hazard([ct])[0]
        if not np.isfinite(h0):
            calibration_skipped[ct] = f"t = {ct:g} d is beyond the reference follow-up ({rt.max():g} d)"
            continue
        try:
            calibration[ct] = grouped_calibration(t, e, baseline.survival(ct, r), ct, calibration_groups)
        except InputError as exc:
            calibration_skipped[ct] = str(exc)
    dca, dca_skipped = {}, {}
    for dt in times:
        h0 = baseline.cumulative_hazard([dt])[0]
        if dt >= t.max():
            dca_skipped[dt] = f"t = {dt:g} d is beyond the follow-up of the evaluated data ({t.max():g} d)"
            continue
        if not np.isfinite(h0):
            dca_skipped[dt] = f"t = {dt:g} d is beyond the reference follow-up ({rt.max():g} d)"
            continue
        dca[dt] = decision_curve(t, e, 1.0 - baseline.survival(dt, r), dt, thresholds)

    metrics = {
        "n": int(t.size), "events": int(e.sum()),
        "reference": {"n": int(rt.size), "events": int(re_.sum())},
        "c_index": {"value": conc.value, "ci95": list(conc.ci95), "n_resamples": conc.n_resamples,
                    "seed": conc.seed, "method": conc.method},
        "td_auc": {_key(a.time): a.auc for a in aucs},
        "td_auc_detail": {_key(a.time): {"auc": a.auc, "n_cases": a.n_cases, "n_controls": a.n_controls,
                                         "reason": a.reason} for a in aucs},
        **_split_metrics(split, cutoff, high_risk, split_reason),
        "calibration": {_key(ct): {"mae": c.mae, "n_groups": c.n_groups,
                                   "groups": c.groups.to_dict(orient="records")}
                        for ct, c in calibration.items()},
        "calibration_skipped": {_key(k): v for k, v in calibration_skipped.items()},
        "dca": {_key(dt): d[["threshold", "model", "treat_all"]].to_dict(orient="records")
                for dt, d in dca.items()},
        "dca_skipped": {_key(k): v for k, v in dca_skipped.items()},
        "breslow_baseline": {"fitted_on": "reference", "cumulative_hazard": {
            _key(x): float(baseline.cumulative_hazard([x])[0]) for x in sorted({*times, *calibration})}},
    }
    return Evaluation(predictions, reference, times, conc, aucs, split, high_risk, baseline, calibration,
                      calibration_skipped, dca, dca_skipped, _clean(metrics))


def predictions_with_groups(ev: Evaluation) -> pd.DataFrame:
    """The predictions with the risk group and predicted S(t|x) at each evaluated time."""
    out = ev.predictions.copy()
    out["risk_group"] = np.where(ev.high_risk == 1, "high", "low")
    for t in sorted({*ev.times, *ev.calibration}):
        h0 = ev.baseline.cumulative_hazard([t])[0]
        if np.isfinite(h0):
            out[f"survival_{t:g}d"] = ev.baseline.survival(t, out.risk.to_numpy(float))
    return out
