"""The study's non-deep rows, each fitted on its stated roles and scored once on the test split:

  g          Cox on log tumour volume (source + fine-tune)
  volume_hu  Cox on log tumour volume + mean tumour HU (source + fine-tune); also out-of-fold on
             the SAME source folds as the deep runs (the control the chosen deep model must beat)
  a          clinical Cox (source + fine-tune); a_finetune_only: on the fine-tune split only
  b          PyRadiomics whole-tumour features + Coxnet (alpha by CV on the source)

Descriptors (log volume, mean HU) come from the preprocessing chain (resampled 1 x 1 x 5 mm
grid), i.e. the numbers the anchored network is offset by.
"""

from __future__ import annotations

import time

import pandas as pd

from voxsurv.study.baselines import (clinical_design, coxnet_alpha_by_cv, descriptor_design, fit_coxnet,
                                     fit_linear_cox, out_of_fold_linear_cox)
from voxsurv.study.evaluation import predictions_table


class BaselineRows:
    """Args: cohort (StudyCohort), descriptors (patient_id, log_volume_ml, mean_hu), write_row
    (voxsurv.study.evaluation.RowWriter)."""

    def __init__(self, cohort, descriptors: pd.DataFrame, write_row, n_folds_coxnet: int = 5, seed: int = 0) -> None:
        self.c, self.write_row = cohort, write_row
        cols = ["patient_id", "log_volume_ml", "mean_hu"]
        self.role = {r: d.merge(descriptors[cols], on="patient_id", how="left") for r, d in cohort.role.items()}
        missing = [p for d in self.role.values() for p in d.patient_id[d.log_volume_ml.isna()]]
        if missing:
            raise RuntimeError(f"no tumour descriptors for {missing[:5]} (maps step incomplete?)")
        self.n_folds_coxnet, self.seed = n_folds_coxnet, seed

    def _train(self, roles) -> pd.DataFrame:
        return pd.concat([self.role[r] for r in roles], ignore_index=True)

    def _cox_row(self, key, description, columns, roles=("source", "finetune"), penalizer=0.0, extra=None):
        t0 = time.time()
        train, test = self._train(roles), self.role["test"]
        risk, summary = fit_linear_cox(descriptor_design(train, columns), train.time_days, train.event, penalizer)
        return self.write_row(key, description, predictions_table(train, risk(descriptor_design(train, columns))),
                              predictions_table(test, risk(descriptor_design(test, columns))), list(roles),
                              time.time() - t0, {"coefficients": summary.reset_index().to_dict("records"),
                                                 **(extra or {})})

    def row_volume(self) -> dict:
        return self._cox_row("g", "Cox on log tumour volume (ml, resampled 1 x 1 x 5 mm grid)", ["log_volume_ml"])

    def source_oof_volume_hu(self) -> pd.DataFrame:
        """Out-of-fold risks of the volume + HU Cox on the study's source folds."""
        src = self.role["source"]
        folds = src.patient_id.map(self.c.fold_of()).to_numpy()
        risk = out_of_fold_linear_cox(descriptor_design(src), src.time_days, src.event, folds)
        return predictions_table(src, risk).assign(fold=folds)

    def row_volume_hu(self, oof: pd.DataFrame) -> dict:
        from voxsurv.stats.metrics import harrell_c

        return self._cox_row("volume_hu", "Cox on log tumour volume + mean tumour HU (resampled grid)",
                             ["log_volume_ml", "mean_hu"],
                             extra={"source_oof_c": float(harrell_c(oof.time_days, oof.event, oof.risk)),
                                    "source_oof_note": "pooled out-of-fold C on the study's source folds"})

    def rows_clinical(self) -> list[dict]:
        out = []
        for key, roles in (("a", ["source", "finetune"]), ("a_finetune_only", ["finetune"])):
            t0 = time.time()
            train = self._train(roles)
            risk, summary = fit_linear_cox(clinical_design(train, train), train.time_days, train.event, penalizer=0.1)
            out.append(self.write_row(
                key, "clinical Cox (age, T, N, histology; lifelines, ridge 0.1) on " + " + ".join(roles),
                predictions_table(train, risk(clinical_design(train, train))),
                predictions_table(self.role["test"], risk(clinical_design(self.role["test"], train))), roles,
                time.time() - t0, {"coefficients": summary.reset_index().to_dict("records")}))
        return out

    def row_radiomics(self, features: pd.DataFrame) -> dict:
        t0 = time.time()
        feats = features.set_index("patient_id")
        feats = feats.loc[:, feats.notna().all() & (feats.std() > 0)]
        src = self.role["source"]
        alpha, cv = coxnet_alpha_by_cv(feats.loc[src.patient_id].to_numpy(), src.time_days, src.event,
                                       n_folds=self.n_folds_coxnet, seed=self.seed)
        train = self._train(["source", "finetune"])
        risk, nonzero = fit_coxnet(feats.loc[train.patient_id].to_numpy(), train.time_days, train.event, alpha)
        test = self.role["test"]
        return self.write_row(
            "b", f"PyRadiomics whole-tumour features ({feats.shape[1]}) + Coxnet (l1_ratio 0.5, alpha by "
                 f"{self.n_folds_coxnet}-fold CV on the source), refit on source + fine-tune",
            predictions_table(train, risk(feats.loc[train.patient_id].to_numpy())),
            predictions_table(test, risk(feats.loc[test.patient_id].to_numpy())), ["source", "finetune"],
            time.time() - t0, {"alpha": alpha, "nonzero_coefficients": nonzero,
                               "source_cv_c_at_alpha": float(cv.loc[cv.alpha == alpha, "mean_c"].iloc[0])})

