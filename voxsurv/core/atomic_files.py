"""Files that other processes read, written whole or not at all: a temporary file in the same
folder, then a rename (``os.replace`` is atomic within one file system), so a reader -- another
worker, a resumed run -- never sees half a file and an interrupted write leaves the old one. The
file is world-readable (``mkstemp`` makes it owner-only), as shipped bundles and shared outputs
must be."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable, binary: bool = False, **open_kwargs) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path`` (opened ``"wb"`` or ``"w"`` with
    ``open_kwargs``, e.g. ``encoding``), then rename it to ``path``; the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **open_kwargs) as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
