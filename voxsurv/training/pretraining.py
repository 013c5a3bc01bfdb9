"""Pre-training on first use: the fine-tuning bundle needs pre-trained weights; when the
configured checkpoint does not exist (the demo path, or a new feature set), the pretrain bundle
runs first with the same input and network settings, then fine-tuning loads its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from voxsurv.training.distributed import barrier, is_rank0, say


def _cli_value(value) -> str:
    """A config override as `python -m monai.bundle run` (python-fire) parses it back."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(value)


def ensure_pretrained(checkpoint: str, pretrain_config: str, overrides: dict | None = None) -> str:
    """Return `checkpoint`; when it does not exist, run the pretrain bundle's `pretrain_config`
    (`python -m monai.bundle run`, a subprocess) with `overrides` first, so that it writes
    `checkpoint` (its `output_dir` must be the checkpoint's `<output_dir>/models/model.pt`)."""
    ckpt = Path(checkpoint)
    if not is_rank0():  # under DDP rank 0 pre-trains (single process), the others wait
        barrier()
        return str(ckpt)
    if ckpt.exists():
        say(f"using pre-trained weights {ckpt}")
        barrier()
        return str(ckpt)
    config = Path(pretrain_config)
    bundle = config.parent.parent
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config), "--bundle_root", str(bundle),
           "--meta_file", str(config.parent / "metadata.json"), "--logging_file", str(config.parent / "logging.conf")]
    for key, value in (overrides or {}).items():
        cmd += [f"--{key}", _cli_value(value)]
    say(f"no pre-trained checkpoint at {ckpt}: running a short pre-training first")
    say("  " + " ".join(cmd[1:]))
    result = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"pre-training failed (exit {result.returncode}); command: {' '.join(cmd)}")
    if not ckpt.exists():
        raise RuntimeError(f"pre-training finished but wrote no {ckpt}")
    say(f"pre-training done: {ckpt}")
    barrier()
    return str(ckpt)
