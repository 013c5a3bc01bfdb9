"""What a training run was: the input and network settings written beside its outputs, so that
packaging (inference bundle), fine-tuning and the study read them instead of asking the user to
repeat them."""

from __future__ import annotations

import json
from pathlib import Path

from voxsurv.training.distributed import is_rank0

RUN_SETTINGS_NAME = "run_settings.json"


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def write_run_settings(output_dir: str, settings: dict) -> Path | None:
    """Write `settings` (plain values) to `output_dir/run_settings.json` (rank 0)."""
    if not is_rank0():
        return None
    path = Path(output_dir) / RUN_SETTINGS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(settings), indent=1) + "\n")
    return path


def read_run_settings(output_dir: str) -> dict:
    return json.loads((Path(output_dir) / RUN_SETTINGS_NAME).read_text())
