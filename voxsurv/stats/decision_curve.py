"""Decision curves for a time-to-event outcome (Vickers et al., BMC Med Inform Decis Mak 2008).

At threshold probability p_t, with "treat" meaning predicted risk 1 - S(t | x) >= p_t:
    NB_model = (1 - S_KM(t | treated)) P(treated) - S_KM(t | treated) P(treated) p_t / (1 - p_t)
    NB_all   = (1 - S_KM(t)) - S_KM(t) p_t / (1 - p_t),   NB_none = 0,
with S_KM the Kaplan-Meier estimate. This is R dcurves' time-to-event definition; on lung
(t = 365 d, p_t = 0.5) it gives model 0.233069697298311 and treat-all 0.177911098000928, R's values.

Written here rather than calling the Python `dcurves` package (1.1.7), which computes the same
numbers (tests compare all thresholds) but raises a TypeError when t is beyond the follow-up,
returns NaN where a treated group's KM has already reached 0 before t, and takes ~2 s per time
point (one lifelines fit per threshold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from voxsurv.stats.validation import check_survival
from voxsurv.core.errors import InputError

DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _km_survival_at(time, event, t) -> float:
    """Kaplan-Meier S(t) (step function at the last time <= t). NaN when the last follow-up is
    before t and S has not reached 0 (unknown beyond follow-up); 0 once everyone has died."""
    if time.size == 0:
        return float("nan")
    ut, inverse = np.unique(time, return_inverse=True)
    deaths = np.bincount(inverse, weights=event.astype(float))
    at_risk = np.bincount(inverse)[::-1].cumsum()[::-1]
    surv = np.cumprod(1.0 - deaths / at_risk)
    idx = np.searchsorted(ut, t, side="right") - 1
    if idx < 0:
        return 1.0
    if t > ut[-1] and surv[-1] > 0:
        return float("nan")
    return float(surv[idx])


def net_benefit_treat_all(time, event, t: float, thresholds) -> np.ndarray:
    """NB of treating everyone: (1 - S_KM(t)) - S_KM(t) p_t / (1 - p_t)."""
    time, event = check_survival(time, event, need_event=False)
    thresholds = np.asarray(thresholds, dtype=float)
    s = _km_survival_at(time, event, t)
    return (1.0 - s) - s * thresholds / (1.0 - thresholds)


def decision_curve(time, event, risk_at_t, t: float, thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Net benefit of treating when `risk_at_t` (= 1 - S(t|x), a probability) >= threshold.

    Returns one row per threshold: threshold, model, treat_all, treat_none. The model's net
    benefit is 0 where nobody is treated and NaN where the treated group's KM is unknown at t.
    """
    time, event, risk = check_survival(time, event, risk_at_t, names=("risk at t",),
                                       need_event=False)
    if (risk < 0).any() or (risk > 1).any():
        raise InputError("decision curves need predicted risks in [0, 1]",
                         fix="pass 1 - S(t|x), not the raw risk score")
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=float))
    if ((thresholds <= 0) | (thresholds >= 1)).any():
        raise InputError("thresholds must lie strictly between 0 and 1")
    n = time.size
    model = np.empty(thresholds.size)
    for i, p in enumerate(thresholds):
        treated = risk >= p
        share = treated.sum() / n
        if share == 0:
            model[i] = 0.0
            continue
        s = _km_survival_at(time[treated], event[treated], t)
        model[i] = (1.0 - s) * share - s * share * p / (1.0 - p)
    return pd.DataFrame({"threshold": thresholds, "model": model,
                         "treat_all": net_benefit_treat_all(time, event, t, thresholds),
                         "treat_none": 0.0})
