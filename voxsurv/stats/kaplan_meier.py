"""Kaplan-Meier curves, their confidence bands and median survival, as R's `survfit`.

Written here (glue-sized) because R's defaults are not what the Python libraries give:
R's `survfit` uses conf.type = "log" (CI = S exp(+-z se), se of the cumulative hazard by
Greenwood), and `quantile.survfit` reads the median's CI where the band crosses 0.5; lifelines
and scikit-survival give log(-log) bands, so their median CIs differ from R's (lung data, males:
lifelines 210-306 d, R 212-310 d). The KM estimate itself is the standard product limit.
Ref: Therneau, survival package, `survfit.formula` and `quantile.survfit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from voxsurv.stats.validation import check_survival


@dataclass
class KaplanMeier:
    """Product-limit estimate at each distinct observed time (events and censorings)."""
    time: np.ndarray
    n_risk: np.ndarray
    n_event: np.ndarray
    n_censor: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float

    def at(self, t) -> np.ndarray:
        """S(t), right-continuous step function (S = 1 before the first time)."""
        return _step(self.time, self.survival, t, before=1.0)

    def n_at_risk(self, t) -> np.ndarray:
        """Number still at risk at time t (T >= t), as the numbers-at-risk row of a KM plot."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        idx = np.searchsorted(self.time, t, side="left")
        total = np.r_[self.n_risk, 0]
        return total[idx]


def _step(x, y, t, before):
    t = np.atleast_1d(np.asarray(t, dtype=float))
    idx = np.searchsorted(x, t, side="right") - 1
    return np.where(idx >= 0, y[np.maximum(idx, 0)], before)


def kaplan_meier(time, event, level: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier estimate with R's default log-transformed Greenwood band
    (`survfit(..., conf.type="log")`): S exp(+-z sqrt(sum d / (n (n - d)))), upper capped at 1;
    undefined (NaN) once S reaches 0."""
    time, event = check_survival(time, event, need_event=False)
    ut, inverse = np.unique(time, return_inverse=True)
    n_event = np.bincount(inverse, weights=event.astype(float)).astype(int)
    n_total = np.bincount(inverse).astype(int)
    n_risk = n_total[::-1].cumsum()[::-1]
    surv = np.cumprod(1.0 - n_event / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_h = np.cumsum(np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0))
        se = np.sqrt(var_h)
        z = norm.ppf(0.5 + level / 2.0)
        lower = surv * np.exp(-z * se)
        upper = np.minimum(1.0, surv * np.exp(z * se))
    dead = surv <= 0
    lower[dead | ~np.isfinite(lower)] = np.nan
    upper[dead | ~np.isfinite(upper)] = np.nan
    return KaplanMeier(ut, n_risk, n_event, n_total - n_event, surv, lower, upper, level)


def _quantile_time(time, curve, p=0.5, tol=np.sqrt(np.finfo(float).eps)):
    """First time the curve is <= p (R's `quantile.survfit` rule): if the curve sits exactly at
    p on a flat stretch, the midpoint between its start and the next drop; NaN if never."""
    ok = np.isfinite(curve)
    x, y = time[ok], curve[ok]
    hit = np.flatnonzero(y <= p + tol)
    if hit.size == 0:
        return float("nan")
    i = hit[0]
    if abs(y[i] - p) < tol:
        below = np.flatnonzero(y < y[i] - tol)
        if below.size:
            return float((x[i] + x[below[0]]) / 2.0)
    return float(x[i])


@dataclass
class MedianSurvival:
    median: float
    ci95: tuple[float, float]
    n: int
    events: int

    def summary(self) -> str:
        f = lambda v: "NR" if not np.isfinite(v) else f"{v:g}"  # noqa: E731 (NR = not reached)
        return f"median {f(self.median)} d (95% CI {f(self.ci95[0])}-{f(self.ci95[1])})"


def median_survival(time, event, level: float = 0.95) -> MedianSurvival:
    """Median survival with R's CI: the lower limit is where the LOWER band crosses 0.5, the
    upper limit where the UPPER band does (NaN = not reached), as `print(survfit(...))`."""
    km = kaplan_meier(time, event, level)
    return MedianSurvival(_quantile_time(km.time, km.survival),
                          (_quantile_time(km.time, km.lower), _quantile_time(km.time, km.upper)),
                          int(km.n_risk[0]), int(km.n_event.sum()))
