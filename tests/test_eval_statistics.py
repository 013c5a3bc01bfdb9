"""Issue 6 acceptance: voxsurv's survival statistics equal R 4.2.2 (survival 3.5-3,
riskRegression 2022.11.28, dcurves) on R's `lung` data. R numbers are from the issue."""

from __future__ import annotations

import numpy as np
import pytest

from voxsurv.stats.calibration import breslow_baseline, default_calibration_times, grouped_calibration
from voxsurv.stats.decision_curve import decision_curve
from voxsurv.stats.kaplan_meier import kaplan_meier, median_survival
from voxsurv.stats.metrics import cumulative_dynamic_auc, harrell_c, harrell_c_bootstrap
from voxsurv.stats.risk_groups import hazard_ratio, logrank, median_split
from voxsurv.core.errors import InputError

BETA = {"age": 0.0110411363494885, "sex": -0.551889569787597, "ph.ecog": 0.462947040590164}


@pytest.fixture(scope="module")
def lung():
    from lifelines.datasets import load_lung

    return load_lung()


@pytest.fixture(scope="module")
def lung_lp(lung):
    """The 227 complete rows and R's Breslow coxph linear predictor (uncentred)."""
    c = lung.dropna(subset=list(BETA)).reset_index(drop=True)
    lp = sum(b * c[k].to_numpy(float) for k, b in BETA.items())
    return c.time.to_numpy(float), c.status.to_numpy(int), lp


def test_logrank_sex_equals_r(lung):
    r = logrank(lung.time, lung.status, lung.sex)
    assert r.test_statistic == pytest.approx(10.3267419548856, abs=1e-9)
    assert r.p_value == pytest.approx(0.00131116452035549, abs=1e-9)
    assert r.degrees_of_freedom == 1


def test_hazard_ratio_sex_equals_r_coxph(lung):
    # R: coxph(Surv(time, status) ~ sex, lung): exp(coef) 0.5880, 95% CI 0.4237-0.8160 (Efron)
    r = hazard_ratio(lung.time, lung.status, (lung.sex == 2).astype(int))
    assert r.value == pytest.approx(0.5880, abs=1e-4)
    assert r.ci95 == pytest.approx((0.4237, 0.8160), abs=1e-4)


def test_km_median_and_ci_equal_r_survfit(lung):
    # R: survfit(Surv(time, status) ~ sex, lung): 270 (212, 310) and 426 (348, 550); overall 310 (285, 363)
    male = median_survival(lung.time[lung.sex == 1], lung.status[lung.sex == 1])
    female = median_survival(lung.time[lung.sex == 2], lung.status[lung.sex == 2])
    overall = median_survival(lung.time, lung.status)
    assert (male.median, *male.ci95) == (270, 212, 310)
    assert (female.median, *female.ci95) == (426, 348, 550)
    assert (overall.median, *overall.ci95) == (310, 285, 363)


def test_km_matches_lifelines_estimate(lung):
    from lifelines import KaplanMeierFitter

    km = kaplan_meier(lung.time, lung.status)
    ref = KaplanMeierFitter().fit(lung.time, lung.status).survival_function_at_times(km.time).to_numpy()
    np.testing.assert_allclose(km.survival, ref, atol=1e-12)
    assert km.n_at_risk([0, 1022.5])[0] == 228 and km.n_at_risk([1022.5])[0] == 0


def test_harrell_c_equals_r(lung_lp):
    assert harrell_c(*lung_lp) == pytest.approx(0.637135493000455, abs=1e-12)


def test_bootstrap_ci_close_to_r_boot(lung_lp):
    r = harrell_c_bootstrap(*lung_lp, n_resamples=1000, seed=20240601)
    assert r.value == pytest.approx(0.637135493000455, abs=1e-12)
    assert r.ci95[0] == pytest.approx(0.58524, abs=0.01)
    assert r.ci95[1] == pytest.approx(0.68522, abs=0.01)
    assert r.n_resamples == 1000
    again = harrell_c_bootstrap(*lung_lp, n_resamples=1000, seed=20240601)
    assert again.ci95 == r.ci95  # seeded


def test_bootstrap_resample_statistic_equals_harrell_c_on_that_resample(lung_lp):
    """The vectorised w'Aw/w'Bw statistic is Harrell's C of the duplicated data set."""
    from voxsurv.stats.metrics import _concordance_matrices

    time, event, lp = lung_lp
    idx = np.random.default_rng(3).integers(0, time.size, time.size)
    w = np.bincount(idx, minlength=time.size).astype(float)
    comp, conc = _concordance_matrices(time, event.astype(bool), lp)
    assert (w @ conc @ w) / (w @ comp @ w) == pytest.approx(harrell_c(time[idx], event[idx], lp[idx]),
                                                            abs=1e-12)


def test_cumulative_dynamic_auc_equals_riskregression(lung_lp):
    res = cumulative_dynamic_auc(*lung_lp, [180, 365, 730])
    np.testing.assert_allclose([r.auc for r in res],
                               [0.698024965769445, 0.647397660015363, 0.693359270683577], atol=1e-3)
    assert [r.n_controls for r in res] == [int((lung_lp[0] > t).sum()) for t in (180, 365, 730)]


def test_auc_beyond_follow_up_is_nan_with_reason(lung_lp):
    (res,) = cumulative_dynamic_auc(*lung_lp, [5000])
    assert np.isnan(res.auc) and "beyond the follow-up" in res.reason
    time, event, lp = lung_lp
    short = time < 400  # reference followed only to < 400 d
    (res,) = cumulative_dynamic_auc(time, event, lp, [730], time[short], event[short])
    assert np.isnan(res.auc) and "reference" in res.reason


def test_roc_curve_area_equals_auc(lung_lp):
    for r in cumulative_dynamic_auc(*lung_lp, [365, 730], with_curve=True):
        assert np.trapezoid(r.tpr, r.fpr) == pytest.approx(r.auc, abs=1e-12)


def test_breslow_baseline_equals_r(lung_lp):
    h0 = breslow_baseline(*lung_lp).cumulative_hazard([180, 310, 365, 730])
    np.testing.assert_allclose(h0, [0.211981902717646, 0.477934484713858, 0.613716569580443,
                                    1.51804153225844], atol=1e-9, rtol=0)


def test_breslow_is_a_step_function_between_event_times(lung_lp):
    base = breslow_baseline(*lung_lp)
    a, b = base.event_times[10], base.event_times[11]
    h = base.cumulative_hazard([a, (a + b) / 2, np.nextafter(b, 0), b])
    assert h[0] == h[1] == h[2] < h[3]
    assert np.isnan(base.cumulative_hazard([5000])[0])


@pytest.mark.parametrize("t, groups, mae", [(310, 5, 0.0522695640571579), (365, 10, 0.0708025824930471)])
def test_grouped_calibration_mae_equals_r(lung_lp, t, groups, mae):
    time, event, lp = lung_lp
    surv = breslow_baseline(time, event, lp).survival(t, lp)
    res = grouped_calibration(time, event, surv, t, groups)
    assert res.mae == pytest.approx(mae, abs=1e-6)
    assert len(res.groups) == groups and res.groups["n"].sum() == time.size


def test_default_calibration_times(lung_lp):
    time, event, _ = lung_lp
    median_t, max_t = default_calibration_times(time, event)
    assert median_t == median_survival(time, event).median
    assert kaplan_meier(time, event).n_at_risk([max_t])[0] >= 10


def test_decision_curve_equals_r_dcurves(lung_lp):
    time, event, lp = lung_lp
    risk = 1 - breslow_baseline(time, event, lp).survival(365, lp)
    row = decision_curve(time, event, risk, 365, thresholds=[0.5]).iloc[0]
    assert row["model"] == pytest.approx(0.233069697298311, abs=1e-6)
    assert row["treat_all"] == pytest.approx(0.177911098000928, abs=1e-6)


def test_decision_curve_equals_python_dcurves_at_every_threshold(lung_lp):
    dcurves = pytest.importorskip("dcurves")
    import pandas as pd

    time, event, lp = lung_lp
    risk = 1 - breslow_baseline(time, event, lp).survival(365, lp)
    ours = decision_curve(time, event, risk, 365)
    ref = dcurves.dca(data=pd.DataFrame({"time": time, "event": event, "m": risk}), outcome="event",
                      modelnames=["m"], thresholds=ours.threshold.to_numpy(), time=365,
                      time_to_outcome_col="time").pivot(index="threshold", columns="model",
                                                         values="net_benefit")
    finite = np.isfinite(ref["m"].to_numpy(float))
    assert finite.sum() > 80
    np.testing.assert_allclose(ours.model.to_numpy()[finite], ref["m"].to_numpy(float)[finite], atol=1e-12)
    np.testing.assert_allclose(ours.treat_all, ref["all"].to_numpy(float), atol=1e-12)


def test_median_split_uses_reference_median(lung_lp):
    time, event, lp = lung_lp
    reference = lp + 10.0  # a reference whose median is above every test risk
    with pytest.raises(InputError, match="one risk group"):
        median_split(time, event, lp, reference)
    res = median_split(time, event, lp, lp)
    assert res.cutoff == np.median(lp)
    assert res.hazard_ratio.value > 1 and res.logrank.p_value < 0.001
    assert res.median_high.median < res.median_low.median


def test_clear_errors_for_bad_input():
    with pytest.raises(InputError, match="all samples are censored"):
        harrell_c([1, 2, 3], [0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="event must be 0"):
        harrell_c([1, 2, 3], [0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="risk has 2 values"):
        harrell_c([1, 2, 3], [1, 0, 1], [0.1, 0.2])
    with pytest.raises(InputError, match="missing"):
        harrell_c([1, 2, 3], [1, 0, 1], [0.1, np.nan, 0.3])
