"""Content-addressed, per-patient store of voxel maps on the resampled grid, so every map of every
patient is computed once: the study computes all 90, every training run reads the ones it selects.

The address (``cache_key``) is the sha256 of what determines the maps' values: the resampled CT
(float32 voxels) and tumour mask (mask > 0), their grid (shape + affine), the map settings
(``MapSettings.stable_hash``, which includes the maps format version), the backend and the stored
dtype. NOT the feature list: an entry holds maps by name, and a request for names the entry lacks
computes only those and adds them.

Layout of one entry, ``<root>/<key>/``:
    volume.json           grid (affine, spatial shape, spacing), settings, backend, roi_voxels
    image.npy             (x, y, z) float32 CT in HU as the maps engine got it (before its clip)
    mask.npy              (x, y, z) uint8 tumour mask (1 inside)
    maps/<name>.npy       float32 (roi_voxels,) values of one map at the mask's voxels, in
                          ``np.nonzero(mask)`` order (C order of (x, y, z)); NaN where it failed

Every file is written to a temporary name in its folder and renamed (atomic on POSIX), so readers
never see half a file and concurrent writers of the same entry are safe: two processes computing
the same name write identical bytes, different names never touch the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from voxsurv.core.atomic_files import write_atomic
from voxsurv.core.errors import InputError
from voxsurv.maps.settings import MapSettings

__all__ = ["CACHE_FORMAT", "MapsCache", "cache_key"]

CACHE_FORMAT = "voxsurv-maps-cache/1"


def cache_key(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, settings: MapSettings,
              backend: str, store_dtype: str = "float32") -> str:
    """sha256 address of one patient's maps. ``image`` and ``mask`` are (x, y, z) arrays on the
    resampled grid, ``affine`` its 4 x 4 voxel-to-world matrix."""
    image = np.ascontiguousarray(np.asarray(image, dtype=np.float32))
    roi = np.ascontiguousarray(np.asarray(mask) > 0).astype(np.uint8)
    if image.shape != roi.shape:
        raise InputError(f"mask shape {roi.shape} differs from image shape {image.shape}")
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "shape": list(image.shape),
                         "affine": np.round(np.asarray(affine, dtype=np.float64), 6).tolist(),
                         "settings": settings.stable_hash(), "backend": backend,
                         "store_dtype": store_dtype}, sort_keys=True).encode())
    h.update(image.tobytes())
    h.update(roi.tobytes())
    return h.hexdigest()


class MapsCache:
    """One cache folder. Cheap to create; safe to share between processes.

    Args:
        root: folder of the entries (created on first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def entry(self, key: str) -> Path:
        """The folder of one entry."""
        return self.root / key

    def has_volume(self, key: str) -> bool:
        return (self.entry(key) / "volume.json").is_file()

    def cached_names(self, key: str) -> set[str]:
        """Names of the maps the entry holds (complete files only)."""
        folder = self.entry(key) / "maps"
        if not folder.is_dir():
            return set()
        return {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".npy") and not p.name.startswith(".")}

    def write_volume(self, key: str, image: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                     info: Mapping | None = None) -> None:
        """Store the grid, image and mask of an entry (once; later calls change nothing)."""
        if self.has_volume(key):
            return
        entry = self.entry(key)
        (entry / "maps").mkdir(parents=True, exist_ok=True)
        image = np.asarray(image, dtype=np.float32)
        roi = (np.asarray(mask) > 0).astype(np.uint8)
        affine = np.asarray(affine, dtype=np.float64)
        write_atomic(entry / "image.npy", lambda f: np.save(f, image), binary=True)
        write_atomic(entry / "mask.npy", lambda f: np.save(f, roi), binary=True)
        volume = {"format": CACHE_FORMAT, "key": key, "axes": "x,y,z",
                  "spatial_shape": list(image.shape), "affine": affine.tolist(),
                  "spacing_xyz_mm": np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).tolist(),
                  "roi_voxels": int(roi.sum()), **dict(info or {})}
        write_atomic(entry / "volume.json", lambda f: f.write(json.dumps(volume, indent=1).encode()), binary=True)

    def write_maps(self, key: str, values: Mapping[str, np.ndarray], store_dtype: str = "float32") -> None:
        """Add maps (name -> (roi_voxels,) values at the mask's voxels) to an entry."""
        if not self.has_volume(key):
            raise RuntimeError(f"maps cache entry {key} has no volume: call write_volume first")
        folder = self.entry(key) / "maps"
        n = self.read_info(key)["roi_voxels"]
        for name, v in values.items():
            v = np.ascontiguousarray(np.asarray(v, dtype=store_dtype))
            if v.shape != (n,):
                raise ValueError(f"map {name}: expected {n} ROI values, got shape {v.shape}")
            write_atomic(folder / f"{name}.npy", lambda f, v=v: np.save(f, v), binary=True)

    def read_info(self, key: str) -> dict:
        """The entry's volume.json."""
        path = self.entry(key) / "volume.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"maps cache entry unreadable ({type(exc).__name__})", path=str(path),
                             fix="delete the entry folder; it is recomputed on the next run") from exc

    def read_volume(self, key: str) -> dict:
        """The resampled CT and mask of an entry: the volume.json fields plus ``image`` (x, y, z)
        float32 HU (not clipped) and ``mask`` (x, y, z) uint8. The whole-tumour PyRadiomics
        features of the study (row b) are computed on these, i.e. on the maps' own grid."""
        out = self.read_info(key)
        entry = self.entry(key)
        out["image"] = np.load(entry / "image.npy")
        out["mask"] = np.load(entry / "mask.npy")
        return out

    def read_roi_values(self, key: str, names: Sequence[str]) -> np.ndarray:
        """(F, roi_voxels) float32 values of the named maps at the mask's voxels
        (``np.nonzero(mask)`` order). KeyError naming what is missing."""
        missing = [n for n in names if not (self.entry(key) / "maps" / f"{n}.npy").is_file()]
        if missing:
            raise KeyError(f"maps cache entry {key} lacks {missing}")
        folder = self.entry(key) / "maps"
        n = self.read_info(key)["roi_voxels"]
        out = np.empty((len(names), n), dtype=np.float32)
        for i, name in enumerate(names):
            out[i] = np.load(folder / f"{name}.npy")
        return out

    def read_maps(self, key: str, names: Sequence[str], mask: np.ndarray | None = None) -> np.ndarray:
        """(F, x, y, z) float32 maps on the entry's grid, NaN outside the mask. ``mask`` (x, y, z)
        saves re-reading mask.npy when the caller has it."""
        roi = (np.load(self.entry(key) / "mask.npy") if mask is None else np.asarray(mask)) > 0
        values = self.read_roi_values(key, names)
        out = np.full((len(names),) + roi.shape, np.nan, dtype=np.float32)
        out[:, roi] = values
        return out
