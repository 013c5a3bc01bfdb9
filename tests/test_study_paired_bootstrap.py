"""voxsurv.stats.paired_bootstrap: the paired dC and its CI equal a direct computation (explicit
resampled copies of the patients scored with harrell_c), and the convention holds."""

import numpy as np
import pytest

from voxsurv.stats.metrics import harrell_c
from voxsurv.stats.paired_bootstrap import bootstrap_indices, paired_bootstrap_c
from voxsurv.core.errors import InputError


def _cohort(n=60, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    time = np.round(rng.exponential(500 * np.exp(-x)), 0)  # rounded: tied times occur
    event = (rng.uniform(size=n) < 0.6).astype(int)
    strong = x + rng.normal(0, 0.5, n)
    weak = x + rng.normal(0, 3.0, n)
    return time, event, strong, np.round(weak, 1)  # rounded: tied risks occur


def test_paired_delta_and_ci_equal_a_direct_loop_over_resamples():
    time, event, a, b = _cohort()
    res = paired_bootstrap_c(time, event, a, b, n_resamples=80, seed=7)
    assert res.delta == pytest.approx(harrell_c(time, event, a) - harrell_c(time, event, b), abs=1e-12)
    direct = []
    for idx in bootstrap_indices(len(time), 80, 7):
        t, e = time[idx], event[idx]
        if e.sum() == 0:
            continue
        direct.append(harrell_c(t, e, a[idx]) - harrell_c(t, e, b[idx]))
    lo, hi = np.quantile(direct, [0.025, 0.975])
    assert res.ci95 == pytest.approx((lo, hi), abs=1e-12)
    assert res.p_value == pytest.approx(min(1.0, 2 * min(np.mean(np.array(direct) <= 0), np.mean(np.array(direct) >= 0))))


def test_a_clearly_better_score_has_a_ci_above_zero_and_swapping_flips_the_sign():
    time, event, a, b = _cohort(n=150, seed=3)
    ab = paired_bootstrap_c(time, event, a, b, seed=0)
    ba = paired_bootstrap_c(time, event, b, a, seed=0)
    assert ab.ci95[0] > 0 and ab.to_dict()["excludes_zero"]
    assert ba.delta == pytest.approx(-ab.delta) and ba.ci95 == pytest.approx((-ab.ci95[1], -ab.ci95[0]))
    # identical scores: delta 0 with a degenerate CI
    same = paired_bootstrap_c(time, event, a, a, n_resamples=50)
    assert same.delta == 0 and same.ci95 == (0.0, 0.0)
    assert "paired bootstrap" in ab.summary() and ab.n_resamples == 1000 and ab.seed == 0


def test_bad_input_is_a_clear_error():
    time, event, a, b = _cohort()
    with pytest.raises(InputError, match="has 59 values"):
        paired_bootstrap_c(time, event, a, b[:-1])
    with pytest.raises(InputError, match="n_resamples"):
        paired_bootstrap_c(time, event, a, b, n_resamples=0)
