"""Discrimination of a risk score: Harrell's C with a bootstrap CI, and time-dependent
cumulative/dynamic AUC with IPCW. Convention throughout: a HIGHER risk means SHORTER survival.

Both wrap scikit-survival, which equals R for these estimators (checked on R's `lung` data,
R 4.2.2): `concordance_index_censored` = `survival::concordance(..., reverse=TRUE)` and
`cumulative_dynamic_auc` = `riskRegression::Score` with a KM censoring model (to ~1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voxsurv.stats.validation import check_survival
from voxsurv.core.errors import InputError


def harrell_c(time, event, risk) -> float:
    """Harrell's concordance index of `risk` (higher = shorter survival).

    A pair is comparable when the shorter time is an event; an event and a censoring at the
    same time are comparable (the censored patient outlived the event); tied event times are
    not. Tied risks count 1/2. This is `survival::concordance(Surv(time, event) ~ risk,
    reverse=TRUE)` in R and scikit-survival's `concordance_index_censored`.
    Ref: Harrell et al., Stat Med 1996;15:361-87.
    """
    from sksurv.metrics import concordance_index_censored

    time, event, risk = check_survival(time, event, risk, names=("risk",))
    return float(concordance_index_censored(event, time, risk)[0])


def _concordance_matrices(time, event, risk):
    """(comparable, concordant) n x n matrices, same rules as `harrell_c`: comparable[i, j]
    when i has an event and (t_i < t_j, or t_i == t_j and j is censored); concordant counts
    1 for risk_i > risk_j and 1/2 for ties."""
    ti, tj = time[:, None], time[None, :]
    comparable = event[:, None] & ((ti < tj) | ((ti == tj) & ~event[None, :]))
    ri, rj = risk[:, None], risk[None, :]
    score = (ri > rj) + 0.5 * (ri == rj)
    return comparable.astype(float), comparable * score


@dataclass
class ConcordanceResult:
    """Harrell's C with a percentile bootstrap CI (resampling patients)."""
    value: float
    ci95: tuple[float, float]
    n_resamples: int
    seed: int
    n: int
    events: int
    method: str = ("Harrell's C (higher risk = shorter survival; tied risks 1/2), "
                   "percentile bootstrap over patients")

    def summary(self) -> str:
        return (f"Harrell's C = {self.value:.3f} (95% CI {self.ci95[0]:.3f}-{self.ci95[1]:.3f}; "
                f"{self.n_resamples} bootstrap resamples, n = {self.n}, events = {self.events})")


def harrell_c_bootstrap(time, event, risk, n_resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> ConcordanceResult:
    """Harrell's C and its percentile bootstrap CI, as R's `boot` + `boot.ci(type="perc")`.

    Patients are resampled with replacement (`n_resamples` times, `numpy.random.default_rng(seed)`).
    Vectorised: a resample is a vector of multiplicities w, and C = w'Aw / w'Bw with A the
    concordant and B the comparable pair matrix (a patient's copies are never comparable with
    each other, as in R). Quantiles: numpy's default linear interpolation (R's `boot.ci` uses
    its own order-statistic interpolation; the difference is far below the Monte Carlo error).
    """
    time, event, risk = check_survival(time, event, risk, names=("risk",))
    if n_resamples < 1:
        raise InputError(f"n_resamples must be >= 1, got {n_resamples}")
    value = harrell_c(time, event, risk)
    comparable, concordant = _concordance_matrices(time, event, risk)
    rng = np.random.default_rng(seed)
    n = time.size
    stats = np.empty(n_resamples)
    chunk = max(1, min(n_resamples, 2_000_000 // max(n * n, 1) + 1, 500))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        w = np.zeros((stop - start, n))
        np.add.at(w, (np.arange(stop - start)[:, None], idx), 1.0)
        num = np.einsum("bi,ij,bj->b", w, concordant, w)
        den = np.einsum("bi,ij,bj->b", w, comparable, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats[start:stop] = num / den
    stats = stats[np.isfinite(stats)]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return ConcordanceResult(value=value, ci95=(float(lo), float(hi)), n_resamples=n_resamples,
                             seed=seed, n=int(n), events=int(event.sum()))


@dataclass
class TimeDependentAUC:
    """Cumulative/dynamic AUC at one time point. `auc` is NaN when it cannot be estimated and
    `reason` then says why (e.g. beyond follow-up)."""
    time: float
    auc: float
    n_cases: int
    n_controls: int
    reason: str | None = None
    fpr: np.ndarray | None = field(default=None, repr=False)
    tpr: np.ndarray | None = field(default=None, repr=False)


def _auc_not_estimable(time, test_time, test_event, ref_time):
    """Reason why the AUC at `time` is not estimable, or None."""
    if time >= test_time.max():
        return (f"t = {time:g} d is beyond the follow-up of the evaluated data "
                f"(last time {test_time.max():g} d)")
    if time > ref_time.max():
        return (f"t = {time:g} d is beyond the follow-up of the reference data "
                f"(last time {ref_time.max():g} d): censoring distribution unknown")
    if not ((test_time <= time) & test_event).any():
        return f"no events by t = {time:g} d"
    if not (test_time > time).any():
        return f"no patient event-free beyond t = {time:g} d"
    return None


def cumulative_dynamic_auc(time, event, risk, times, reference_time=None, reference_event=None,
                           with_curve: bool = False) -> list[TimeDependentAUC]:
    """Time-dependent cumulative/dynamic AUC of `risk` at each of `times` (days).

    Cases: event with T <= t; controls: T > t. Cases are weighted by the inverse probability
    of censoring 1/G(T_i), with G the Kaplan-Meier estimate of the censoring distribution of the
    REFERENCE (training) data (default: the evaluated data itself). Computed by scikit-survival's
    `cumulative_dynamic_auc` (equals riskRegression::Score, KM censoring, to ~1e-4; timeROC
    counts T < t and differs). Ref: Uno et al., JASA 2007; Hung & Chiang, Can J Stat 2010.

    A time point that cannot be estimated (beyond follow-up of either data set, no case, no
    control) gives `auc = NaN` with a `reason`, not an exception.
    """
    from sksurv.metrics import cumulative_dynamic_auc as sk_auc
    from sksurv.util import Surv

    time, event, risk = check_survival(time, event, risk, names=("risk",))
    if reference_time is None:
        reference_time, reference_event = time, event
    reference_time, reference_event = check_survival(reference_time, reference_event)
    survival_train = Surv.from_arrays(reference_event, reference_time)
    results = []
    for t in np.atleast_1d(np.asarray(times, dtype=float)):
        n_cases = int(((time <= t) & event).sum())
        n_controls = int((time > t).sum())
        reason = _auc_not_estimable(t, time, event, reference_time)
        if reason is not None:
            results.append(TimeDependentAUC(float(t), float("nan"), n_cases, n_controls, reason))
            continue
        # Administrative censoring just after t changes no case or control, but keeps
        # scikit-survival from refusing test events later than the reference follow-up, which
        # do not enter the AUC at t.
        t_next = time[time > t].min()
        test_time = np.minimum(time, t_next)
        test_event = event & (time <= t)
        survival_test = Surv.from_arrays(test_event, test_time)
        try:
            auc, _ = sk_auc(survival_train, survival_test, risk, [t])
        except ValueError as exc:  # e.g. censoring survival function is zero
            results.append(TimeDependentAUC(float(t), float("nan"), n_cases, n_controls,
                                            f"not estimable at t = {t:g} d: {exc}"))
            continue
        res = TimeDependentAUC(float(t), float(auc[0]), n_cases, n_controls)
        if with_curve:
            res.fpr, res.tpr = _roc_curve(survival_train, test_time, test_event, risk, t)
        results.append(res)
    return results


def _roc_curve(survival_train, test_time, test_event, risk, t):
    """The IPCW ROC curve whose area scikit-survival reports (same weights, same tie rule:
    one point per distinct risk value), for plotting."""
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    cens = CensoringDistributionEstimator().fit(survival_train)
    ipcw = cens.predict_ipcw(Surv.from_arrays(test_event, test_time))
    case = (test_time <= t) & test_event
    control = test_time > t
    order = np.argsort(-risk, kind="mergesort")
    r = risk[order]
    tp = np.cumsum((case * ipcw)[order])
    fp = np.cumsum(control[order])
    last = np.r_[r[1:] != r[:-1], True]  # last position of each distinct risk value
    tpr = np.r_[0.0, tp[last] / tp[-1]]
    fpr = np.r_[0.0, fp[last] / fp[-1]]
    return fpr, tpr
