"""Step bookkeeping of the study: a marker file per finished step, so a killed or interrupted run
continues where it stopped and never recomputes (or silently changes) a finished step.

`steps/<name>.json` holds the step's JSON value, wall time and when it finished; it is written
last, atomically, so a marker exists only for a step that completed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("voxsurv.study")


def write_json(path: str | Path, value) -> Path:
    """Atomic JSON write (temporary file + rename); numpy scalars become floats."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=_plain))
    os.replace(tmp, path)
    return path


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


class Steps:
    """Runs named steps once; `timings` holds every step's wall seconds (this call or before)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.folder = Path(out_dir) / "steps"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}

    def done(self, name: str) -> bool:
        return (self.folder / f"{name}.json").is_file()

    def __call__(self, name: str, fn):
        """fn() once; later calls return the recorded value (JSON round-tripped, as on a re-run)."""
        marker = self.folder / f"{name}.json"
        if marker.is_file():
            d = json.loads(marker.read_text())
            self.timings[name] = d.get("wall_s", 0.0)
            log.info("step %s: done before (%.0f s), skipped", name, self.timings[name])
            return d.get("value")
        log.info("step %s ...", name)
        t0 = time.time()
        value = fn()
        wall = round(time.time() - t0, 1)
        self.timings[name] = wall
        write_json(marker, {"wall_s": wall, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "value": value})
        log.info("step %s done in %.0f s", name, wall)
        return json.loads(marker.read_text())["value"]
