"""Paired comparison of two risk scores on the same patients: the difference of Harrell's C
with a paired percentile bootstrap CI.

Why paired: two models scored on the same 79 test patients have strongly correlated C-indices;
two separate CIs overlap even when one model is consistently better. Resampling the PATIENTS
once per replicate and scoring both models on that same resample keeps the correlation, so the
CI of the difference is the honest one (Harrell's `rcorrp.cens` idea; as R's `boot` on a
statistic returning C_a - C_b, with `boot.ci(type = "perc")`).

Convention (stated once, used everywhere in the study):
  * delta = C(risk_a) - C(risk_b), Harrell's C as `voxsurv.stats.metrics.harrell_c` (higher risk =
    shorter survival; tied risks count 1/2; tied event times not comparable);
  * `n_resamples` (default 1000) resamples of the patients with replacement, drawn at once as
    `numpy.random.default_rng(seed).integers(0, n, size=(n_resamples, n))`;
  * a patient's copies are never comparable with each other (as R with duplicated rows);
  * percentile CI (numpy's linear quantile interpolation) over the finite replicates;
  * `p_value`: two-sided bootstrap p, 2 x min(share of delta* <= 0, share of delta* >= 0),
    capped at 1 (a rough guide: the CI is the result).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxsurv.stats.metrics import _concordance_matrices, harrell_c
from voxsurv.stats.validation import check_survival
from voxsurv.core.errors import InputError


@dataclass
class PairedConcordanceResult:
    """C of two risk scores on the same patients and their paired bootstrap difference."""
    c_a: float
    c_b: float
    delta: float
    ci95: tuple[float, float]
    p_value: float
    n_resamples: int
    seed: int
    n: int
    events: int
    label_a: str = "a"
    label_b: str = "b"
    method: str = ("C(a) - C(b), Harrell's C; paired percentile bootstrap resampling patients "
                   "(both scores on the same resample)")

    def summary(self) -> str:
        return (f"C({self.label_a}) - C({self.label_b}) = {self.delta:+.3f} "
                f"(95% CI {self.ci95[0]:+.3f} to {self.ci95[1]:+.3f}; C {self.c_a:.3f} vs {self.c_b:.3f}; "
                f"{self.n_resamples} paired bootstrap resamples, n = {self.n}, events = {self.events})")

    def to_dict(self) -> dict:
        return {"a": self.label_a, "b": self.label_b, "c_a": self.c_a, "c_b": self.c_b,
                "delta": self.delta, "ci95": list(self.ci95), "p_value": self.p_value,
                "excludes_zero": bool(self.ci95[0] > 0 or self.ci95[1] < 0),
                "n_resamples": self.n_resamples, "seed": self.seed, "n": self.n, "events": self.events,
                "method": self.method}


def bootstrap_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """The (n_resamples, n) patient indices of every replicate (the documented draw)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def paired_bootstrap_c(time, event, risk_a, risk_b, n_resamples: int = 1000, seed: int = 0,
                       level: float = 0.95, label_a: str = "a", label_b: str = "b") -> PairedConcordanceResult:
    """C(risk_a) - C(risk_b) on the same patients with a paired percentile bootstrap CI.

    Vectorised like `voxsurv.stats.metrics.harrell_c_bootstrap`: a replicate is a vector of patient
    multiplicities w, and C = w'Aw / w'Bw with A the concordant and B the comparable pair matrix
    of each score (B is shared: it depends on time and event only).
    """
    time, event, risk_a, risk_b = check_survival(time, event, risk_a, risk_b, names=(label_a, label_b))
    if n_resamples < 1:
        raise InputError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be in (0, 1), got {level}")
    c_a, c_b = harrell_c(time, event, risk_a), harrell_c(time, event, risk_b)
    comparable, concordant_a = _concordance_matrices(time, event, risk_a)
    _, concordant_b = _concordance_matrices(time, event, risk_b)
    n = time.size
    idx = bootstrap_indices(n, n_resamples, seed)
    deltas = np.empty(n_resamples)
    chunk = max(1, min(n_resamples, 2_000_000 // max(n * n, 1) + 1, 500))
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        w = np.zeros((stop - start, n))
        np.add.at(w, (np.arange(stop - start)[:, None], idx[start:stop]), 1.0)
        den = np.einsum("bi,ij,bj->b", w, comparable, w)
        with np.errstate(invalid="ignore", divide="ignore"):
            deltas[start:stop] = (np.einsum("bi,ij,bj->b", w, concordant_a, w)
                                  - np.einsum("bi,ij,bj->b", w, concordant_b, w)) / den
    deltas = deltas[np.isfinite(deltas)]
    if deltas.size == 0:
        raise InputError("no bootstrap resample had a comparable pair", fix="need more patients with events")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(deltas, [alpha, 1.0 - alpha])
    p = min(1.0, 2.0 * min(np.mean(deltas <= 0.0), np.mean(deltas >= 0.0)))
    return PairedConcordanceResult(c_a=c_a, c_b=c_b, delta=c_a - c_b, ci95=(float(lo), float(hi)),
                                   p_value=float(p), n_resamples=n_resamples, seed=seed, n=int(n),
                                   events=int(event.sum()), label_a=label_a, label_b=label_b)
