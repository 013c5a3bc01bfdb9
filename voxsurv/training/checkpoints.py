"""Weights on disk: resuming a run, saving the network per evaluation epoch and at the end, and
loading pre-trained weights (one network or a SurvivalEnsemble) for fine-tuning.

Files (under the run's `models/` folder):
- `checkpoint_epoch=N.pt`: full state (network, optimizer, scheduler, trainer), newest only, for resume;
- `model_epoch{E}.pt`: the network's plain state dict after evaluation epoch E (the study picks E);
- `model.pt`: the network's plain state dict at the end of training (the bundle's output).
Plain state dicts are what the shipped weights, `ckpt_export`, inference and Deploy read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from voxsurv.core.errors import InputError
from voxsurv.training.distributed import is_rank0, say, unwrap

logger = logging.getLogger(__name__)

RESUME_PATTERN = "checkpoint*.pt"


def latest_checkpoint(folder: str, pattern: str = RESUME_PATTERN) -> str | None:
    """Newest full-state checkpoint (model + optimizer + trainer) in `folder`, for resuming."""
    files = sorted(Path(folder).glob(pattern), key=lambda p: p.stat().st_mtime)
    return str(files[-1]) if files else None


def save_network(network, path: str | Path) -> Path:
    """Write the (unwrapped) network's state dict to `path` atomically, readable by all (0644)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(unwrap(network).state_dict(), tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_state_dict(path: str | Path) -> dict:
    """A plain state dict from `path`; a full-state checkpoint's "model" entry is unwrapped."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise InputError("not a state dict", path=str(path), fix="pass a file written by torch.save(model.state_dict())")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def ensemble_size(state: dict) -> int:
    """Members of a SurvivalEnsemble state dict ("members.<i>." keys), 0 for a single network."""
    members = {k.split(".")[1] for k in state if k.startswith("members.")}
    return len(members)


def load_weights(network, checkpoint: str | Path):
    """`network` (the bundle's network_def) with the weights in `checkpoint` (pre-trained, or to score).

    A SurvivalEnsemble checkpoint (keys "members.<i>.") gives a SurvivalEnsemble of that many
    copies of `network`; a single-network checkpoint loads into `network` itself. Loading is
    strict: a checkpoint made with other channels, image size or width is an InputError naming
    the settings to change (silently half-loaded weights would fine-tune noise).
    """
    from networks import SurvivalEnsemble

    path = Path(checkpoint)
    if not path.is_file():
        raise InputError("checkpoint not found", path=str(path),
                         fix="pass pretrained_checkpoint=<model.pt of the pretrain bundle> (or a path that does not exist "
                             "yet to pre-train on the demo first)")
    state = read_state_dict(path)
    n_members = ensemble_size(state)
    model = SurvivalEnsemble(network, n_members) if n_members else network
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"pre-trained weights do not fit the configured network: {str(exc).splitlines()[0]} "
                         f"[{' '.join(str(exc).split())[:600]}]", path=str(path),
                         fix="set the bundle's features / img_size / embed_dim / depth / pooling / anchored to the values "
                             "the checkpoint was trained with (old per-slice 17-channel weights cannot run the new "
                             "inputs: pre-train again)") from exc
    say(f"loaded weights {path}" + (f" (ensemble of {n_members} networks)" if n_members else ""))
    return model


class NetworkSaver:
    """Ignite handler: save the network's plain state dict to `path` when the engine completes
    (rank 0 only). `path` may hold "{epoch}", filled with the engine's epoch (for an evaluator run
    by ValidationHandler this is the trainer's epoch, 0 for a validation at start)."""

    def __init__(self, network, path: str, enabled: bool = True) -> None:
        self.network, self.path, self.enabled = network, str(path), bool(enabled)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        if self.enabled:
            engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine) -> None:
        if is_rank0():
            save_network(self.network, self.path.format(epoch=engine.state.epoch))


class ResumeCheckpointLoader:
    """Ignite handler: at start, load the newest full-state checkpoint in `ckpt_dir` (if any),
    including the trainer's own state, so the epoch count continues.

    A wrapper around MONAI's CheckpointLoader because the trainer cannot reference itself in a
    bundle config (`load_dict: {trainer: "@train#trainer"}` is a circular reference); the
    trainer is added here at `attach` time.
    """

    def __init__(self, ckpt_dir: str, load_dict: dict, map_location=None, pattern: str = RESUME_PATTERN) -> None:
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
    (newest only, `checkpoint_epoch=N.pt`), so an interrupted run resumes where it stopped."""

    def __init__(self, save_dir: str, save_dict: dict) -> None:
        self.save_dir, self.save_dict = save_dir, save_dict

    def attach(self, engine) -> None:
        from monai.handlers import CheckpointSaver

        CheckpointSaver(save_dir=self.save_dir, save_dict={**self.save_dict, "trainer": engine},
                        save_interval=1, n_saved=1, epoch_level=True).attach(engine)
