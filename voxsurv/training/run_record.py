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


RUN_CONFIG_NAME = "config_resolved.json"


def _running_parser():
    """The monai.bundle ConfigParser evaluating the current config expression: found by walking
    the call stack (ConfigParser.get_parsed_content -> ... -> this expression). None when called
    from anywhere else."""
    import inspect

    from monai.bundle import ConfigParser

    frame = inspect.currentframe()
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, ConfigParser):
                return owner
            frame = frame.f_back
        return None
    finally:
        del frame


def write_run_config(output_dir: str) -> Path | None:
    """Write the run's whole config (all config files merged, overrides applied, macros expanded;
    expressions as written, not evaluated) to `output_dir/config_resolved.json` (rank 0), so a
    run can be repeated or packaged from its output folder alone. Call it from the config's
    `initialize` list; outside a bundle run it writes nothing."""
    if not is_rank0():
        return None
    parser = _running_parser()
    if parser is None:
        return None
    from monai.bundle import ConfigParser

    path = Path(output_dir) / RUN_CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in parser.get().items() if k != "_meta_"}
    ConfigParser.export_config_file(config, str(path), fmt="json", indent=1)
    return path
