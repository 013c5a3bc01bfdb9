"""The real cross-cohort study as resumable steps (scripts/run_real_study.py is its command line).

Order (each a marker in steps/, so a re-run continues where it stopped):
  maps -> baselines (g, volume + HU incl. out-of-fold on the source folds, a, b) -> screening
  (+ decorrelation) -> map statistics (all source patients, label-free) -> candidates x folds x
  seeds through the pretrain bundle -> choice -> deep rows through the bundles (d, untrained, e,
  e_head_only, f, anchored, c), each scored once on the test split -> paired comparisons ->
  results.json / results.md.

This module only sequences the steps; each concern lives in its own module: cohort (roles, folds,
manifests), data_steps (maps, PyRadiomics, statistics), screening, baseline_rows, deep_runs /
deep_rows (bundle runs), selection, comparisons, report, steps (markers), planner.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from voxsurv.study.cohort import StudyCohort
from voxsurv.study.evaluation import RowWriter, patients_sha
from voxsurv.study.protocol import DEFAULT_PROTOCOL, load_protocol
from voxsurv.study.report import ordered_rows, versions, write_results
from voxsurv.study.settings import StudySettings
from voxsurv.study.steps import Steps

log = logging.getLogger("voxsurv.study")

SMOKE_PROTOCOL = "bundles/pretrain/configs/study/candidates_smoke.yaml"


class Study:
    """Args: data_dir (lung_crops: manifest.csv), out_dir (resumable), split_file, settings,
    maps_cache (default OUT/maps_cache), protocol_file (default: the candidates file; smoke: its
    smoke twin)."""

    def __init__(self, data_dir: str | Path, out_dir: str | Path, split_file: str | Path,
                 settings: StudySettings, maps_cache: str | Path | None = None,
                 protocol_file: str | Path | None = None) -> None:
        self.s = settings
        self.out = Path(out_dir)
        self.data_dir = Path(data_dir)
        self.steps = Steps(self.out)
        self.cohort = StudyCohort(data_dir, split_file, self.out, settings.n_folds, settings.seed, settings.smoke)
        self.maps_cache = Path(maps_cache) if maps_cache else self.out / "maps_cache"
        self.protocol = load_protocol(protocol_file or (SMOKE_PROTOCOL if settings.smoke else DEFAULT_PROTOCOL))
        self.write_row = RowWriter(self.out, self.cohort.role["test"], settings.bootstrap, settings.seed)
        self.rows: dict[str, dict] = {}
        self.extra: dict = {}

    # ---- data steps ----
    def all_features(self) -> list[str]:
        from voxsurv.maps.features import FEATURE_NAMES

        return list(self.s.smoke_features) if self.s.smoke else list(FEATURE_NAMES)

    def step_maps(self) -> dict:
        from voxsurv.study.data_steps import extract_maps

        t0 = time.time()
        df = extract_maps(self.cohort.records(), self.maps_cache, self.out / "maps", self.all_features(),
                          workers=self.s.workers)
        return {"patients": int(len(df)), "computed": int((df.status == "computed").sum()),
                "cached": int((df.status == "cached").sum()), "n_maps": len(self.all_features()),
                "sum_patient_cpu_s": round(float(df.cpu_seconds.sum()), 1), "wall_s": round(time.time() - t0, 1),
                "index": str(self.out / "maps" / "maps_index.csv"), "cache": str(self.maps_cache)}

    def descriptors(self) -> pd.DataFrame:
        """patient_id, maps_cache_key, log_volume_ml, mean_hu of every study patient."""
        df = pd.read_csv(self.out / "maps" / "maps_index.csv", dtype={"patient_id": str})
        return df[["patient_id", "maps_cache_key", "log_volume_ml", "mean_hu"]]

    def keys(self, role: str | None = None) -> dict[str, str]:
        d = self.descriptors().set_index("patient_id").maps_cache_key
        ids = self.cohort.table.patient_id if role is None else self.cohort.role[role].patient_id
        return {p: d[p] for p in ids}

    def step_pyradiomics(self) -> str:
        from voxsurv.study.data_steps import pyradiomics_table

        table = pyradiomics_table(self.keys(), self.maps_cache, self.out / "pyradiomics", workers=self.s.workers,
                                  classes=("firstorder",) if self.s.smoke else None)
        path = self.out / "pyradiomics_features.csv"
        table.to_csv(path, index=False)
        return str(path)

    def step_screening(self) -> dict:
        from voxsurv.study.data_steps import source_roi_pass
        from voxsurv.study.screening import bar_chart, decorrelated_selection, screen_maps, voxel_correlation

        folder = self.out / "screening"
        folder.mkdir(exist_ok=True)
        names = self.all_features()
        src = self.cohort.role["source"]
        summaries, samples = source_roi_pass(self.keys("source"), self.maps_cache, names,
                                             self.s.corr_voxels_per_patient, self.s.seed)
        table = screen_maps(summaries, names, src.time_days.to_numpy(), src.event.to_numpy(), folder,
                            self.s.screen_horizon_days, n_folds=self.s.n_folds, seed=self.s.seed,
                            workers=self.s.workers)
        table.to_csv(folder / "screening.csv", index=False)
        corr = voxel_correlation(samples, names)
        corr.to_csv(folder / "map_correlation.csv")
        kept, decisions, rule = decorrelated_selection(table, corr, self.s.screen_threshold, self.s.max_abs_r,
                                                       self.s.max_maps, self.s.screen_fallback_k)
        decisions.to_csv(folder / "selection_decisions.csv", index=False)
        bar_chart(table, self.s.screen_threshold, folder / "screening_auc.png",
                  f"Map screening on {len(src)} source patients: map alone (5 ROI summaries) + ridge Cox")
        off = np.abs(corr.loc[kept, kept].to_numpy())[~np.eye(len(kept), dtype=bool)] if len(kept) > 1 else np.array([])
        return {"selected": kept, "rule": rule,
                "auc": dict(zip(table["map"], [None if a is None or not np.isfinite(a) else float(a) for a in table["auc"]])),
                "selected_max_abs_r": float(np.nanmax(off)) if off.size else None,
                "selected_median_abs_r": float(np.nanmedian(off)) if off.size else None,
                "files": {"screening": str(folder / "screening.csv"), "correlation": str(folder / "map_correlation.csv"),
                          "decisions": str(folder / "selection_decisions.csv")},
                "settings": {"model": "map alone: per-patient ROI summaries (mean, sd, p10, p50, p90) + lifelines ridge "
                                      "Cox (penalizer 0.1)",
                             "cv": f"{self.s.n_folds}-fold event-stratified on the source (the study's folds' rule), "
                                   f"seed {self.s.seed}",
                             "metric": f"cumulative/dynamic AUC at {self.s.screen_horizon_days:g} d, mean over folds",
                             "threshold": self.s.screen_threshold, "max_abs_r": self.s.max_abs_r,
                             "correlation": f"voxel-level Spearman over ROI voxels pooled across {len(src)} source "
                                            f"patients, <= {self.s.corr_voxels_per_patient} voxels per patient (seed "
                                            f"{self.s.seed})", "n_source_patients": int(len(src))}}

    def step_statistics(self) -> dict:
        from voxsurv.study.data_steps import fit_source_statistics

        path = self.out / "map_statistics_source.json"
        stats = fit_source_statistics(self.keys("source"), self.maps_cache, self.all_features(), path)
        return {"file": str(path), "maps": len(stats.names), "patients": len(self.cohort.role["source"]),
                "fitted_on": "ROI voxels of all source patients (label-free), every map"}

    # ---- reporting ----
    def results(self, partial: bool, total: float | None = None) -> dict:
        res = {"status": "partial" if partial else "complete", "smoke": self.s.smoke,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "settings": asdict(self.s),
               "protocol": {"file": self.protocol.source_file, "candidates": [asdict(c) for c in self.protocol.candidates]},
               "versions": versions(), "host": platform.node(), "data": str(self.data_dir),
               "split_patients": self.cohort.summary()["patients"], "split_events": self.cohort.summary()["events"],
               "source_folds": self.cohort.summary()["source_folds"],
               "test_patients_sha": patients_sha(self.cohort.role["test"].patient_id),
               **self.extra, "rows": ordered_rows(self.rows),
               "step_wall_s": dict(self.steps.timings), "total_wall_s": None if total is None else round(total, 1)}
        return write_results(self.out, res)

    # ---- the whole study ----
    def run(self) -> dict:
        from voxsurv.study.baseline_rows import BaselineRows
        from voxsurv.study.comparisons import compare_on_source, compare_on_test
        from voxsurv.study.deep_rows import DeepRows
        from voxsurv.study.deep_runs import DeepRuns, Variant

        t_all = time.time()
        self.extra["maps_extraction"] = self.steps("maps", self.step_maps)
        desc = self.descriptors()
        base = BaselineRows(self.cohort, desc, self.write_row, n_folds_coxnet=self.s.n_folds, seed=self.s.seed)
        self.rows["g"] = self.steps("row_g", base.row_volume)
        oof_path = self.out / "volume_hu_source_oof.csv"
        if not oof_path.is_file():
            base.source_oof_volume_hu().to_csv(oof_path, index=False)
        vol_oof = pd.read_csv(oof_path, dtype={"patient_id": str})
        self.rows["volume_hu"] = self.steps("row_volume_hu", lambda: base.row_volume_hu(vol_oof))
        for r in self.steps("row_a", base.rows_clinical):
            self.rows[r["model"]] = r
        feats = self.steps("pyradiomics", self.step_pyradiomics)
        self.rows["b"] = self.steps("row_b", lambda: base.row_radiomics(pd.read_csv(feats, dtype={"patient_id": str})))
        self.results(partial=True)
        sel = self.extra["screening"] = self.steps("screening", self.step_screening)
        stats = self.extra["map_statistics"] = self.steps("map_statistics", self.step_statistics)
        runs = DeepRuns(self.out, self.cohort, self.s, self.protocol, self.maps_cache, stats["file"], sel["selected"])
        deep = DeepRows(runs, self.steps, self.write_row, desc)
        selection = self.steps("selection", deep.selection)
        self.extra["selection"] = {k: v for k, v in selection.items() if k != "candidates"}
        deep_rows, protocols = deep.rows(selection)
        self.rows.update(deep_rows)
        self.extra["protocols"] = {k: {kk: vv for kk, vv in v.items() if kk != "bundle_runs"} for k, v in protocols.items()}
        chosen = Variant(selection["chosen"], self.protocol.candidate(selection["chosen"]))
        chosen_summary = next(s for s in selection["candidates"] if s["name"] == chosen.name)
        comps = compare_on_test(self.write_row.folder, self.rows, self.s.bootstrap, self.s.seed)
        comps.append(compare_on_source(deep.source_oof_of(chosen, chosen_summary), vol_oof, chosen.name,
                                       self.s.bootstrap, self.s.seed))
        self.extra["comparisons"] = comps
        return self.results(partial=False, total=time.time() - t_all)

    def planned_runs(self):
        """The planner's runs for this study (voxsurv.study.planner; the cost model does not depend
        on which maps screening keeps, so any feature list stands in before screening)."""
        from voxsurv.study.deep_runs import DeepRuns
        from voxsurv.study.planner import plan_study

        done = self.steps.folder / "screening.json"
        features = (json.loads(done.read_text())["value"]["selected"] if done.is_file()
                    else self.all_features()[:1])
        runs = DeepRuns(self.out, self.cohort, self.s, self.protocol, self.maps_cache,
                        self.out / "map_statistics_source.json", features)
        sel = self.steps.folder / "selection.json"
        chosen = json.loads(sel.read_text())["value"]["chosen"] if sel.is_file() else None
        return plan_study(runs, self.cohort, self.protocol, self.s, chosen=chosen)

    def plan(self) -> str:
        from voxsurv.study.planner import format_plan

        return format_plan(self.planned_runs(), self.s.workers)
