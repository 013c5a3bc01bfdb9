"""The study's non-deep baselines: tumour volume (+ mean HU), clinical Cox, whole-tumour radiomics Coxnet.

Each returns per-patient risks (higher = shorter survival) for its training patients and for the
patients it is evaluated on; the study then evaluates every model the same way
(voxsurv.study.evaluation). Nothing here looks at the test split when fitting or choosing
settings: alphas come from cross-validation inside the source cohort.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


# ---- designs ----------------------------------------------------------------------------------
def clinical_design(df: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Clinical covariates as a numeric design: age (missing -> reference median), T and N stage
    (ordinal; T5 counted as T4), histology squamous / other vs adenocarcinoma (the target
    cohort has almost only adenocarcinoma and squamous, so finer classes would not transfer)."""
    age_fill = float(pd.to_numeric(reference["age"], errors="coerce").median())
    hist = df["histology"].astype(str).str.lower()
    return pd.DataFrame({
        "age": pd.to_numeric(df["age"], errors="coerce").fillna(age_fill).to_numpy(float),
        "t_stage": np.clip(pd.to_numeric(df["t_stage"], errors="coerce").fillna(2), 1, 4).to_numpy(float),
        "n_stage": pd.to_numeric(df["n_stage"], errors="coerce").fillna(0).to_numpy(float),
        "histology_squamous": (hist == "squamous").to_numpy(float),
        "histology_other": (~hist.isin(["adenocarcinoma", "squamous"])).to_numpy(float),
    }, index=df.index)


def descriptor_design(df: pd.DataFrame, columns=("log_volume_ml", "mean_hu")) -> pd.DataFrame:
    """Tumour descriptors (measured by the preprocessing chain on the resampled grid) as a design."""
    return pd.DataFrame({c: df[c].to_numpy(float) for c in columns}, index=df.index)


# ---- models -----------------------------------------------------------------------------------
def fit_linear_cox(x_train: pd.DataFrame, time, event, penalizer: float = 0.1):
    """lifelines CoxPHFitter (ridge `penalizer`, Efron ties) on standardised covariates; returns
    a function giving the linear predictor (risk) for new rows and the fitted summary."""
    from lifelines import CoxPHFitter

    x_train = x_train.loc[:, x_train.std(ddof=0) > 0]  # a covariate constant in training carries nothing
    mu, sd = x_train.mean(), x_train.std(ddof=0)
    z = (x_train - mu) / sd
    data = z.assign(_time=np.asarray(time, float), _event=np.asarray(event, int))
    cph = CoxPHFitter(penalizer=penalizer).fit(data, duration_col="_time", event_col="_event")

    def risk(x: pd.DataFrame) -> np.ndarray:
        return np.asarray(cph.predict_log_partial_hazard((x[x_train.columns] - mu) / sd), float).ravel()

    return risk, cph.summary[["coef", "exp(coef)", "p"]]


def _surv_y(time, event):
    from sksurv.util import Surv

    return Surv.from_arrays(np.asarray(event, bool), np.asarray(time, float))


def coxnet_alpha_by_cv(x: np.ndarray, time, event, l1_ratio: float = 0.5, n_folds: int = 5,
                       seed: int = 0, n_alphas: int = 30) -> tuple[float, pd.DataFrame]:
    """The Coxnet alpha with the best mean validation Harrell C over `n_folds` event-stratified
    folds (scikit-survival's recipe: alpha path from a first fit, then GridSearchCV)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    y = _surv_y(time, event)
    path = make_pipeline(StandardScaler(), CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, alpha_min_ratio=0.01,
                                                                 n_alphas=n_alphas, max_iter=100000))
    path.fit(x, y)
    alphas = path.named_steps["coxnetsurvivalanalysis"].alphas_
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    grid = GridSearchCV(make_pipeline(StandardScaler(), CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, max_iter=100000)),
                        param_grid={"coxnetsurvivalanalysis__alphas": [[float(a)] for a in alphas]},
                        cv=list(cv.split(x, np.asarray(event, int))), error_score=0.5, n_jobs=1)
    grid.fit(x, y)
    table = pd.DataFrame({"alpha": [p["coxnetsurvivalanalysis__alphas"][0] for p in grid.cv_results_["params"]],
                          "mean_c": grid.cv_results_["mean_test_score"], "sd_c": grid.cv_results_["std_test_score"]})
    best = float(table.loc[table["mean_c"].idxmax(), "alpha"])
    return best, table


def fit_coxnet(x: np.ndarray, time, event, alpha: float, l1_ratio: float = 0.5):
    """Coxnet at one alpha (standardised on the training rows); returns risk(x) and the number of
    non-zero coefficients."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    model = make_pipeline(StandardScaler(), CoxnetSurvivalAnalysis(l1_ratio=l1_ratio, alphas=[alpha], max_iter=100000))
    model.fit(x, _surv_y(time, event))
    nonzero = int(np.count_nonzero(model.named_steps["coxnetsurvivalanalysis"].coef_))
    return (lambda z: np.asarray(model.predict(z), float)), nonzero


def out_of_fold_linear_cox(x: pd.DataFrame, time, event, folds, penalizer: float = 0.0) -> np.ndarray:
    """Out-of-fold risks of `fit_linear_cox`: fold k's patients scored by the model fitted on the
    other folds (the same source folds as the deep runs, so the two are paired)."""
    time, event, folds = np.asarray(time, float), np.asarray(event, int), np.asarray(folds)
    risk = np.full(len(x), np.nan)
    for k in np.unique(folds):
        tr, va = folds != k, folds == k
        fit, _ = fit_linear_cox(x[tr].reset_index(drop=True), time[tr], event[tr], penalizer=penalizer)
        risk[va] = fit(x[va].reset_index(drop=True))
    return risk
