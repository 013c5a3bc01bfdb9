"""The deep rows of the study, all through the bundles (voxsurv.study.deep_runs):

  selection        every candidate: 5 source folds x 3 seeds; pooled out-of-fold C per epoch;
                   chosen epoch per candidate, chosen candidate (voxsurv.study.selection)
  d                the chosen candidate's ensemble (folds x seeds members at its chosen epoch),
                   no fine-tuning
  untrained        the same members at epoch 0 (before any training): the architecture's own
                   signal, e.g. tumour size leaking through the mask
  e / e_head_only  d fine-tuned on the fine-tune split: paper (stem + first depth/2 blocks frozen)
                   and head-only; both reported, fixed a priori
  f                the chosen candidate with CT + mask only (features []), same protocol (own
                   folds x seeds, own chosen epoch, ensemble, paper fine-tuning): maps vs no maps
  anchored         the best anchored candidate (or the chosen one with anchored: true), paper
                   fine-tuning; its Spearman with volume is of the residual image_risk
  c                the chosen candidate trained on the fine-tune split only (seeds ensemble)

Each row is scored ONCE on the test split by one bundle run (evaluate.yaml, or the fine-tune
run's end-of-training scoring), and records every bundle run behind it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from voxsurv.study.bundle_runs import DONE_FILE, execute_all
from voxsurv.study.deep_runs import DeepRuns, Variant, read_predictions
from voxsurv.study.evaluation import spearman_with_volume
from voxsurv.study.selection import choose_candidate, summarise_protocol

log = logging.getLogger(__name__)

FINETUNE_ROW = {"paper": "e", "head": "e_head_only"}


class DeepRows:
    """Args: runs (DeepRuns), steps (voxsurv.study.steps.Steps), write_row (RowWriter),
    descriptors (patient_id, log_volume_ml, mean_hu)."""

    def __init__(self, runs: DeepRuns, steps, write_row, descriptors: pd.DataFrame) -> None:
        self.r, self.steps, self.write_row, self.descriptors = runs, steps, write_row, descriptors
        self.cohort, self.s, self.p = runs.cohort, runs.s, runs.p

    # ---- selection on the source ----
    def cv_summary(self, v: Variant) -> dict:
        """Run v's folds x seeds (skipping finished runs) and summarise its pooled OOF C."""
        t0 = time.time()
        long = self.r.run_cv(v)
        out = summarise_protocol(v.name, long)
        out.update({"candidate": v.candidate.name, "config": v.candidate.config, "about": v.candidate.about,
                    "extra_overrides": v.overrides, "network": self.r.network_settings(v),
                    "n_runs": len(self.r.cv_runs(v)), "wall_s": round(time.time() - t0, 1),
                    "bundle_runs": [run.record() for run in self.r.cv_runs(v).values()]})
        return out

    def selection(self) -> dict:
        summaries = [self.steps(f"cv_{c.name}", lambda c=c: self.cv_summary(Variant(c.name, c)))
                     for c in self.p.candidates]
        chosen = choose_candidate(summaries)
        return {"candidates": summaries, "chosen": chosen,
                "rule": "highest mean (over seeds) pooled out-of-fold C at the candidate's chosen epoch; "
                        "ties: the earlier candidate in " + self.p.source_file}

    def source_oof_of(self, v: Variant, summary: dict) -> pd.DataFrame:
        """Out-of-fold source risks of v at its chosen epoch, averaged over seeds per patient (the
        out-of-fold prediction of a seeds ensemble), for the paired comparison on the source."""
        long = pd.read_csv(self.r.runs_dir / v.name / "oof_predictions.csv", dtype={"patient_id": str})
        at = long[long.epoch == summary["chosen_epoch"]]
        g = at.groupby("patient_id", sort=False)
        return pd.DataFrame({"risk": g.risk.mean(), "time_days": g.time_days.first(), "event": g.event.first(),
                             "fold": g.fold.first()}).reset_index()

    # ---- scoring ----
    def _scored_row(self, key, description, v: Variant, summary: dict | None, run, trained_on, extra=None,
                    pretrain_runs=None, ensemble=None, epoch: int | None = None) -> dict:
        """Execute the row's scoring/fine-tuning run (once) and evaluate its test predictions."""
        t0 = time.time()
        marker = execute_all([run], self.s.executor, 1)[0]
        train = read_predictions(run.output_dir, "train")
        test = read_predictions(run.output_dir, "test")
        extra = dict(extra or {})
        extra["spearman_test_risk_volume"] = spearman_with_volume(test, self.descriptors)
        anchored = bool(self.r.network_settings(v).get("anchored", False))
        if anchored and "image_risk" in test:
            extra["spearman_test_image_risk_volume"] = spearman_with_volume(test, self.descriptors, "image_risk")
        if summary is not None:   # at the row's epoch (the chosen one, or 0 for the untrained members)
            at = next(t for t in summary["table"] if t["epoch"] == (summary["chosen_epoch"] if epoch is None else epoch))
            extra["source_oof_c"] = {"epoch": at["epoch"], "mean": at["mean"], "sd": at["sd"], "per_seed": at["per_seed"],
                                     "n_seeds": at["n_seeds"], "chosen_epoch": summary["chosen_epoch"],
                                     "last_epoch_mean": summary["last_mean"], "last_epoch_sd": summary["last_sd"]}
            if anchored and at["epoch"] == summary["chosen_epoch"] and "image_risk_at_chosen" in summary:
                extra["source_oof_c_image_risk"] = summary["image_risk_at_chosen"]
        pre = [json.loads((Path(r["overrides"]["output_dir"]) / DONE_FILE).read_text()) for r in pretrain_runs or []]
        extra["pretrain_runs_wall_s"] = round(sum(m.get("wall_s", 0.0) for m in pre), 1)
        extra["pretrain_runs_cpu_s"] = round(sum(m.get("cpu_s", 0.0) for m in pre), 1)
        extra.update({"variant": v.name, "candidate": v.candidate.name, "anchored": anchored,
                      "network": self.r.network_settings(v), "ensemble": ensemble,
                      "bundle_runs": {"pretrain": pretrain_runs or [], "scoring": marker}})
        wall = float(marker.get("wall_s", 0.0)) + (time.time() - t0)
        return self.write_row(key, description, train, test, trained_on, wall, extra)

    def _manifest_scoring(self) -> str:
        return self.cohort.write_manifest("score_source_test", {"train": self.cohort.role["source"],
                                                                 "test": self.cohort.role["test"]})

    def _manifest_finetune(self) -> str:
        # split values = the finetune bundle's own roles (train_split / val_split "finetune", test_split "test")
        return self.cohort.write_manifest("finetune_test", {"finetune": self.cohort.role["finetune"],
                                                             "test": self.cohort.role["test"]})

    def _manifest_scoring_c(self) -> str:
        return self.cohort.write_manifest("score_finetune_test", {"train": self.cohort.role["finetune"],
                                                                   "test": self.cohort.role["test"]})

    def row_pretrained(self, v: Variant, summary: dict, key: str = "d", epoch: int | None = None) -> dict:
        """The ensemble of v's members at its chosen epoch (or `epoch`), not fine-tuned."""
        e = summary["chosen_epoch"] if epoch is None else epoch
        ens = self.r.ensemble(v, e)
        run = self.r.score_run(v, key, ens["file"], self._manifest_scoring())
        untrained = e == 0
        desc = (f"untrained network ({v.name} at epoch 0, ensemble of {ens['n_members']} initialisations)" if untrained
                else f"Vision-Mamba {v.name}: ensemble of {ens['n_members']} source members (folds x seeds, epoch {e}), "
                     "no fine-tuning")
        return self._scored_row(key, desc, v, summary, run, ["source"], ensemble=ens, epoch=e,
                                pretrain_runs=[x.record() for x in self.r.cv_runs(v).values()])

    def row_finetuned(self, v: Variant, summary: dict, mode: str, key: str) -> dict:
        ens = self.r.ensemble(v, summary["chosen_epoch"])
        run = self.r.finetune_run(v, mode, ens["file"], self._manifest_finetune())
        how = {"paper": "stem + first depth/2 blocks frozen (the paper)", "head": "head only"}[mode]
        return self._scored_row(key, f"Vision-Mamba {v.name}: the source ensemble fine-tuned on the fine-tune split, "
                                     f"{how}", v, summary, run, ["source", "finetune"], ensemble=ens,
                                pretrain_runs=[x.record() for x in self.r.cv_runs(v).values()],
                                extra={"finetune_mode": mode})

    def row_scratch(self, v: Variant) -> dict:
        manifest = self.cohort.write_manifest("finetune_only", {"train": self.cohort.role["finetune"]})
        runs = self.r.scratch_runs(v, manifest)
        execute_all(runs, self.s.executor, self.s.workers)
        ens = self.r.scratch_ensemble(runs, v)
        run = self.r.score_run(v, "c", ens["file"], self._manifest_scoring_c(), map_statistics=ens["map_statistics"])
        return self._scored_row("c", f"Vision-Mamba {v.name} trained on the fine-tune split only (no pre-training; "
                                     f"map statistics of the fine-tune split; ensemble of {len(runs)} seeds)",
                                v, None, run, ["finetune"], ensemble=ens, pretrain_runs=[x.record() for x in runs])

    # ---- all deep rows ----
    def rows(self, selection: dict) -> tuple[dict, dict]:
        """(rows, protocols): every deep row, and the selection summary of every variant used."""
        by_name = {s["name"]: s for s in selection["candidates"]}
        chosen = Variant(selection["chosen"], self.p.candidate(selection["chosen"]))
        cs = by_name[chosen.name]
        rows = {}
        rows["d"] = self.steps("row_d", lambda: self.row_pretrained(chosen, cs))
        rows["untrained"] = self.steps("row_untrained", lambda: self.row_pretrained(chosen, cs, "untrained", epoch=0))
        for mode in self.s.finetune_modes:
            key = FINETUNE_ROW[mode]
            rows[key] = self.steps(f"row_{key}", lambda mode=mode, key=key: self.row_finetuned(chosen, cs, mode, key))
        # f: CT + mask only, the same protocol
        f_var = Variant(f"{chosen.name}_ct_mask_only", chosen.candidate, {"features": []})
        fs = self.steps(f"cv_{f_var.name}", lambda: self.cv_summary(f_var))
        rows["f"] = self.steps("row_f", lambda: self.row_finetuned(f_var, fs, "paper", "f"))
        # anchored: the best anchored candidate, else the chosen one with anchored: true
        anchored = [s for s in selection["candidates"] if s["network"].get("anchored")]
        if anchored:
            best = choose_candidate(anchored)
            a_var, a_s = Variant(best, self.p.candidate(best)), by_name[best]
        else:
            a_var = Variant(f"{chosen.name}_anchored", chosen.candidate, {"anchored": True})
            a_s = self.steps(f"cv_{a_var.name}", lambda: self.cv_summary(a_var))
        rows["anchored"] = self.steps("row_anchored", lambda: self.row_finetuned(a_var, a_s, "paper", "anchored"))
        rows["c"] = self.steps("row_c", lambda: self.row_scratch(chosen))
        protocols = {s["name"]: s for s in [*selection["candidates"], fs, a_s]}
        return rows, protocols

