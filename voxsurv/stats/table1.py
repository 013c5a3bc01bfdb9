"""Patient-characteristics table ("Table 1") by cohort or split, with the tests R users expect.

- continuous: median (IQR); two groups: Mann-Whitney U / Wilcoxon rank-sum as R's `wilcox.test`
  (exact if both groups < 50 and no ties, else normal approximation with continuity correction;
  the statistic is R's W = U of the first group); more groups: Kruskal-Wallis (ties corrected).
- categorical: n (%) of the non-missing in each group; Pearson chi-square (Yates-corrected for
  2 x 2, as R's `chisq.test`), or Fisher's exact test when any expected count is < 5: exact for
  2 x 2 (scipy) and 2 x C (full enumeration here, R's `fisher.test` rule), otherwise scipy's
  Monte Carlo p-value, labelled so in the table.
Ref: Hollander & Wolfe, Nonparametric Statistical Methods; Agresti, Categorical Data Analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

from voxsurv.core.errors import InputError

#: Tables with more cells than this are not enumerated (Fisher falls back to Monte Carlo).
MAX_ENUMERATED_TABLES = 2_000_000
MONTE_CARLO_RESAMPLES = 100_000


@dataclass
class TestResult:
    test_statistic: float
    p_value: float
    method: str

    def summary(self) -> str:
        return f"{self.method}: statistic {self.test_statistic:.4g}, P = {self.p_value:.3g}"


def mann_whitney(x, y) -> TestResult:
    """Two-sided Wilcoxon rank-sum / Mann-Whitney U test as R's `wilcox.test(x, y)`."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        raise InputError("Mann-Whitney test needs values in both groups")
    pooled = np.r_[x, y]
    exact = x.size < 50 and y.size < 50 and np.unique(pooled).size == pooled.size
    r = stats.mannwhitneyu(x, y, alternative="two-sided", use_continuity=True,
                           method="exact" if exact else "asymptotic")
    label = "Mann-Whitney U (exact)" if exact else "Mann-Whitney U (normal approx., continuity corr.)"
    return TestResult(float(r.statistic), float(r.pvalue), label)


def kruskal_wallis(*groups) -> TestResult:
    """Kruskal-Wallis rank-sum test (chi-square approximation, ties corrected; R `kruskal.test`)."""
    clean = [np.asarray(g, dtype=float) for g in groups]
    clean = [g[~np.isnan(g)] for g in clean]
    if sum(g.size > 0 for g in clean) < 2:
        raise InputError("Kruskal-Wallis test needs values in at least two groups")
    r = stats.kruskal(*[g for g in clean if g.size])
    return TestResult(float(r.statistic), float(r.pvalue), "Kruskal-Wallis")


def _log_table_probability(first_row, col_sums, n, r1):
    """log P(first row | margins) for 2 x C tables (multivariate hypergeometric)."""
    lc = lambda a, b: gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)  # noqa: E731
    return lc(col_sums, first_row).sum(axis=-1) - lc(n, r1)


def fisher_exact_2xc(table) -> TestResult:
    """Exact two-sided Fisher test for a 2 x C table (either orientation), as R's `fisher.test`:
    P = sum of the probabilities of all tables with the same margins that are no more likely
    than the observed one (relative tolerance 1e-7). Full enumeration; raises if the number of
    tables exceeds MAX_ENUMERATED_TABLES."""
    t = np.asarray(table, dtype=int)
    if t.ndim != 2 or 2 not in t.shape:
        raise InputError(f"fisher_exact_2xc needs a 2 x C table, got shape {t.shape}")
    if t.shape[0] != 2:
        t = t.T
    t = t[:, t.sum(axis=0) > 0]
    cols = t.sum(axis=0)
    r1, n = int(t[0].sum()), int(t.sum())
    # enumerate first rows column by column, keeping only partial sums that can still reach r1
    partial = np.zeros((1, 0), dtype=int)
    remaining = cols[::-1].cumsum()[::-1]
    for j, c in enumerate(cols):
        sums = partial.sum(axis=1)
        choices = np.arange(c + 1)
        cand_sum = sums[:, None] + choices[None, :]
        rest = remaining[j + 1] if j + 1 < cols.size else 0
        ok = (cand_sum <= r1) & (cand_sum + rest >= r1)
        rows, ks = np.nonzero(ok)
        if rows.size > MAX_ENUMERATED_TABLES:
            raise InputError(f"too many tables to enumerate ({rows.size}+)",
                             fix="use a Monte Carlo p-value")
        partial = np.column_stack([partial[rows], choices[ks]])
    logp = _log_table_probability(partial, cols, n, r1)
    log_obs = _log_table_probability(t[0][None, :], cols, n, r1)[0]
    p = np.exp(logp)
    p_value = float(min(1.0, p[logp <= log_obs + np.log1p(1e-7)].sum()))
    return TestResult(float(np.exp(log_obs)), p_value, "Fisher exact")


def fisher_exact(table, seed: int = 0) -> TestResult:
    """Fisher's exact test: exact for 2 x 2 and 2 x C; Monte Carlo (labelled) for larger tables."""
    t = np.asarray(table, dtype=int)
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if min(t.shape) < 2:
        return TestResult(float("nan"), 1.0, "Fisher exact (one row or column: no test)")
    if t.shape == (2, 2):
        r = stats.fisher_exact(t)
        return TestResult(float(r.statistic), float(r.pvalue), "Fisher exact")
    if 2 in t.shape:
        try:
            return fisher_exact_2xc(t)
        except InputError:
            pass
    method = stats.MonteCarloMethod(n_resamples=MONTE_CARLO_RESAMPLES, rng=np.random.default_rng(seed))
    r = stats.fisher_exact(t, method=method)
    return TestResult(float(r.statistic), float(r.pvalue),
                      f"Fisher (Monte Carlo, {MONTE_CARLO_RESAMPLES} tables)")


def categorical_test(table) -> TestResult:
    """Chi-square (Yates for 2 x 2, as R), or Fisher when any expected count is < 5."""
    t = np.asarray(table, dtype=float)
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if min(t.shape) < 2:
        return TestResult(float("nan"), float("nan"), "no test (one level)")
    expected = stats.contingency.expected_freq(t)
    if (expected < 5).any():
        return fisher_exact(t.astype(int))
    r = stats.chi2_contingency(t, correction=True)
    return TestResult(float(r.statistic), float(r.pvalue), "chi-square")


def _is_categorical(series: pd.Series, max_levels: int) -> bool:
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return True
    return series.dropna().nunique() <= max_levels


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def characteristics_table(data: pd.DataFrame, by: str, variables: list[str] | None = None,
                          categorical: list[str] | None = None, max_levels: int = 6) -> pd.DataFrame:
    """One row per continuous variable (median (IQR)) and per categorical level (n (%)),
    a column per group and "Overall", plus P and test. Numeric columns with <= `max_levels`
    distinct values count as categorical unless listed otherwise. Missing values are counted
    in a "missing" row and left out of percentages and tests."""
    if by not in data.columns:
        raise InputError(f"grouping column '{by}' not in the table (columns: {list(data.columns)})")
    data = data[data[by].notna()]
    groups = sorted(data[by].unique(), key=str)
    if len(groups) < 2:
        raise InputError(f"'{by}' has only one value ({groups}); nothing to compare")
    if variables is None:
        variables = [c for c in data.columns if c != by]
    categorical = set(categorical or [])
    header = [f"{g} (n={int((data[by] == g).sum())})" for g in groups] + [f"Overall (n={len(data)})"]
    rows = []
    for var in variables:
        col = data[var]
        parts = [col[data[by] == g] for g in groups] + [col]
        if var in categorical or _is_categorical(col, max_levels):
            levels = sorted(col.dropna().unique(), key=lambda v: (str(type(v)), v))
            counts = np.array([[int((p == lev).sum()) for lev in levels] for p in parts[:-1]])
            test = categorical_test(counts)
            rows.append({"variable": var, "level": "", **{h: "" for h in header},
                         "p_value": _fmt_p(test.p_value), "test": test.method})
            for lev in levels:
                cells = {}
                for h, p in zip(header, parts):
                    k, n = int((p == lev).sum()), int(p.notna().sum())
                    cells[h] = f"{k} ({100.0 * k / n:.1f}%)" if n else "0"
                rows.append({"variable": var, "level": str(lev), **cells, "p_value": "", "test": ""})
        else:
            values = [pd.to_numeric(p, errors="coerce") for p in parts]
            groups_vals = [v.dropna().to_numpy(float) for v in values[:-1]]
            test = (mann_whitney(*groups_vals) if len(groups) == 2 else kruskal_wallis(*groups_vals))
            cells = {}
            for h, v in zip(header, values):
                v = v.dropna()
                cells[h] = (f"{_fmt(v.median())} ({_fmt(v.quantile(0.25))}-{_fmt(v.quantile(0.75))})"
                            if len(v) else "")
            rows.append({"variable": var, "level": "median (IQR)", **cells,
                         "p_value": _fmt_p(test.p_value), "test": test.method})
        if col.isna().any():
            rows.append({"variable": var, "level": "missing",
                         **{h: str(int(p.isna().sum())) for h, p in zip(header, parts)},
                         "p_value": "", "test": ""})
    return pd.DataFrame(rows, columns=["variable", "level", *header, "p_value", "test"])


def table_to_html(table: pd.DataFrame, title: str = "Patient characteristics") -> str:
    """A standalone HTML page for the table (escaped, one header row)."""
    body = table.to_html(index=False, escape=True, border=0, classes="table1", na_rep="")
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" + title + "</title>"
            "<style>body{font-family:sans-serif}table.table1{border-collapse:collapse}"
            "table.table1 td,table.table1 th{padding:3px 10px;border-bottom:1px solid #ddd;"
            "text-align:left}</style></head><body><h1>" + title + "</h1>" + body
            + "<p>Continuous: median (IQR), Mann-Whitney U (2 groups) or Kruskal-Wallis. "
            "Categorical: n (% of non-missing), chi-square, or Fisher's exact test when any "
            "expected count is &lt; 5.</p></body></html>\n")
