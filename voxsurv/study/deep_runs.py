"""The deep rows' bundle runs: pre-training candidates x source folds x seeds, the ensembles of
their members, fine-tuning, row c (fine-tune split only) and the one scoring run per row.

Every run is a `BundleRun` (voxsurv.study.bundle_runs) of the protocol's config files plus
overrides; nothing here trains or predicts by itself. A *variant* is a candidate with extra
overrides (row f = the chosen candidate with `features: []`; the anchored row = it with
`anchored: true` when no candidate is anchored).

Output layout under `<out>/runs/<variant>/`:
    fold{k}_seed{s}/        one pre-training run (bundle output_dir: predictions_val_epoch{E}.csv,
                            models/model_epoch{E}.pt, bundle_args.json, study_run.json, bundle.log)
    oof_predictions.csv     pooled out-of-fold validation predictions (seed, epoch, fold, ...)
    ensemble_epoch{E}.pt    SurvivalEnsemble of the folds x seeds members at epoch E (one file)
    score_<row>/            scoring run of a row (evaluate.yaml: eval/predictions_train|test.csv)
    finetune_<mode>/        fine-tuning run (predictions_train|test.csv: the test split scored once)
    scratch_seed{s}/        row c runs (fine-tune split only)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from voxsurv.study.bundle_runs import BundleRun, execute_all
from voxsurv.study.protocol import Candidate, Protocol, resolved_values

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """A candidate's config file + extra overrides, under one name (its folder under runs/)."""
    name: str
    candidate: Candidate
    overrides: dict = field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class DeepRuns:
    """Builds and executes the deep rows' bundle runs.

    Args:
        out: study output folder.
        cohort: voxsurv.study.cohort.StudyCohort (roles, folds, manifests).
        settings: voxsurv.study.settings.StudySettings (seeds, folds, executor, workers).
        protocol: voxsurv.study.protocol.Protocol (config files, candidates).
        maps_cache: the study's maps cache (all maps of every study patient).
        statistics: MapStatistics JSON fitted on all source patients (every map).
        features: the maps chosen by screening.
    """

    def __init__(self, out, cohort, settings, protocol: Protocol, maps_cache, statistics, features) -> None:
        self.out, self.cohort, self.s, self.p = Path(out), cohort, settings, protocol
        self.maps_cache, self.statistics, self.features = str(maps_cache), str(statistics), list(features)
        self.runs_dir = self.out / "runs"
        self.bundle_cache = str(self.out / "bundle_cache")

    # ---- config files + overrides ----
    def _files(self, *files: str) -> list[str]:
        return [*files, self.p.smoke] if self.s.smoke else list(files)

    def pretrain_files(self, v: Variant) -> list[str]:
        return self._files(self.p.pretrain, self.p.study, v.candidate.config)

    def data_overrides(self, v: Variant, map_statistics: str | None = "source") -> dict:
        """Overrides every run of variant v shares: caches, map statistics, features."""
        features = list(v.overrides.get("features", self.features))
        stats = self.statistics if map_statistics == "source" else map_statistics
        return {"cache_dir": self.bundle_cache, "maps_cache_dir": self.maps_cache,
                "map_statistics": stats if features else None,
                **{k: val for k, val in v.candidate.overrides.items()}, **v.overrides, "features": features}

    def network_settings(self, v: Variant) -> dict:
        """The network/input keys the variant's pre-training config resolves to (recorded per row)."""
        return resolved_values(self.pretrain_files(v), self.data_overrides(v))

    def is_anchored(self, v: Variant) -> bool:
        return bool(self.network_settings(v).get("anchored", False))

    # ---- pre-training: folds x seeds ----
    def cv_runs(self, v: Variant) -> dict[tuple[int, int], BundleRun]:
        runs = {}
        base = self.data_overrides(v)
        for k in range(self.cohort.n_folds):
            manifest = self.cohort.fold_manifest(k)
            for seed in self.s.seeds:
                folder = self.runs_dir / v.name / f"fold{k}_seed{seed}"
                runs[(k, seed)] = BundleRun(f"{v.name}/fold{k}_seed{seed}", self.pretrain_files(v),
                                            {**base, "manifest": manifest, "seed": int(seed), "output_dir": str(folder)})
        return runs

    def run_cv(self, v: Variant) -> pd.DataFrame:
        """Execute the folds x seeds runs of v (finished ones skipped); the pooled OOF table."""
        from voxsurv.study.selection import pooled_oof

        runs = self.cv_runs(v)
        execute_all(list(runs.values()), self.s.executor, self.s.workers)
        long = pooled_oof({key: r.output_dir for key, r in runs.items()}, self.cohort.role["source"].patient_id)
        long.to_csv(self.runs_dir / v.name / "oof_predictions.csv", index=False)
        return long

    def ensemble(self, v: Variant, epoch: int) -> dict:
        """One SurvivalEnsemble file of the folds x seeds members' weights at `epoch`."""
        import torch

        from networks import SurvivalEnsemble

        runs = self.cv_runs(v)
        path = self.runs_dir / v.name / f"ensemble_epoch{epoch}.pt"
        members = [str(r.output_dir / "models" / f"model_epoch{epoch}.pt") for r in runs.values()]
        if not path.is_file():
            states = [torch.load(m, map_location="cpu", weights_only=True) for m in members]
            ens = SurvivalEnsemble.from_members(states)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(ens.state_dict(), tmp)
            tmp.replace(path)
        return {"file": str(path), "epoch": int(epoch), "n_members": len(members), "members": members,
                "sha256": sha256_file(path)}

    # ---- scoring (evaluate.yaml: no training) ----
    def score_run(self, v: Variant, row: str, checkpoint: str, manifest: str,
                  map_statistics: str | None = "source") -> BundleRun:
        files = self._files(self.p.pretrain, self.p.study, v.candidate.config, self.p.evaluate)
        return BundleRun(f"{v.name}/score_{row}", files,
                         {**self.data_overrides(v, map_statistics), "manifest": manifest, "checkpoint": checkpoint,
                          "test_split": "test", "predict_roles": ["train", "test"],
                          "output_dir": str(self.runs_dir / v.name / f"score_{row}")})

    # ---- fine-tuning ----
    def finetune_run(self, v: Variant, mode: str, checkpoint: str, manifest: str) -> BundleRun:
        files = self._files(self.p.finetune, v.candidate.config, self.p.finetune_modes[mode])
        return BundleRun(f"{v.name}/finetune_{mode}", files,
                         {**self.data_overrides(v), "manifest": manifest, "pretrained_checkpoint": checkpoint,
                          "seed": int(self.s.seed), "output_dir": str(self.runs_dir / v.name / f"finetune_{mode}")})

    # ---- row c: the fine-tune split only ----
    def scratch_runs(self, v: Variant, manifest: str) -> list[BundleRun]:
        files = self._files(self.p.pretrain, self.p.study, v.candidate.config, self.p.scratch)
        return [BundleRun(f"{v.name}/scratch_seed{seed}", files,
                          {**self.data_overrides(v, map_statistics=None), "manifest": manifest, "seed": int(seed),
                           "output_dir": str(self.runs_dir / v.name / f"scratch_seed{seed}")})
                for seed in self.s.seeds]

    def scratch_ensemble(self, runs: list[BundleRun], v: Variant) -> dict:
        import torch

        from networks import SurvivalEnsemble

        path = self.runs_dir / v.name / "scratch_ensemble.pt"
        members = [str(r.output_dir / "models" / "model.pt") for r in runs]
        if not path.is_file():
            ens = SurvivalEnsemble.from_members([torch.load(m, map_location="cpu", weights_only=True) for m in members])
            torch.save(ens.state_dict(), path)
        return {"file": str(path), "n_members": len(members), "members": members, "sha256": sha256_file(path),
                "map_statistics": str(runs[0].output_dir / "map_statistics.json")}


def read_predictions(run_dir: str | Path, role: str) -> pd.DataFrame:
    """predictions_<role>.csv of a fine-tuning run (its output_dir) or a scoring run (its eval/)."""
    for path in (Path(run_dir) / f"predictions_{role}.csv", Path(run_dir) / "eval" / f"predictions_{role}.csv"):
        if path.is_file():
            return pd.read_csv(path, dtype={"patient_id": str})
    raise FileNotFoundError(f"no predictions_{role}.csv in {run_dir} or its eval/: the bundle run did not score {role}")
