"""On-disk cache of per-patient network inputs, so a training run over already-prepared patients
starts in seconds.

Why: the study runs the bundle workflow 75+ times over the same ~200 patients with the same input
settings; loading, resampling, reading maps, normalising and cutting every patient each time would
cost minutes per run. Everything up to the patient's (C, H, W, S) stack is deterministic and
label-free, so it is stored once per (settings, patient) and read back.

A patient's key is its id + the paths, sizes and modification times of its image and mask (a
changed file gives a new key); the folder's key is a hash of the full description of the
preprocessing (volume chain + stack chain, including the map statistics' values). An exclusion
(InputError) is cached too, so a bad patient is reported again without being recomputed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import numpy as np

#: attribute names left out of a transform's description: where a cache lives is not what it holds
_NOT_SETTINGS = ("cache_dir", "maps_cache_dir", "cache")


def describe_transform(transform) -> list:
    """A stable description (class names + simple settings) of a transform chain, for cache keys:
    a change of spacing, features, map settings or statistics gives a new cache folder."""
    simple = (int, float, str, bool, type(None))

    def plain(v, depth=0):
        if isinstance(v, simple):
            return v
        if isinstance(v, np.ndarray) and v.size <= 4096:
            return v.tolist()
        if hasattr(v, "tolist") and getattr(v, "numel", lambda: 10**9)() <= 4096:
            return v.tolist()
        if isinstance(v, (list, tuple)) and depth < 6:
            return [plain(x, depth + 1) for x in v]
        if isinstance(v, dict) and depth < 6:
            return {str(k): plain(x, depth + 1) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
        if hasattr(v, "to_dict"):
            return plain(v.to_dict(), depth + 1)
        if hasattr(v, "transforms") and depth < 6:
            return [type(v).__name__, [plain(t, depth + 1) for t in v.transforms]]
        if hasattr(v, "__dict__") and depth < 6:  # an object (e.g. the array transform a dict transform holds)
            return [type(v).__name__, {k: plain(x, depth + 1) for k, x in sorted(vars(v).items())
                                       if not k.startswith("_") and not inspect.isroutine(x) and not isinstance(x, type)
                                       and k not in _NOT_SETTINGS and k != "R"}]
        return type(v).__name__

    parts = getattr(transform, "transforms", [transform])
    return [plain(t) for t in parts]


def settings_hash(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def source_stamp(patient_id: str, *paths: str) -> str:
    """Identity of a patient's input files: id + (path, size, mtime) of each file."""
    items = [str(patient_id)]
    for p in paths:
        try:
            st = os.stat(p)
            items.append(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}")
        except OSError:
            items.append(f"{os.path.abspath(p)}|missing")
    return "\n".join(items)


class PatientStackCache:
    """A folder of per-patient entries: `{"image", "descriptors", "meta"}` or `{"excluded"}`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, stamp: str) -> Path:
        return self.folder / f"{hashlib.sha1(stamp.encode()).hexdigest()[:20]}.pt"

    def get(self, stamp: str) -> dict | None:
        import torch

        path = self._path(stamp)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 -- a truncated file (killed writer) is recomputed
            return None
        return entry if isinstance(entry, dict) and entry.get("stamp") == stamp else None

    def put(self, stamp: str, entry: dict) -> None:
        """Store atomically (write to a temporary name, then rename): concurrent runs never read
        half a file."""
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(stamp)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save({**entry, "stamp": stamp}, tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
