"""What the inference bundle stores beside its weights (``models/inference_info.json``): the
selected maps and their cohort z-score/binning statistics, the network's size, the preprocessing
settings, the Breslow baseline hazard and the risk-tier cut-offs of the training cohort.

One JSON, so the weights and everything fitted with them travel (and are versioned) together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from voxsurv.errors import InputError
from voxsurv.jsonfile import write_json_atomic

INFO_FORMAT = "voxsurv-inference-info/1"
INFO_FILE = "inference_info.json"
TIERS = ("Low", "Intermediate", "High")
#: S(t) is reported at these times (days): 1, 2 and 3 years
REPORT_TIMES_DAYS = (365, 730, 1095)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_files(paths) -> str:
    """One sha256 for a set of files (e.g. a DICOM series): over the sorted (name, sha256) pairs,
    so it changes when any file's bytes change, independent of listing order."""
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


@dataclass
class InferenceInfo:
    """Everything inference needs besides the weights.

    Args:
        features: selected map names, in channel order (channel 0 is the CT).
        map_statistics: ``voxelmaps.normalise.MapStatistics.to_dict()`` fitted on the training cohort.
        network: keyword arguments of ``networks.VisionMambaSurv`` (without ``in_channels``).
        preprocessing: pixdim, roi_size_mm, min_area_mm2, HU window, map settings.
        baseline: Breslow baseline (``event_times``, ``cumulative_hazard``, ``last_follow_up``) for
            the uncentred risk, fitted on the training cohort's risks from these weights.
        tier_cutoffs: two risk values (tertiles of the training cohort's patient risks): risk below
            the first is Low, below the second Intermediate, else High.
        aggregation: how slice risks become the patient risk ("mean", as in training).
        model_version: bundle version + short weights hash.
        weights_sha256: sha256 of ``models/model.pt`` this was fitted with.
        provenance: where weights/statistics came from (finetune output, dates, cohort sizes).
        training_risks: ``{"n", "min", "max"}`` of the training patients' risks (the patients the
            baseline and tiers were fitted on): a report says when a risk lies outside it.
    """

    features: list[str]
    map_statistics: dict
    network: dict
    preprocessing: dict
    baseline: dict
    tier_cutoffs: list[float]
    aggregation: str = "mean"
    model_version: str = "0.0.0"
    weights_sha256: str = ""
    tier_method: str = "tertiles (numpy linear quantiles 1/3, 2/3) of the training cohort's patient risks"
    provenance: dict = field(default_factory=dict)
    training_risks: dict = field(default_factory=dict)
    format: str = INFO_FORMAT

    # ---- derived objects ----
    @property
    def in_channels(self) -> int:
        return 1 + len(self.features)

    def statistics(self):
        """The MapStatistics object (for NormaliseMapsd)."""
        from voxelmaps.normalise import MapStatistics

        return MapStatistics.from_dict(self.map_statistics).select(self.features)

    def breslow(self):
        """The survival.calibration.BreslowBaseline object."""
        from survival.calibration import BreslowBaseline

        b = self.baseline
        return BreslowBaseline(np.asarray(b["event_times"], dtype=float),
                               np.asarray(b["cumulative_hazard"], dtype=float), float(b["last_follow_up"]))

    def network_kwargs(self) -> dict:
        return {"in_channels": self.in_channels, **self.network}

    # ---- storage ----
    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Atomic JSON write (temporary file + rename)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "InferenceInfo":
        if d.get("format") != INFO_FORMAT:
            raise InputError(f"not a voxsurv inference-info file (format {d.get('format')!r})",
                             fix="package the bundle with `python -m voxsurv.inference.packaging`")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "InferenceInfo":
        path = Path(path)
        if not path.is_file():
            raise InputError("the inference bundle has no inference_info.json", path=str(path),
                             fix="package a trained finetune output into the bundle: "
                                 "python -m voxsurv.inference.packaging --finetune-output DIR --bundle DIR")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"inference_info.json is not valid JSON ({exc})", path=str(path),
                             fix="re-package the bundle") from exc
        info = cls.from_dict(d)
        if len(info.tier_cutoffs) != 2 or not info.tier_cutoffs[0] <= info.tier_cutoffs[1]:
            raise InputError(f"tier_cutoffs must be two increasing risks, got {info.tier_cutoffs}",
                             path=str(path), fix="re-package the bundle")
        return info


def load_info(path: str | Path) -> InferenceInfo:
    """``InferenceInfo.load`` for bundle configs (``$voxsurv.inference.bundle_info.load_info(...)``)."""
    return InferenceInfo.load(path)


def risk_tier(risk: float, cutoffs) -> str:
    """Low / Intermediate / High: risk < c1, c1 <= risk < c2, risk >= c2."""
    c1, c2 = (float(c) for c in cutoffs)
    if not np.isfinite(risk):
        raise ValueError(f"risk must be finite, got {risk}")
    return TIERS[0] if risk < c1 else TIERS[1] if risk < c2 else TIERS[2]


def risk_range(risks) -> dict:
    """``{"n", "min", "max"}`` of the training patients' finite risks (``InferenceInfo.training_risks``)."""
    r = np.asarray(risks, dtype=float)
    r = r[np.isfinite(r)]
    return {"n": int(r.size), "min": float(r.min()), "max": float(r.max())} if r.size else {}


def tertile_cutoffs(risks) -> list[float]:
    """Tertiles of the training cohort's patient risks (numpy's default linear quantiles, R type 7)."""
    r = np.asarray(risks, dtype=float)
    r = r[np.isfinite(r)]
    if r.size < 3:
        raise InputError(f"{r.size} finite training risks: tertile cut-offs need at least 3",
                         fix="package from a finetune output with predictions for its training split")
    return [float(v) for v in np.quantile(r, [1 / 3, 2 / 3])]
