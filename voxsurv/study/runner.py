"""The real cross-cohort study as resumable steps (scripts/run_real_study.py is its command line).

Every step writes its outputs under `out_dir` and a `steps/<name>.json` marker last; a re-run
loads finished steps instead of recomputing them, so an interrupted run continues where it
stopped. One seed drives the split file (already fixed), folds, initialisation, sampling and
augmentation. Rows (all on the same target test split of docs/results/real_split.csv):
  a clinical Cox, b whole-tumour radiomics Coxnet, c Vision-Mamba on the fine-tune split only,
  d pre-trained on the source, no fine-tuning, e pre-trained + fine-tuned (frozen stem + first
  blocks; the paper's method), f = e with CT only, g Cox on log tumour volume.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from voxsurv.study.evaluation import predictions_table, results_row

log = logging.getLogger("voxsurv.study")

SMOKE_FEATURES = ["firstorder_Mean", "firstorder_Entropy", "glcm_Contrast", "glrlm_RunEntropy"]


@dataclass
class StudySettings:
    """Everything that defines the run (saved in results.json). Chosen before looking at any
    target result; sized for ~90 min on 2 shared CPU cores (see docs/results/real_study.md)."""
    seed: int = 0
    device: str = "cpu"
    threads: int = 1                 # torch threads per process (1 was ~20x faster than 2 on the shared machine)
    screen_horizon_days: float = 730.0
    screen_threshold: float = 0.6
    screen_fallback_k: int = 8
    max_maps: int = 16               # cap on channels if many maps pass (highest screening AUCs kept)
    img_size: int = 64
    roi_size_mm: float = 64.0
    embed_dim: int = 64
    depth: int = 4
    min_area_mm2: float = 10.0
    batch_size: int = 16
    pretrain_epochs: int = 12
    pretrain_lr: float = 3e-4
    finetune_epochs: int = 10
    finetune_lr: float = 1e-4
    frozen_blocks: int = 2
    scratch_epochs: int = 30
    scratch_lr: float = 3e-4
    bootstrap: int = 1000
    workers: int = 2
    smoke: bool = False
    smoke_features: list = field(default_factory=lambda: list(SMOKE_FEATURES))


class Study:
    def __init__(self, data_dir: str | Path, out_dir: str | Path, split_file: str | Path,
                 settings: StudySettings, maps_cache: str | Path | None = None) -> None:
        from voxsurv.manifest import load_manifest
        from voxsurv.study.split import read_split, study_table

        self.data_dir, self.out = Path(data_dir), Path(out_dir)
        self.s = settings
        (self.out / "steps").mkdir(parents=True, exist_ok=True)
        self.maps_cache = Path(maps_cache) if maps_cache else self.out / "maps_cache"
        manifest = load_manifest(self.data_dir / "manifest.csv")
        split = read_split(split_file)
        if settings.smoke:  # a few patients per role, the same roles as the split file
            parts = []
            for role, n in (("source", 10), ("finetune", 6), ("test", 8)):
                r = split[split.role == role].merge(manifest[["patient_id", "event"]], on="patient_id")
                ev, ce = r[r.event == 1].head(n // 2), r[r.event == 0].head(n - n // 2)
                parts.append(pd.concat([ev, ce])[split.columns])
            split = pd.concat(parts, ignore_index=True)
        self.split = split
        split.to_csv(self.out / "split_used.csv", index=False)
        self.table = study_table(manifest, split)
        self.role = {r: self.table[self.table.role == r].reset_index(drop=True) for r in ("source", "finetune", "test")}
        self.results: dict[str, dict] = {}
        self.source_cv_folds = False
        self.source_cv = None
        self.timings: dict[str, float] = {}

    # ---- step bookkeeping ----
    def step(self, name: str, fn):
        marker = self.out / "steps" / f"{name}.json"
        if marker.is_file():
            d = json.loads(marker.read_text())
            log.info("step %s: done before (%.0f s), skipped", name, d.get("wall_s", 0))
            self.timings[name] = d.get("wall_s", 0.0)
            return d.get("value")
        log.info("step %s ...", name)
        t0 = time.time()
        value = fn()
        wall = time.time() - t0
        self.timings[name] = wall
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"wall_s": round(wall, 1), "device": self.s.device, "value": value}, indent=1, default=float))
        os.replace(tmp, marker)
        log.info("step %s done in %.0f s", name, wall)
        return value

    # ---- data steps ----
    def features(self) -> list[str]:
        from voxelmaps.features import FEATURE_NAMES

        return list(self.s.smoke_features) if self.s.smoke else list(FEATURE_NAMES)

    def extract_maps(self) -> dict:
        """Voxel maps of every study patient into the content-addressed cohort cache (torch)."""
        import torch

        from voxelmaps.cohort import CohortJob, extract_cohort

        job = CohortJob(out_dir=str(self.maps_cache), backend="torch", features=self.features(),
                        device=None if self.s.device == "cpu" else self.s.device)
        records = self.table[["patient_id", "image", "mask"]].to_dict("records")
        t0 = time.time()
        torch.set_num_threads(max(1, self.s.threads))
        rows = extract_cohort(records, job, workers=1 if self.s.smoke else self.s.workers, progress=False)
        bad = [r for r in rows if r["status"] == "excluded"]
        if bad:
            raise RuntimeError(f"maps failed for split patients: {bad[:3]}")
        computed = [r for r in rows if r["status"] == "computed"]
        return {"patients": len(rows), "computed": len(computed), "cached": len(rows) - len(computed),
                "sum_patient_seconds": round(sum(r.get("seconds", 0) for r in computed), 1),
                "wall_s": round(time.time() - t0, 1), "backend": "torch", "n_maps": len(job.features)}

    def maps_files(self) -> dict[str, str]:
        idx = pd.read_csv(self.maps_cache / "maps_index.csv")
        return dict(zip(idx.patient_id, idx.maps_file))

    def tumour_volumes(self) -> dict:
        from voxsurv.study.baselines import tumour_volume_ml

        return {r.patient_id: tumour_volume_ml(r.image, r.mask, r.patient_id) for r in self.table.itertuples()}

    def radiomics_features(self) -> str:
        """PyRadiomics whole-tumour features per patient (parallel, one JSON per patient)."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from voxsurv.study.baselines import pyradiomics_whole_tumour

        folder = self.out / "pyradiomics"
        folder.mkdir(exist_ok=True)
        files = self.maps_files()
        todo = [(pid, files[pid]) for pid in self.table.patient_id if not (folder / f"{pid}.json").is_file()]
        if todo:
            if self.s.workers > 1 and not self.s.smoke:
                with ProcessPoolExecutor(self.s.workers, mp_context=mp.get_context("spawn")) as pool:
                    for (pid, _), feats in zip(todo, pool.map(pyradiomics_whole_tumour, [f for _, f in todo], chunksize=4)):
                        (folder / f"{pid}.json").write_text(json.dumps(feats))
            else:
                classes = ("firstorder", "shape") if self.s.smoke else None
                for pid, f in todo:
                    (folder / f"{pid}.json").write_text(json.dumps(pyradiomics_whole_tumour(f, classes=classes)))
        table = pd.DataFrame([{"patient_id": pid, **json.loads((folder / f"{pid}.json").read_text())}
                              for pid in self.table.patient_id])
        path = self.out / "pyradiomics_features.csv"
        table.to_csv(path, index=False)
        return str(path)

    # ---- evaluation helper ----
    def _row(self, key, description, train_rows, train_risk, test_risk, trained_on, wall, extra=None):
        train_pred = predictions_table(train_rows, train_risk)
        test_pred = predictions_table(self.role["test"], test_risk)
        folder = self.out / "predictions"
        folder.mkdir(exist_ok=True)
        train_pred.assign(split="train").to_csv(folder / f"{key}_train.csv", index=False)
        test_pred.assign(split="test").to_csv(folder / f"{key}_test.csv", index=False)
        return results_row(key, description, train_pred, test_pred, trained_on, wall, self.s.device,
                           n_resamples=self.s.bootstrap, seed=self.s.seed, extra=extra)

    # ---- baselines ----
    def row_volume(self, volumes: dict) -> dict:
        from voxsurv.study.baselines import fit_linear_cox

        t0 = time.time()
        train = pd.concat([self.role["source"], self.role["finetune"]], ignore_index=True)
        x = lambda rows: pd.DataFrame({"log_volume": np.log([volumes[p] for p in rows.patient_id])})  # noqa: E731
        risk, summary = fit_linear_cox(x(train), train.time_days, train.event, penalizer=0.0)
        return self._row("g", "Cox on log tumour volume (ml, original grid)", train, risk(x(train)),
                         risk(x(self.role["test"])), ["source", "finetune"], time.time() - t0,
                         {"coefficients": summary.reset_index().to_dict("records")})

    def rows_clinical(self) -> list[dict]:
        from voxsurv.study.baselines import clinical_design, fit_linear_cox

        out = []
        for key, roles in (("a", ["source", "finetune"]), ("a_finetune_only", ["finetune"])):
            t0 = time.time()
            train = pd.concat([self.role[r] for r in roles], ignore_index=True)
            risk, summary = fit_linear_cox(clinical_design(train, train), train.time_days, train.event, penalizer=0.1)
            out.append(self._row(key, "clinical Cox (age, T, N, histology; lifelines, ridge 0.1) on " + " + ".join(roles),
                                 train, risk(clinical_design(train, train)),
                                 risk(clinical_design(self.role["test"], train)), roles, time.time() - t0,
                                 {"coefficients": summary.reset_index().to_dict("records")}))
        return out

    def row_radiomics(self, features_csv: str) -> dict:
        from voxsurv.study.baselines import coxnet_alpha_by_cv, fit_coxnet

        t0 = time.time()
        feats = pd.read_csv(features_csv).set_index("patient_id")
        feats = feats.loc[:, feats.notna().all() & (feats.std() > 0)]
        src = self.role["source"]
        n_folds = 3 if self.s.smoke else 5
        alpha, cv = coxnet_alpha_by_cv(feats.loc[src.patient_id].to_numpy(), src.time_days, src.event,
                                       n_folds=n_folds, seed=self.s.seed)
        train = pd.concat([src, self.role["finetune"]], ignore_index=True)
        risk, nonzero = fit_coxnet(feats.loc[train.patient_id].to_numpy(), train.time_days, train.event, alpha)
        return self._row("b", f"PyRadiomics whole-tumour features ({feats.shape[1]}) + Coxnet (l1_ratio 0.5, "
                         f"alpha by {n_folds}-fold CV on the source), refit on source + fine-tune",
                         train, risk(feats.loc[train.patient_id].to_numpy()),
                         risk(feats.loc[self.role["test"].patient_id].to_numpy()), ["source", "finetune"],
                         time.time() - t0, {"alpha": alpha, "nonzero_coefficients": nonzero,
                                            "source_cv_c_at_alpha": float(cv.loc[cv.alpha == alpha, "mean_c"].iloc[0])})

    # ---- screening ----
    def screening(self) -> dict:
        from voxsurv.study.screening import bar_chart, map_summaries, screen_maps, select_maps

        folder = self.out / "screening"
        folder.mkdir(exist_ok=True)
        files = self.maps_files()
        src = self.role["source"]
        summ_path = folder / "source_map_summaries.npz"
        if summ_path.is_file():
            z = np.load(summ_path, allow_pickle=False)
            names, summaries = list(z["names"]), z["summaries"]
        else:
            parts = [map_summaries(files[p]) for p in src.patient_id]
            names, summaries = parts[0][0], np.stack([p[1] for p in parts])
            np.savez(summ_path, names=np.array(names), summaries=summaries)
        table = screen_maps(summaries, names, src.time_days.to_numpy(), src.event.to_numpy(), folder,
                            self.s.screen_horizon_days, n_folds=3 if self.s.smoke else 5, seed=self.s.seed,
                            workers=1 if self.s.smoke else self.s.workers)
        table.to_csv(folder / "screening.csv", index=False)
        selected, rule = select_maps(table, self.s.screen_threshold, self.s.screen_fallback_k)
        used = selected[: self.s.max_maps]
        if len(used) < len(selected):
            rule += f"; capped at the {self.s.max_maps} highest-AUC maps for the CPU budget"
        bar_chart(table, self.s.screen_threshold, folder / "screening_auc.png",
                  f"Map screening on {len(src)} source patients: map alone (5 ROI summaries) + ridge Cox")
        auc = dict(zip(table["map"], table["auc"]))
        sel = {"selected": used, "rule": rule, "passed": selected,
               "auc": {m: auc[m] for m in used},
               "settings": {"model": "map alone: per-patient ROI summaries (mean, sd, p10, p50, p90 over all tumour "
                                     "voxels of all slices) + lifelines ridge Cox (penalizer 0.1)",
                            "cv": f"{3 if self.s.smoke else 5}-fold event-stratified, source cohort only, seed {self.s.seed}",
                            "metric": f"cumulative/dynamic AUC at {self.s.screen_horizon_days:g} d, mean over folds",
                            "threshold": self.s.screen_threshold, "n_source_patients": int(len(src)),
                            "maps": "voxelmaps torch backend, radius 1, bin width 25, window [-95, 155] HU, 1x1x5 mm, force2D"},
               "all_auc": {m: (None if a is None or not np.isfinite(a) else float(a)) for m, a in auc.items()}}
        (folder / "selected_maps.json").write_text(json.dumps(sel, indent=1))
        return sel

    # ---- deep rows ----
    def build_slices(self, maps: list[str]) -> dict:
        """Tumour slices of every study patient: CT + selected maps, maps normalised with statistics
        fitted on the source (for d/e/f) and, separately, on the fine-tune split only (for c)."""
        import torch

        from voxelmaps.cohort import load_patient_maps
        from voxelmaps.normalise import MapStatistics
        from voxsurv.study.deep import patient_slices, patient_volume

        files = self.maps_files()

        def stats_of(ids):
            def pairs():
                for p in ids:
                    d = load_patient_maps(files[p])
                    idx = [list(d["names"]).index(f) for f in maps]
                    yield d["maps"][idx], d["mask"]
            return MapStatistics.fit(pairs(), maps)

        st_src, st_ft = stats_of(self.role["source"].patient_id), stats_of(self.role["finetune"].patient_id)
        st_src.save(self.out / "map_statistics_source.json")
        st_ft.save(self.out / "map_statistics_finetune.json")
        src_slices, ft_slices = {}, {}
        for i, r in enumerate(self.table.itertuples()):
            vol = patient_volume(r.image, r.mask, r.patient_id, files[r.patient_id], maps)
            kw = dict(roi_size_mm=self.s.roi_size_mm, img_size=self.s.img_size, min_area_mm2=self.s.min_area_mm2)
            src_slices[r.patient_id] = patient_slices(vol, st_src, **kw)
            if r.role != "source":
                ft_slices[r.patient_id] = patient_slices(vol, st_ft, **kw)
            if (i + 1) % 50 == 0:
                log.info("  slices: %d/%d patients", i + 1, len(self.table))
        torch.save({"maps": maps, "source_stats": src_slices, "finetune_stats": ft_slices}, self.out / "slices.pt")
        n = sum(len(v) for v in src_slices.values())
        return {"patients": len(src_slices), "slices": n, "channels": 1 + len(maps),
                "no_slice_patients": [p for p, v in src_slices.items() if len(v) == 0]}

    def _slices(self):
        import torch

        if not hasattr(self, "_slice_cache"):
            self._slice_cache = torch.load(self.out / "slices.pt", weights_only=False)
        return self._slice_cache

    def _sets(self, which: str, ct_only: bool):
        from voxsurv.study.deep import SliceSet

        sl = self._slices()[which]
        if ct_only:
            sl = {k: v[:, :1] for k, v in sl.items()}
        return lambda role_df: SliceSet(role_df, sl)

    def _epochs(self, n):
        return 1 if self.s.smoke else n

    def pretrain(self, ct_only: bool, fold: int = 0, save: bool = True) -> dict:
        """Pre-train on the source; fold `fold` of 5 (event-stratified) held out to pick the epoch
        and report a held-out source C (at the chosen epoch: optimistic, the fold also chose it; and
        at the last epoch: no selection). Fold 0's model is saved for fine-tuning and row d."""
        import torch

        from survival.metrics import harrell_c
        from voxsurv.study.deep import make_network, predict_patients, train_cox
        from voxsurv.training.folds import split_fold

        tag = "ct" if ct_only else "maps"
        sets = self._sets("source_stats", ct_only)
        tr_df, va_df = split_fold(self.role["source"], fold, 3 if self.s.smoke else 5, self.s.seed)
        tr, va = sets(tr_df), sets(va_df)
        torch.manual_seed(self.s.seed)
        model = make_network(tr.x.shape[1], self.s.img_size, self.s.embed_dim, self.s.depth)
        ck = self.out / (f"ckpt_pretrain_{tag}" if fold == 0 else f"ckpt_source_cv_{tag}_fold{fold}")
        hist = train_cox(model, tr, self._epochs(self.s.pretrain_epochs), self.s.pretrain_lr,
                         ck, self.s.seed, self.s.batch_size, val=va, device=self.s.device)
        if save:
            torch.save(model.state_dict(), self.out / f"pretrained_{tag}.pt")
        p = predict_patients(model, va, device=self.s.device)
        return {"fold": fold, "held_out_source_fold_c": float(harrell_c(p.time_days, p.event, p.risk)),
                "held_out_last_epoch_c": hist["history"]["val_c"][-1],
                "held_out_n": int(len(p)), "held_out_events": int(p.event.sum()),
                "train_n": int(len(tr.patients)), **hist}

    def _load_pretrained(self, tag, channels):
        import torch

        from voxsurv.study.deep import make_network

        model = make_network(channels, self.s.img_size, self.s.embed_dim, self.s.depth)
        model.load_state_dict(torch.load(self.out / f"pretrained_{tag}.pt", weights_only=True))
        return model

    def row_pretrained_only(self, pre: dict) -> dict:
        from voxsurv.study.deep import predict_patients
        from voxsurv.training.folds import split_fold

        t0 = time.time()
        sets = self._sets("source_stats", False)
        tr_df, _ = split_fold(self.role["source"], 0, 3 if self.s.smoke else 5, self.s.seed)
        tr, te = sets(tr_df), sets(self.role["test"])
        model = self._load_pretrained("maps", tr.x.shape[1])
        ptr, pte = predict_patients(model, tr), predict_patients(model, te)
        return self._row_from_preds("d", "Vision-Mamba (CT + maps) pre-trained on the source, no fine-tuning",
                                    ptr, pte, ["source"], time.time() - t0 + self.timings.get("pretrain_maps", 0),
                                    {"held_out_source_fold_c": pre["held_out_source_fold_c"],
                                     "held_out_source_n": pre["held_out_n"], "best_epoch": pre["best_epoch"],
                                     "source_cv": "single held-out fold (fold 0 of 5), not full 5-fold CV (CPU budget)"})

    def _row_from_preds(self, key, description, ptr, pte, trained_on, wall, extra=None):
        miss = set(self.role["test"].patient_id) - set(pte.patient_id)
        if miss:
            raise RuntimeError(f"{key}: test patients without slices: {sorted(miss)[:5]}")
        tr_rows = ptr[["patient_id"]].merge(self.table, on="patient_id")
        pte = pte.set_index("patient_id").loc[self.role["test"].patient_id].reset_index()
        return self._row(key, description, tr_rows, ptr.set_index("patient_id").loc[tr_rows.patient_id, "risk"].to_numpy(),
                         pte["risk"].to_numpy(), trained_on, wall, extra)

    def row_finetuned(self, ct_only: bool) -> dict:
        from voxsurv.study.deep import predict_patients, train_cox

        t0 = time.time()
        tag = "ct" if ct_only else "maps"
        sets = self._sets("source_stats", ct_only)
        ft, te = sets(self.role["finetune"]), sets(self.role["test"])
        model = self._load_pretrained(tag, ft.x.shape[1])
        model.freeze(stem=True, blocks=self.s.frozen_blocks)
        hist = train_cox(model, ft, self._epochs(self.s.finetune_epochs), self.s.finetune_lr,
                         self.out / f"ckpt_finetune_{tag}", self.s.seed, self.s.batch_size, device=self.s.device)
        import torch

        torch.save(model.state_dict(), self.out / f"finetuned_{tag}.pt")
        key = "f" if ct_only else "e"
        desc = ("Vision-Mamba CT only: pre-trained on the source, fine-tuned on the 20% target split "
                f"(stem + first {self.s.frozen_blocks} blocks frozen)") if ct_only else \
               ("Vision-Mamba CT + maps: pre-trained on the source, fine-tuned on the 20% target split "
                f"(stem + first {self.s.frozen_blocks} blocks frozen): the paper's method")
        return self._row_from_preds(key, desc, predict_patients(model, ft), predict_patients(model, te),
                                    ["source", "finetune"], time.time() - t0 + self.timings.get(f"pretrain_{tag}", 0),
                                    {"finetune_epochs": self._epochs(self.s.finetune_epochs),
                                     "finetune_loss": hist["history"]["loss"],
                                     "wall_s_note": "includes its pre-training step"})

    def row_scratch(self) -> dict:
        import torch

        from voxsurv.study.deep import make_network, predict_patients, train_cox

        t0 = time.time()
        sets = self._sets("finetune_stats", False)
        ft, te = sets(self.role["finetune"]), sets(self.role["test"])
        torch.manual_seed(self.s.seed)
        model = make_network(ft.x.shape[1], self.s.img_size, self.s.embed_dim, self.s.depth)
        hist = train_cox(model, ft, self._epochs(self.s.scratch_epochs), self.s.scratch_lr,
                         self.out / "ckpt_scratch", self.s.seed, self.s.batch_size, device=self.s.device)
        return self._row_from_preds("c", "Vision-Mamba CT + maps trained on the 20% target fine-tune split only "
                                    "(no pre-training; map statistics from the fine-tune split)",
                                    predict_patients(model, ft), predict_patients(model, te), ["finetune"],
                                    time.time() - t0, {"epochs": self._epochs(self.s.scratch_epochs),
                                                       "loss": hist["history"]["loss"]})

    # ---- the whole study ----
    def run(self) -> dict:
        import torch

        torch.set_num_threads(max(1, self.s.threads))
        t_all = time.time()
        maps_info = self.step("maps", self.extract_maps)
        volumes = self.step("volumes", self.tumour_volumes)
        feats_csv = self.step("pyradiomics", self.radiomics_features)
        rows = {}
        rows["g"] = self.step("row_g", lambda: self.row_volume(volumes))
        for r in self.step("row_a", self.rows_clinical):
            rows[r["model"]] = r
        rows["b"] = self.step("row_b", lambda: self.row_radiomics(feats_csv))
        self._write(rows, maps_info, None, None, partial=True)
        sel = self.step("screening", self.screening)
        slices = self.step("slices", lambda: self.build_slices(sel["selected"]))
        pre_maps = self.step("pretrain_maps", lambda: self.pretrain(False))
        rows["d"] = self.step("row_d", lambda: self.row_pretrained_only(pre_maps))
        rows["e"] = self.step("row_e", lambda: self.row_finetuned(False))
        self._write(rows, maps_info, sel, slices, partial=True)
        rows["c"] = self.step("row_c", self.row_scratch)
        self._write(rows, maps_info, sel, slices, partial=True)
        self.step("pretrain_ct", lambda: self.pretrain(True))
        rows["f"] = self.step("row_f", lambda: self.row_finetuned(True))
        self.source_cv = None
        if self.source_cv_folds:  # optional: the rest of the 5-fold CV of row d's pre-training
            first = {**pre_maps, "fold": 0, "held_out_last_epoch_c": pre_maps["history"]["val_c"][-1]}
            folds = [first] + [self.step(f"source_cv_fold{k}", lambda k=k: self.pretrain(False, k, save=False))
                                  for k in range(1, 3 if self.s.smoke else 5)]
            self.source_cv = {
                "folds": [{k: f[k] for k in ("fold", "held_out_source_fold_c", "held_out_last_epoch_c", "held_out_n",
                                             "held_out_events", "best_epoch")} for f in folds],
                "mean_c_selected_epoch": float(np.mean([f["held_out_source_fold_c"] for f in folds])),
                "mean_c_last_epoch": float(np.mean([f["held_out_last_epoch_c"] for f in folds])),
                "note": "selected epoch = best C on the same held-out fold (optimistic); last epoch = no selection"}
        return self._write(rows, maps_info, sel, slices, partial=False, total=time.time() - t_all)

    def _write(self, rows, maps_info, sel, slices, partial: bool, total: float | None = None) -> dict:
        from voxsurv.study.report import results_markdown, versions

        order = ["a", "b", "c", "d", "e", "f", "g", "a_finetune_only"]
        res = {"status": "partial" if partial else "complete", "smoke": self.s.smoke,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "settings": asdict(self.s), "versions": versions(), "host": platform.node(),
               "data": str(self.data_dir), "split_patients": {r: int(len(d)) for r, d in self.role.items()},
               "split_events": {r: int(d.event.sum()) for r, d in self.role.items()},
               "test_patients_sha": __import__("voxsurv.study.evaluation", fromlist=["x"]).patients_sha(self.role["test"].patient_id),
               "maps_extraction": maps_info, "selected_maps": sel, "slices": slices,
               "step_wall_s": {k: round(v, 1) for k, v in self.timings.items()},
               "total_wall_s": None if total is None else round(total, 1),
               "source_cv_pretrained_d": self.source_cv,
               "rows": {k: rows[k] for k in order if k in rows}}
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(res, indent=1, default=float))
        os.replace(tmp, self.out / "results.json")
        (self.out / "results.md").write_text(results_markdown(res))
        return res
