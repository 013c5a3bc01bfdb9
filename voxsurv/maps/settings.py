"""Settings of a voxel-map extraction, shared by both backends, the transform and the cache.

One dataclass so that the exact parameters that produced a map travel with it (JSON sidecar) and
key the cache: a change of any setting gives a different `stable_hash()`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from voxsurv.core.errors import InputError

#: Bump when a change in this package changes the maps produced with the same settings.
MAPS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class MapSettings:
    """Parameters of voxel-level radiomics maps (defaults: the paper's).

    Args:
        radius: kernel radius in voxels; 1 gives a 3 x 3 in-plane window.
        bin_width: fixed bin width in HU (PyRadiomics `binWidth`; edges at multiples of it).
        bin_count: fixed number of bins instead of a width (PyRadiomics `binCount`); when set it
            wins over `bin_width`, as in PyRadiomics.
        window: (low, high) HU; the CT is clipped to it before extraction (the paper's
            [-95, 155] HU = width 250, level 30). None: no clipping.
        force2d: windows and texture matrices per axial slice (PyRadiomics `force2D`,
            `force2Ddimension=0`, i.e. the slice axis of a (z, y, x) array).
        masked_kernel: only ROI voxels inside a window count (PyRadiomics `maskedKernel`).
        dtype: "float64" or "float32", the torch engine's compute precision (PyRadiomics is
            always float64).
    """

    radius: int = 1
    bin_width: float = 25.0
    bin_count: int | None = None
    window: tuple[float, float] | None = (-95.0, 155.0)
    force2d: bool = True
    masked_kernel: bool = True
    dtype: str = "float64"

    def __post_init__(self):
        if int(self.radius) < 1:
            raise InputError(f"kernel radius must be >= 1, got {self.radius}")
        if self.bin_count is None and not float(self.bin_width) > 0:
            raise InputError(f"bin width must be > 0, got {self.bin_width}")
        if self.bin_count is not None and int(self.bin_count) < 1:
            raise InputError(f"bin count must be >= 1, got {self.bin_count}")
        if self.window is not None:
            lo, hi = (float(v) for v in self.window)
            if not lo < hi:
                raise InputError(f"HU window must be (low, high) with low < high, got {self.window}")
            object.__setattr__(self, "window", (lo, hi))
        if self.dtype not in ("float64", "float32"):
            raise InputError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        object.__setattr__(self, "radius", int(self.radius))
        object.__setattr__(self, "bin_width", float(self.bin_width))
        if self.bin_count is not None:
            object.__setattr__(self, "bin_count", int(self.bin_count))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["window"] = None if self.window is None else list(self.window)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MapSettings":
        d = dict(d)
        if d.get("window") is not None:
            d["window"] = tuple(d["window"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def to_pyradiomics(self) -> dict:
        """Keyword settings for `RadiomicsFeatureExtractor(**settings)` giving these maps."""
        params = {
            "kernelRadius": self.radius,
            "maskedKernel": self.masked_kernel,
            "force2D": self.force2d,
            "force2Ddimension": 0,
            "initValue": float("nan"),
            "label": 1,
            # validity checks only: let one-slice or one-voxel ROIs through (maps are per window).
            "minimumROIDimensions": 1,
            "minimumROISize": None,
        }
        if self.bin_count is not None:
            params["binCount"] = self.bin_count
        else:
            params["binWidth"] = self.bin_width
        return params

    def stable_hash(self) -> str:
        """sha256 of the canonical JSON of the settings (+ format version); stable across runs."""
        payload = json.dumps({"v": MAPS_FORMAT_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()
