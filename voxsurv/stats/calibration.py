"""Predicted survival S(t | x) from a risk score, and grouped calibration against Kaplan-Meier.

The baseline is Breslow's estimator fitted on the REFERENCE (training) data, read as a step
function. Written here because lifelines' `CoxPHFitter.predict_survival_function(times=...)`
interpolates its baseline between event times (R and scikit-survival do not), and because the
risk is an external score (e.g. a network output), not a model lifelines fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from voxsurv.stats.kaplan_meier import kaplan_meier
from voxsurv.stats.validation import check_survival
from voxsurv.core.errors import InputError


@dataclass
class BreslowBaseline:
    """Breslow cumulative baseline hazard H0 at each distinct event time of the reference data,
    for the UNCENTRED risk (S(t | x) = exp(-H0(t) exp(risk)))."""
    event_times: np.ndarray
    cumulative_hazard_at_events: np.ndarray
    last_follow_up: float

    def cumulative_hazard(self, t) -> np.ndarray:
        """H0(t) at the last event time <= t (0 before the first event). Times beyond the
        reference follow-up give NaN (the baseline is unknown there)."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        idx = np.searchsorted(self.event_times, t, side="right") - 1
        h = np.where(idx >= 0, self.cumulative_hazard_at_events[np.maximum(idx, 0)], 0.0)
        return np.where(t > self.last_follow_up, np.nan, h)

    def survival(self, t: float, risk) -> np.ndarray:
        """S(t | x) = exp(-H0(t) exp(risk)) for each risk."""
        h0 = float(self.cumulative_hazard([t])[0])
        return np.exp(-h0 * np.exp(np.asarray(risk, dtype=float)))


def breslow_baseline(time, event, risk) -> BreslowBaseline:
    """Breslow's estimator H0(t) = sum over event times s <= t of d(s) / sum_{T_j >= s} exp(risk_j),
    with tied deaths all in the risk set (Breslow's convention; equals R's `basehaz(fit,
    centered=FALSE)` for a coxph fit with ties="breslow", lung data to 1e-15).
    Ref: Breslow, Discussion of Cox (1972), JRSS B 34:216-7.
    """
    time, event, risk = check_survival(time, event, risk, names=("risk",))
    # shift by the max for numerical range; undone below (H0 scales by exp(shift))
    shift = risk.max()
    w = np.exp(risk - shift)
    order = np.argsort(time, kind="mergesort")
    t_sorted, w_sorted = time[order], w[order]
    ut = np.unique(time[event])
    at_risk = np.cumsum(w_sorted[::-1])[::-1]  # sum of weights with T >= t_sorted[i]
    first = np.searchsorted(t_sorted, ut, side="left")
    deaths = np.array([np.count_nonzero(event & (time == u)) for u in ut], dtype=float)
    h = np.cumsum(deaths / at_risk[first]) * np.exp(-shift)
    return BreslowBaseline(ut, h, float(time.max()))


@dataclass
class CalibrationResult:
    """Grouped calibration at time t: per group, mean predicted S(t|x) vs KM observed S(t)."""
    time: float
    n_groups: int
    groups: pd.DataFrame  # group, n, events, predicted, observed, observed_lower, observed_upper
    mae: float
    method: str = ("groups = R cut(S, quantile(S, seq(0, 1, 1/g)), include.lowest=TRUE) of "
                   "predicted S(t|x); observed = KM at t in each group; MAE = mean |pred - obs| "
                   "over groups")

    def summary(self) -> str:
        return (f"calibration at {self.time:g} d, {len(self.groups)} groups: MAE {self.mae:.4f}")


def quantile_groups(values, n_groups: int) -> np.ndarray:
    """Group index 0..k-1 as R's `cut(x, quantile(x, seq(0, 1, 1/g)), include.lowest=TRUE)`:
    type-7 quantile breaks, right-closed intervals, the first closed on the left too. Duplicate
    breaks (tied predictions) are merged, so fewer than `n_groups` groups may result (R's `cut`
    would stop with an error there)."""
    values = np.asarray(values, dtype=float)
    if n_groups < 1:
        raise InputError(f"n_groups must be >= 1, got {n_groups}")
    breaks = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_groups + 1), method="linear"))
    if breaks.size < 2:
        return np.zeros(values.size, dtype=int)
    idx = np.searchsorted(breaks, values, side="left") - 1  # (b_k, b_k+1] -> k
    return np.clip(idx, 0, breaks.size - 2)


def grouped_calibration(time, event, predicted_survival, t: float, n_groups: int = 5) -> CalibrationResult:
    """Calibration of predicted S(t | x) at time `t` in quantile groups of the prediction.

    Convention (reproduces the R reference to 1e-15 on lung: t = 310 d, 5 groups, MAE 0.05227;
    t = 365 d, 10 groups, 0.07080): groups by `quantile_groups`; predicted = mean S(t|x) in the
    group; observed = Kaplan-Meier S(t) in the group (step function, value at the last time <= t)
    with R's log-Greenwood 95% CI; MAE = unweighted mean over groups of |predicted - observed|.
    """
    time, event, pred = check_survival(time, event, predicted_survival, names=("predicted survival",),
                                       need_event=False)
    if (pred < 0).any() or (pred > 1).any():
        raise InputError("predicted survival probabilities must lie in [0, 1]")
    if t >= time.max():
        raise InputError(f"t = {t:g} d is at or beyond the last follow-up time ({time.max():g} d)",
                         fix="choose a calibration time within follow-up")
    group = quantile_groups(pred, n_groups)
    rows = []
    for g in np.unique(group):
        m = group == g
        km = kaplan_meier(time[m], event[m])
        idx = np.searchsorted(km.time, t, side="right") - 1
        obs, lo, hi = (1.0, 1.0, 1.0) if idx < 0 else (km.survival[idx], km.lower[idx], km.upper[idx])
        rows.append({"group": int(g) + 1, "n": int(m.sum()), "events": int(event[m].sum()),
                     "predicted": float(pred[m].mean()), "observed": float(obs),
                     "observed_lower": float(lo), "observed_upper": float(hi),
                     "followed_to_t": bool(time[m].max() >= t)})
    table = pd.DataFrame(rows)
    mae = float(np.mean(np.abs(table["predicted"] - table["observed"])))
    return CalibrationResult(float(t), int(n_groups), table, mae)


def default_calibration_times(time, event, min_at_risk: int = 10) -> list[float]:
    """The paper's two calibration times: the KM median survival time, and the largest event
    time with at least `min_at_risk` patients still at risk ("maximum follow-up")."""
    time, event = check_survival(time, event)
    km = kaplan_meier(time, event)
    below = np.flatnonzero(km.survival <= 0.5)
    times = []
    if below.size:
        times.append(float(km.time[below[0]]))
    ok = (km.n_risk >= min_at_risk) & (km.n_event > 0)
    if ok.any():
        times.append(float(km.time[ok].max()))
    return sorted(set(times))
