"""Small helpers the bundle configs call: paths, first-use demo data, first-use pre-training,
freezing, resume, per-patient predictions and the final report.

They live in code (not in `$` expressions) so the YAML stays a readable recipe and the logic is
tested.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from voxsurv.errors import InputError

logger = logging.getLogger(__name__)


def repo_root() -> Path:
    """The checkout holding `bundles/` (the current folder when it has one, else voxsurv's parent)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "bundles").is_dir():
            return base.resolve()
    return Path.cwd().resolve()


def bundle_root(name: str) -> str:
    """Absolute path of `bundles/<name>`, so `python -m monai.bundle run --config_file
    bundles/<name>/configs/train.yaml` works from the repository root (and from elsewhere when
    voxsurv is installed from the checkout)."""
    return str(repo_root() / "bundles" / name)


def say(message: str) -> None:
    """Progress line for the user of the main command (stdout, flushed)."""
    import torch.distributed as dist

    rank = f" rank {dist.get_rank()}" if dist.is_available() and dist.is_initialized() else ""
    print(f"[voxsurv{rank}] {message}", flush=True)


def _is_rank0() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def ensure_demo_cohort(dataset_dir: str, manifest: str, **demo_kwargs) -> str:
    """Return `manifest`; when it does not exist and `dataset_dir` holds nothing, write the demo
    cohort there first (printing that it does). A missing manifest in a non-empty folder is an
    error: we never write synthetic data next to somebody's real data."""
    manifest_path = Path(manifest)
    if not _is_rank0():  # under DDP rank 0 writes, the others wait
        _barrier()
        return str(manifest_path)
    if manifest_path.exists():
        _barrier()
        return str(manifest_path)
    folder = Path(dataset_dir)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"manifest not found and {folder} is not empty", path=str(manifest_path),
                         fix="pass --manifest <your manifest.csv>, or an empty/new --dataset_dir for the demo cohort")
    from voxsurv.training.demo import generate_demo_cohort

    say(f"no data in {folder}: generating the synthetic demo cohort there (source + target) ...")
    path = generate_demo_cohort(folder, **demo_kwargs)
    say(f"demo cohort written: {path}")
    _barrier()
    if Path(path).resolve() != manifest_path.resolve():
        raise InputError("the demo cohort was written but the configured manifest is elsewhere",
                         path=str(manifest_path), fix=f"use --manifest {path}")
    return str(path)


def ensure_pretrained(checkpoint: str, pretrain_bundle: str, overrides: dict | None = None) -> str:
    """Return `checkpoint`; when it does not exist, run the pre-training bundle (a subprocess of
    `python -m monai.bundle run`) with `overrides` first, printing what it does."""
    ckpt = Path(checkpoint)
    if not _is_rank0():  # under DDP rank 0 pre-trains (single process), the others wait
        _barrier()
        return str(ckpt)
    if ckpt.exists():
        say(f"using pre-trained weights {ckpt}")
        _barrier()
        return str(ckpt)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
           str(Path(pretrain_bundle) / "configs" / "train.yaml"), "--bundle_root", str(pretrain_bundle)]
    for key, value in (overrides or {}).items():
        cmd += [f"--{key}", str(value)]
    say(f"no pre-trained checkpoint at {ckpt}: running a short pre-training first")
    say("  " + " ".join(cmd[1:]))
    result = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"pre-training failed (exit {result.returncode}); command: {' '.join(cmd)}")
    if not ckpt.exists():
        raise RuntimeError(f"pre-training finished but wrote no {ckpt}")
    say(f"pre-training done: {ckpt}")
    _barrier()
    return str(ckpt)


def latest_checkpoint(folder: str, pattern: str = "checkpoint*.pt") -> str | None:
    """Newest full-state checkpoint (model + optimizer + trainer) in `folder`, for resuming."""
    files = sorted(Path(folder).glob(pattern), key=lambda p: p.stat().st_mtime)
    return str(files[-1]) if files else None


def frozen(network, stem: bool = True, blocks: int = 0):
    """The network with its stem and first `blocks` blocks frozen (network.freeze); frozen
    before any DDP wrapping, so DDP only registers the trainable parameters."""
    network.freeze(stem=bool(stem), blocks=int(blocks))
    network._voxsurv_frozen = (bool(stem), int(blocks))
    return network


def trainable(network) -> list:
    """Parameters left trainable (for the optimizer), reporting how many are fine-tuned."""
    params = [p for p in network.parameters() if p.requires_grad]
    module = getattr(network, "module", network)
    stem, blocks = getattr(module, "_voxsurv_frozen", (False, 0))
    say(f"training {sum(p.numel() for p in params):,} of {sum(p.numel() for p in network.parameters()):,} "
        f"parameters (stem frozen: {stem}, first {blocks} blocks frozen)")
    return params


def patient_predictions(metric, patients, split: str):
    """Per-patient table (patient_id, risk, time_days, event, split) from a C-index handler that
    has computed (its gathered patient-level arrays)."""
    import pandas as pd

    table = metric.patient_table
    if table is None:
        return pd.DataFrame(columns=["patient_id", "risk", "time_days", "event", "split"])
    ids = dict(zip(patients["patient_number"].astype(int), patients["patient_id"]))
    return pd.DataFrame({"patient_id": [ids.get(int(n), f"#{int(n)}") for n in table["patient_number"]],
                         "risk": table["risk"], "time_days": table["time"], "event": table["event"],
                         "split": split, "n_slices": table["n_slices"]})


class PatientPredictionsWriter:
    """Ignite handler: after each evaluator run, write the per-patient risks of `metric` to `path`
    (rank 0 only; the metric's buffers are already gathered across ranks)."""

    def __init__(self, metric, patients, path: str, split: str) -> None:
        self.metric, self.patients, self.path, self.split = metric, patients, Path(path), split

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        patient_predictions(self.metric, self.patients, self.split).to_csv(self.path, index=False)


def report(output_dir: str, manifest: str, prediction_files: list[str], test_split: str = "test",
           name: str = "predictions", label: str = "fine-tuned model") -> dict:
    """Merge the per-split prediction files into `<name>.csv`, print the test C-index and, for
    the demo cohort (true_risk.csv beside the manifest), the true-risk C-index on the same
    patients; write `<name>_metrics.json`. Under DDP only rank 0 reports."""
    if not _is_rank0():
        return {}
    import pandas as pd

    from survival.handlers import harrell_c_index

    frames = [pd.read_csv(f) for f in prediction_files if Path(f).exists()]
    if not frames:
        raise RuntimeError(f"no predictions written in {output_dir}")
    pred = pd.concat(frames, ignore_index=True)
    out = Path(output_dir)
    pred.to_csv(out / f"{name}.csv", index=False)
    test = pred[pred["split"] == test_split]
    result = {"test_patients": int(len(test)), "test_events": int(test["event"].sum()),
              "test_c_index": harrell_c_index(test["time_days"], test["event"], test["risk"])}
    say(f"TEST C-index ({label}, {result['test_patients']} patients, {result['test_events']} events): "
        f"{result['test_c_index']:.3f}")
    truth_file = Path(manifest).parent / "true_risk.csv"
    if truth_file.exists():
        truth = pd.read_csv(truth_file)[["patient_id", "true_risk"]]
        m = test.merge(truth, on="patient_id")
        result["true_risk_c_index"] = harrell_c_index(m["time_days"], m["event"], m["true_risk"])
        say(f"true-risk C-index on the same test patients (the simulation's ceiling, up to chance): "
            f"{result['true_risk_c_index']:.3f}")
    say(f"per-patient predictions: {out / f'{name}.csv'}")
    with open(out / f"{name}_metrics.json", "w") as f:
        json.dump({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()}, f, indent=1)
    return result


class ResumeCheckpointLoader:
    """Ignite handler: at start, load the newest full-state checkpoint in `ckpt_dir` (if any),
    including the trainer's own state, so the epoch count continues.

    A wrapper around MONAI's CheckpointLoader because the trainer cannot reference itself in a
    bundle config (`load_dict: {trainer: "@train#trainer"}` is a circular reference); the
    trainer is added here at `attach` time.
    """

    def __init__(self, ckpt_dir: str, load_dict: dict, map_location=None, pattern: str = "checkpoint*.pt") -> None:
        self.ckpt_dir, self.load_dict, self.map_location, self.pattern = ckpt_dir, load_dict, map_location, pattern

    def attach(self, engine) -> None:
        from monai.handlers import CheckpointLoader

        path = latest_checkpoint(self.ckpt_dir, self.pattern)
        if path is None:
            return
        say(f"resuming from {path}")
        CheckpointLoader(load_path=path, load_dict={**self.load_dict, "trainer": engine},
                         map_location=self.map_location).attach(engine)


class ResumableCheckpointSaver:
    """Ignite handler: MONAI's CheckpointSaver of `save_dict` + the trainer state every epoch
    (newest only, `checkpoint_epoch=N.pt`) and at the end (`final_filename`)."""

    def __init__(self, save_dir: str, save_dict: dict, final_filename: str = "model_last.pt") -> None:
        self.save_dir, self.save_dict, self.final_filename = save_dir, save_dict, final_filename

    def attach(self, engine) -> None:
        from monai.handlers import CheckpointSaver

        CheckpointSaver(save_dir=self.save_dir, save_dict={**self.save_dict, "trainer": engine},
                        save_interval=1, n_saved=1, epoch_level=True, save_final=True,
                        final_filename=self.final_filename).attach(engine)
