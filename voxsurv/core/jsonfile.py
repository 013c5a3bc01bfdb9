"""Writing JSON that other processes read (map statistics, bundle metadata): atomically, so a
reader never sees half a file, and world-readable, so a shipped bundle works for every user."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_json_atomic(path: str | Path, obj) -> Path:
    """Write `obj` as indented JSON via a temporary file in the same folder + rename; floats
    round-trip exactly (json writes repr). The layout is the model zoo's pre-commit's
    (`pretty-format-json --indent=4`, final newline), so bundle files pass it as written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=4)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
