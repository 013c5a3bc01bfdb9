"""Writing JSON that other processes read (map statistics, bundle metadata): atomically, so a
reader never sees half a file, and world-readable, so a shipped bundle works for every user."""

from __future__ import annotations

import json
from pathlib import Path

from voxsurv.core.atomic_files import write_atomic


def write_json_atomic(path: str | Path, obj) -> Path:
    """Write `obj` as indented JSON via a temporary file in the same folder + rename; floats
    round-trip exactly (json writes repr). The layout is the model zoo's pre-commit's
    (`pretty-format-json --indent=4`, final newline), so bundle files pass it as written."""
    def dump(f):
        json.dump(obj, f, indent=4)
        f.write("\n")

    return write_atomic(path, dump, encoding="utf-8")
