"""High/low risk groups: split at the REFERENCE (training) median risk, compare with the
log-rank test, the Cox hazard ratio of the group indicator, and KM medians per group.

Splitting at the training median (not the test median) keeps the cut-off fixed before the test
data are seen, as a clinical rule would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxsurv.stats.kaplan_meier import MedianSurvival, median_survival
from voxsurv.stats.validation import check_survival
from voxsurv.core.errors import InputError


def median_cutoff(reference_risk) -> float:
    """Median of the reference (training) risks: numpy's median (mean of the two middle values
    for an even count, as R's `median`)."""
    r = np.asarray(reference_risk, dtype=float).ravel()
    if r.size == 0 or not np.isfinite(r).all():
        raise InputError("reference risks are empty or not finite",
                         fix="pass the training-set risks of the same model")
    return float(np.median(r))


def high_risk_group(risk, cutoff: float) -> np.ndarray:
    """1 = high-risk group (risk > cutoff), 0 = low-risk group (risk <= cutoff). (Not the inference
    bundle's three tiers: voxsurv.inference.bundle_info.risk_tier.)"""
    return (np.asarray(risk, dtype=float) > cutoff).astype(int)


@dataclass
class LogRankResult:
    test_statistic: float
    p_value: float
    degrees_of_freedom: int
    name: str = "log-rank test"

    def summary(self) -> str:
        return (f"{self.name}: chi-square {self.test_statistic:.3f} on {self.degrees_of_freedom} df, "
                f"P = {self.p_value:.3g}")


def logrank(time, event, group) -> LogRankResult:
    """Log-rank test of equal survival across the levels of `group` (R `survdiff`, rho = 0),
    computed by lifelines' `multivariate_logrank_test` (equals R: lung ~ sex, chi-square 10.3267)."""
    from lifelines.statistics import multivariate_logrank_test

    time, event = check_survival(time, event)
    group = np.asarray(group).ravel()
    if group.size != time.size:
        raise InputError(f"group has {group.size} values but time has {time.size}")
    if np.unique(group).size < 2:
        raise InputError("log-rank test needs at least two groups; all patients are in one",
                         fix="check the split cut-off against the risks")
    r = multivariate_logrank_test(time, group, event)
    return LogRankResult(float(r.test_statistic), float(r.p_value), int(r.degrees_of_freedom))


@dataclass
class HazardRatioResult:
    value: float
    ci95: tuple[float, float]
    p_value: float
    ties: str = "efron"

    def summary(self) -> str:
        return (f"HR {self.value:.2f} (95% CI {self.ci95[0]:.2f}-{self.ci95[1]:.2f}), "
                f"Wald P = {self.p_value:.3g} (Cox, {self.ties} ties)")


def hazard_ratio(time, event, group) -> HazardRatioResult:
    """Hazard ratio of group 1 vs group 0 from a Cox model on the 0/1 indicator, Wald 95% CI.

    lifelines' CoxPHFitter (Efron ties, R's `coxph` default; unpenalised). R on lung ~ sex gives
    HR 0.588 (0.4237-0.8160), as this does.
    """
    import pandas as pd
    from lifelines import CoxPHFitter

    time, event, group = check_survival(time, event, group, names=("group",))
    if not np.isin(group, (0.0, 1.0)).all() or np.unique(group).size < 2:
        raise InputError("hazard ratio needs a 0/1 group indicator with both groups present")
    df = pd.DataFrame({"time": time, "event": event.astype(int), "group": group})
    cph = CoxPHFitter().fit(df, "time", "event")
    row = cph.summary.loc["group"]
    return HazardRatioResult(float(row["exp(coef)"]),
                             (float(row["exp(coef) lower 95%"]), float(row["exp(coef) upper 95%"])),
                             float(row["p"]))


@dataclass
class MedianSplitResult:
    """Everything the KM figure and the report say about the high/low split."""
    cutoff: float
    high_risk: np.ndarray
    logrank: LogRankResult
    hazard_ratio: HazardRatioResult
    median_low: MedianSurvival
    median_high: MedianSurvival

    def summary(self) -> str:
        return (f"split at reference median risk {self.cutoff:.4g}: "
                f"high n={int(self.high_risk.sum())}, low n={int((1 - self.high_risk).sum())}; "
                f"{self.hazard_ratio.summary()}; {self.logrank.summary()}")


def median_split(time, event, risk, reference_risk) -> MedianSplitResult:
    """High (risk > reference median) vs low risk: log-rank, HR (high vs low), KM medians."""
    time, event, risk = check_survival(time, event, risk, names=("risk",))
    cutoff = median_cutoff(reference_risk)
    high_risk = high_risk_group(risk, cutoff)
    if high_risk.min() == high_risk.max():
        raise InputError(f"all patients fall in one risk group at the reference median {cutoff:g}",
                         fix="check that the predictions and the reference come from the same model")
    return MedianSplitResult(cutoff, high_risk, logrank(time, event, high_risk),
                             hazard_ratio(time, event, high_risk),
                             median_survival(time[high_risk == 0], event[high_risk == 0]),
                             median_survival(time[high_risk == 1], event[high_risk == 1]))
