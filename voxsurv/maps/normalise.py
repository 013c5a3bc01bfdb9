"""Cohort z-score + discretisation of voxel maps, as in the paper, with statistics stored as JSON.

Maps have wildly different scales (Energy ~1e5, Idmn ~1), so each map is z-scored with a mean and
standard deviation fitted once on the TRAINING cohort (ROI voxels pooled over patients) and
re-applied unchanged to validation, test and inference data; then the z-scores are clipped to
[-z_clip, z_clip] and cut into `n_bins` equal-width bins (default 32 over [-3, 3]), which bounds
outliers and gives every map the same range. The network gets the bins CENTRED (bin / n_bins - 0.5,
0 outside the tumour): as integers 1..32 with 0 outside (the first shipped weights), every channel
was about 16.5 x mask and any random convolution computed tumour area (issue 11).

Per-patient z-scoring (`per_patient=True`) exists for comparison but is not the default: it maps
every patient's tumour to mean 0 / std 1 per map, which erases the between-patient differences in
level and spread (a more heterogeneous tumour, a denser one) that a survival model needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxsurv.core.errors import InputError
from voxsurv.core.jsonfile import write_json_atomic

STATS_FORMAT = "voxsurv-map-statistics/1"

#: What MapStatistics.apply returns: see its docstring.
SCALES = ("centred", "zscore")


def _roi_values(maps: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(F, N) values of the ROI voxels; the ROI is `mask > 0` or, without a mask, where any map
    is finite (backends write NaN outside the ROI)."""
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(maps.shape[0], -1)
    if mask is None:
        roi = np.isfinite(flat).any(axis=0)
    else:
        mask = np.asarray(mask)
        if mask.shape != maps.shape[1:]:
            mask = mask.reshape(maps.shape[1:]) if mask.size == np.prod(maps.shape[1:]) else None
            if mask is None:
                raise InputError(f"mask shape does not match the maps' spatial shape {maps.shape[1:]}")
        roi = mask.reshape(-1) > 0
    return flat[:, roi]


@dataclass
class MapStatistics:
    """Per-map mean and standard deviation over ROI voxels of a training cohort (+ binning).

    Args:
        names: map names, in channel order.
        mean, std: per map (population std, ddof=0), over all ROI voxels of all fitted patients;
            NaN voxels inside the ROI (a failed feature) are ignored.
        count: ROI voxels used per map.
        n_bins: number of bins after z-scoring.
        z_clip: z-scores are clipped to [-z_clip, z_clip] before binning.
        settings: the MapSettings (dict) the maps were computed with, to catch mismatches.
    """

    names: list[str]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    n_bins: int = 32
    z_clip: float = 3.0
    settings: dict = field(default_factory=dict)

    # ---- fitting (streaming: one patient at a time, Chan et al.'s pairwise mean/M2 update) ----
    @classmethod
    def fit(cls, patients: Iterable, names: Sequence[str], n_bins: int = 32, z_clip: float = 3.0,
            settings: dict | None = None) -> "MapStatistics":
        """Fit on an iterable of `maps` arrays (F, ...) or `(maps, mask)` pairs, one per patient,
        without holding the cohort in memory."""
        names = list(names)
        count = np.zeros(len(names))
        mean = np.zeros(len(names))
        m2 = np.zeros(len(names))
        for item in patients:
            maps, mask = item if isinstance(item, tuple) else (item, None)
            maps = np.asarray(maps)
            if maps.shape[0] != len(names):
                raise InputError(f"maps have {maps.shape[0]} channels but {len(names)} names")
            vals = _roi_values(maps, mask)
            finite = np.isfinite(vals)
            n_b = finite.sum(axis=1).astype(np.float64)
            v0 = np.where(finite, vals, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_b = np.where(n_b > 0, v0.sum(axis=1) / np.maximum(n_b, 1), 0.0)
            m2_b = (np.where(finite, vals - mean_b[:, None], 0.0) ** 2).sum(axis=1)
            n = count + n_b
            delta = mean_b - mean
            with np.errstate(invalid="ignore", divide="ignore"):
                w = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            mean = mean + delta * w
            m2 = m2 + m2_b + delta ** 2 * count * w
            count = n
        if not (count > 0).any():
            raise InputError("no ROI voxels to fit map statistics on",
                             fix="pass at least one patient with a non-empty mask")
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(np.where(count > 0, m2 / np.maximum(count, 1), np.nan))
        mean = np.where(count > 0, mean, np.nan)
        return cls(names, mean, std, count, int(n_bins), float(z_clip), dict(settings or {}))

    # ---- applying ----
    def zscore(self, maps, mask=None, per_patient: bool = False) -> np.ndarray:
        """(x - mean) / std per map; a map with std 0 (constant in training) gives 0. NaN stays NaN.
        `per_patient=True` uses this patient's own ROI statistics instead (not the default)."""
        maps = np.asarray(maps, dtype=np.float64)
        self._check_channels(maps)
        if per_patient:
            vals = _roi_values(maps, mask)
            with np.errstate(invalid="ignore"):
                mean, std = np.nanmean(vals, axis=1), np.nanstd(vals, axis=1)
        else:
            mean, std = self.mean, self.std
        shape = (-1,) + (1,) * (maps.ndim - 1)
        safe = np.where(np.isfinite(std) & (std > 0), std, np.inf)
        return (maps - mean.reshape(shape)) / safe.reshape(shape)

    def discretise(self, z: np.ndarray) -> np.ndarray:
        """Clipped z-scores -> bins 1..n_bins (equal width over [-z_clip, z_clip]); NaN stays NaN."""
        z = np.clip(np.asarray(z, dtype=np.float64), -self.z_clip, self.z_clip)
        width = 2.0 * self.z_clip / self.n_bins
        bins = np.floor((z + self.z_clip) / width) + 1.0
        return np.minimum(bins, self.n_bins)

    def apply(self, maps, mask=None, scale: str = "centred", per_patient: bool = False,
              outside_value: float | None = 0.0) -> np.ndarray:
        """z-score, clip to [-z_clip, z_clip], then ``scale``: ``"centred"`` = bin / n_bins - 0.5 with
        bins 1..n_bins (:meth:`discretise`), in (-0.47, 0.5]: mean ~0 inside the tumour, so a map
        channel is not "constant x mask" (the integer bins 1..32 of the first weights were);
        ``"zscore"`` = the clipped z-scores. Then ``outside_value`` where the map is NaN (outside
        the ROI or a failed feature; 0 = "not tumour"); ``outside_value=None`` keeps NaN. Only ROI
        voxels (``mask > 0``, or finite somewhere without a mask) are computed. Returns float32."""
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        maps = np.asarray(maps)
        self._check_channels(maps)
        # only ROI voxels are normalised (a tumour is a few % of the volume: ~20x less work)
        if mask is None:
            roi = np.isfinite(maps).any(axis=0)
        else:
            roi = np.asarray(mask).reshape(maps.shape[1:]) > 0
        vals = maps[:, roi].astype(np.float64)
        if per_patient:
            with np.errstate(invalid="ignore"):
                mean, std = np.nanmean(vals, axis=1), np.nanstd(vals, axis=1)
        else:
            mean, std = self.mean, self.std
        safe = np.where(np.isfinite(std) & (std > 0), std, np.inf)
        z = (vals - mean[:, None]) / safe[:, None]
        if scale == "zscore":
            vals = np.clip(z, -self.z_clip, self.z_clip)
        else:
            vals = self.discretise(z) / self.n_bins - 0.5
        fill = np.nan if outside_value is None else outside_value
        out = np.full(maps.shape, fill, dtype=np.float32)
        out[:, roi] = np.where(np.isnan(vals), fill, vals)
        return out

    def _check_channels(self, maps: np.ndarray) -> None:
        if maps.shape[0] != len(self.names):
            raise InputError(f"maps have {maps.shape[0]} channels, statistics were fitted on "
                             f"{len(self.names)}", fix="compute the same features as at fitting")

    def select(self, names: Sequence[str]) -> "MapStatistics":
        """The statistics of a subset of maps, in the given order."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise InputError(f"no statistics for maps {missing}",
                             fix="fit the statistics on maps that include these features")
        idx = [self.names.index(n) for n in names]
        return MapStatistics(list(names), self.mean[idx], self.std[idx], self.count[idx],
                             self.n_bins, self.z_clip, dict(self.settings))

    # ---- storage ----
    def to_dict(self) -> dict:
        def floats(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64)]

        return {"format": STATS_FORMAT, "names": list(self.names), "mean": floats(self.mean),
                "std": floats(self.std), "count": [int(c) for c in self.count],
                "n_bins": self.n_bins, "z_clip": self.z_clip, "settings": self.settings}

    @classmethod
    def from_dict(cls, d: dict) -> "MapStatistics":
        if d.get("format") != STATS_FORMAT:
            raise InputError(f"not a map-statistics file (format {d.get('format')!r})",
                             fix=f"expected format {STATS_FORMAT!r}, written by MapStatistics.save")

        def arr(v):
            return np.array([np.nan if x is None else x for x in v], dtype=np.float64)

        return cls(list(d["names"]), arr(d["mean"]), arr(d["std"]),
                   np.asarray(d["count"], dtype=np.float64), int(d["n_bins"]),
                   float(d["z_clip"]), dict(d.get("settings") or {}))

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically (temporary file + rename). Floats round-trip exactly."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "MapStatistics":
        path = Path(path)
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read map statistics ({type(exc).__name__})", path=str(path),
                             fix="fit them with MapStatistics.fit(...).save(path)") from exc
        try:
            return cls.from_dict(d)
        except InputError as exc:
            raise InputError(exc.problem, path=str(path), fix=exc.fix) from exc
