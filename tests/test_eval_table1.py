"""Issue 6: patient-characteristics table and its tests, equal to R."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from voxsurv.stats.table1 import (categorical_test, characteristics_table, fisher_exact, fisher_exact_2xc,
                             kruskal_wallis, mann_whitney)


def test_mann_whitney_age_by_sex_equals_r_wilcox_test():
    from lifelines.datasets import load_lung

    d = load_lung()
    r = mann_whitney(d.age[d.sex == 1], d.age[d.sex == 2])
    assert r.test_statistic == 7136.5  # R: W = 7136.5
    assert r.p_value == pytest.approx(0.0570062814517115, abs=1e-12)
    assert "continuity" in r.method


def _brute_force_fisher(table):
    """Enumerate every 2 x C table with the same margins by itertools (independent of the
    vectorised enumeration under test)."""
    t = np.asarray(table)
    cols, r1, n = t.sum(0), t[0].sum(), t.sum()
    prob = lambda row: math.prod(math.comb(int(c), int(x)) for c, x in zip(cols, row)) / math.comb(int(n), int(r1))  # noqa: E731
    p_obs = prob(t[0])
    total = 0.0
    for row in itertools.product(*[range(int(c) + 1) for c in cols]):
        if sum(row) == r1 and prob(row) <= p_obs * (1 + 1e-7):
            total += prob(row)
    return total


@pytest.mark.parametrize("table", [[[2, 5, 1], [6, 1, 3]], [[12, 5, 1, 3], [6, 10, 3, 0]],
                                   [[1, 0, 4], [3, 3, 3]]])
def test_fisher_2xc_is_exact(table):
    r = fisher_exact_2xc(table)
    assert r.p_value == pytest.approx(_brute_force_fisher(table), rel=1e-10)
    assert fisher_exact_2xc(np.asarray(table).T).p_value == pytest.approx(r.p_value, rel=1e-12)
    assert r.method == "Fisher exact"


def test_fisher_2x2_equals_r_tea_tasting():
    # R: fisher.test(matrix(c(3, 1, 1, 3), 2))$p.value = 0.4857
    assert fisher_exact([[3, 1], [1, 3]]).p_value == pytest.approx(0.4857142857, abs=1e-9)
    assert fisher_exact_2xc([[3, 1], [1, 3]]).p_value == pytest.approx(0.4857142857, abs=1e-9)


def test_larger_tables_are_labelled_monte_carlo():
    r = fisher_exact([[3, 1, 0], [1, 3, 2], [0, 2, 4]])
    assert "Monte Carlo" in r.method and 0 < r.p_value < 1


def test_chi_square_or_fisher_by_expected_counts():
    big = [[40, 60], [55, 45]]
    r = categorical_test(big)
    assert r.method == "chi-square"
    # R: chisq.test(matrix(c(40, 55, 60, 45), 2)) uses Yates' correction for 2 x 2
    assert r.p_value == pytest.approx(stats.chi2_contingency(big, correction=True).pvalue)
    assert categorical_test([[1, 9], [5, 5]]).method == "Fisher exact"


def test_kruskal_wallis_equals_scipy():
    a, b, c = [1, 2, 3, 4], [2, 5, 6, 8], [7, 9, 9, 10]
    assert kruskal_wallis(a, b, c).p_value == pytest.approx(stats.kruskal(a, b, c).pvalue)


def test_characteristics_table_on_lung_crops(lung_crops):
    manifest = pd.read_csv(lung_crops / "manifest.csv")
    table = characteristics_table(manifest.drop(columns=["patient_id", "image", "mask"]), by="cohort")
    assert "lung1 (n=199)" in table.columns and "radiogenomics (n=101)" in table.columns
    age = table[(table.variable == "age") & (table.level == "median (IQR)")].iloc[0]
    assert age["test"].startswith("Mann-Whitney")
    events = table[(table.variable == "event") & (table.level == "1")].iloc[0]
    assert events["lung1 (n=199)"].startswith("128 ") and events["radiogenomics (n=101)"].startswith("34 ")
    m_stage = table[(table.variable == "m_stage") & (table.level == "")].iloc[0]
    assert m_stage["test"] == "Fisher exact"  # 2 x 3 with expected counts < 5: exact


def test_table1_command_writes_csv_and_html(lung_crops, tmp_path):
    from voxsurv.cli import main

    assert main(["table1", "--manifest", str(lung_crops / "manifest.csv"), "--by", "cohort",
                 "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "table1.csv")
    assert set(table.variable) >= {"age", "histology", "time_days", "event"}
    assert "image" not in set(table.variable)
    html = (tmp_path / "table1.html").read_text()
    assert "<table" in html and "radiogenomics (n=101)" in html
