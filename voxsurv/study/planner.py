"""How many bundle runs a study will make and roughly how much CPU they cost, printed before
anything runs (`scripts/run_real_study.py --plan`), so the candidates can be sized to the budget
(issue 11: ~3 h on 2 cores).

The cost model is deliberately simple and its constants are stated: a training step costs
`step_s` CPU seconds per 64 patients x 1 slice at 48 px, embed 64, depth 4, scaled linearly by
patients x slices per step, by pixels, by width and by depth; a validation slice costs a third of
a training slice (forward only); every run pays `startup_s` (imports, config, cached data).
Calibration (D's pilot, 2026-12-02, 2 shared cores at load ~10, so CPU times are inflated by
contention): one real pre-training run (mean_k1, source fold 0, seed 0, 6 maps, 40 epochs, 9
evaluations) took 205 CPU s (the 0.8 s/step measured by the lead on the old network predicted 133
s); attention_k4 (pilot, now attention_k2) took ~12 CPU s per epoch; all 90 maps of 295 patients 161 CPU s. Finished runs (study_run.json) replace the estimate
by their measured CPU seconds, so a re-plan during a study is calibrated by the study itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

PLAN_KEYS = ("max_epochs", "val_interval", "val_at_start", "batch_size", "num_slices", "img_size", "embed_dim",
             "depth")


@dataclass
class CostModel:
    step_s: float = 1.25             # CPU s per 64 patient-slices at 48 px / embed 64 / depth 4 (D pilot, below)
    startup_s: float = 25.0          # per run: python + torch/monai imports, config, cached preprocessing
    slices_per_patient: float = 8.0  # tumour slices at 5 mm (all of them are scored at validation)
    forward_share: float = 1 / 3     # a forward pass vs forward + backward
    maps_cpu_s: float = 200.0        # all 90 maps, 295 patients, torch backend (pilot: 161 CPU s)
    pyradiomics_cpu_s: float = 250.0
    screening_cpu_s: float = 300.0

    def slice_s(self, cfg: dict) -> float:
        """CPU seconds of one training patient-slice (forward + backward)."""
        scale = (cfg.get("img_size", 48) / 48) ** 2 * (cfg.get("embed_dim", 64) / 64) * (cfg.get("depth", 4) / 4)
        return self.step_s / 64 * scale

    def train_run_s(self, cfg: dict, n_train: int, n_val: int) -> float:
        epochs = int(cfg.get("max_epochs", 1))
        per_step = min(int(cfg.get("batch_size", 64)), n_train) * int(cfg.get("num_slices", 1))
        steps = math.ceil(n_train / max(1, int(cfg.get("batch_size", 64))))
        train = epochs * steps * per_step * self.slice_s(cfg)
        n_eval = epochs // max(1, int(cfg.get("val_interval", epochs) or epochs)) + bool(cfg.get("val_at_start"))
        val = n_eval * n_val * self.slices_per_patient * self.slice_s(cfg) * self.forward_share if n_val else 0.0
        return self.startup_s + train + val

    def score_run_s(self, cfg: dict, n_patients: int, n_members: int) -> float:
        return self.startup_s + n_patients * self.slices_per_patient * self.slice_s(cfg) * self.forward_share * n_members


@dataclass
class PlannedRuns:
    kind: str
    variant: str
    n_runs: int
    cpu_s_each: float
    measured: int = 0            # how many of them already finished (their measured CPU is used)
    measured_cpu_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.measured_cpu_s + (self.n_runs - self.measured) * self.cpu_s_each


def _measured(folders) -> tuple[int, float]:
    n, cpu = 0, 0.0
    for f in folders:
        marker = Path(f) / "study_run.json"
        if marker.is_file():
            n += 1
            cpu += float(json.loads(marker.read_text()).get("cpu_s", 0.0))
    return n, cpu


def plan_study(runs, cohort, protocol, settings, model: CostModel | None = None,
               chosen: str | None = None) -> list[PlannedRuns]:
    """Every bundle run the study will make (runs: voxsurv.study.deep_runs.DeepRuns), with CPU
    estimates. Row f and the anchored variant are variants of the `chosen` candidate, or of the
    FIRST candidate before the choice is made."""
    from voxsurv.study.deep_runs import Variant
    from voxsurv.study.protocol import resolved_values

    model = model or CostModel()
    n_src = len(cohort.role["source"])
    n_val = math.ceil(n_src / settings.n_folds)
    n_ft, n_test = len(cohort.role["finetune"]), len(cohort.role["test"])
    n_members = settings.n_folds * len(settings.seeds)
    plan = []

    def cfg_of(files, overrides, keys=PLAN_KEYS):
        return resolved_values(files, overrides, keys)

    def cv(v: Variant):
        cfg = cfg_of(runs.pretrain_files(v), runs.data_overrides(v))
        folders = [r.output_dir for r in runs.cv_runs(v).values()]
        n, cpu = _measured(folders)
        plan.append(PlannedRuns("pretrain folds x seeds", v.name, len(folders),
                                model.train_run_s(cfg, n_src - n_val, n_val), n, cpu))
        return cfg

    first = protocol.candidate(chosen) if chosen else protocol.candidates[0]
    cfg0 = None
    for c in protocol.candidates:
        cfg = cv(Variant(c.name, c))
        cfg0 = cfg0 or cfg
    cv(Variant(f"{first.name}_ct_mask_only", first, {"features": []}))
    if not any(runs.is_anchored(Variant(c.name, c)) for c in protocol.candidates):
        cv(Variant(f"{first.name}_anchored", first, {"anchored": True}))
    for mode, f in protocol.finetune_modes.items():
        # (not batch_size: the finetune bundle sizes it from its data, i.e. all fine-tune patients)
        ft = cfg_of(runs._files(protocol.finetune, first.config, f), runs.data_overrides(Variant(first.name, first)),
                    ("max_epochs", "num_slices", "img_size", "embed_dim", "depth"))
        n_ft_runs = 3 if mode == "paper" else 1   # e, f and anchored use paper; e_head_only uses head
        train = int(ft.get("max_epochs", 1)) * n_ft * int(ft.get("num_slices", 1)) * model.slice_s(ft) * n_members
        plan.append(PlannedRuns(f"fine-tune ({mode}, {n_members} members)", "chosen", n_ft_runs,
                                train + model.score_run_s(ft, n_test + n_ft, n_members)))
    sc = cfg_of(runs._files(protocol.pretrain, protocol.study, first.config, protocol.scratch),
                runs.data_overrides(Variant(first.name, first)))
    plan.append(PlannedRuns("row c (fine-tune split only)", "chosen", len(settings.seeds),
                            model.train_run_s(sc, n_ft, 0)))
    plan.append(PlannedRuns("scoring (d, untrained, c)", "chosen", 3,
                            model.score_run_s(cfg0, n_src + n_test, n_members)))
    steps = runs.out / "steps"
    data = []
    if not (steps / "maps.json").is_file():
        data.append(PlannedRuns("maps (all, cached)", "-", 1, model.maps_cpu_s))
    if not all((steps / f"{s}.json").is_file() for s in ("pyradiomics", "screening", "map_statistics")):
        data.append(PlannedRuns("PyRadiomics + screening + statistics", "-", 1,
                                model.pyradiomics_cpu_s + model.screening_cpu_s))
    return data + plan


def format_plan(plan: list[PlannedRuns], workers: int) -> str:
    lines = [f"{'what':34s} {'variant':28s} {'runs':>5s} {'done':>5s} {'CPU s each':>11s} {'CPU min':>8s}"]
    for p in plan:
        lines.append(f"{p.kind:34s} {p.variant:28s} {p.n_runs:5d} {p.measured:5d} {p.cpu_s_each:11.0f} {p.cpu_s / 60:8.1f}")
    total = sum(p.cpu_s for p in plan)
    n_runs = sum(p.n_runs for p in plan if p.variant != "-")
    lines.append(f"total: {n_runs} bundle runs, ~{total / 3600:.1f} CPU h, ~{total / 3600 / max(1, workers):.1f} h wall "
                 f"on {workers} processes (estimate; finished runs count their measured CPU)")
    return "\n".join(lines)
