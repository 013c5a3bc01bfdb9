"""What the inference bundle stores beside its weights (``models/inference_info.json``): the
selected maps and their cohort z-score/binning statistics, the network's keyword arguments and
member count, the preprocessing settings (the arguments of
``custom_transforms.pipeline.patient_preprocessing``), the Breslow baseline hazard, the risk-tier
cut-offs and the range of the training patients' risks.

One JSON, so the weights and everything fitted with them travel (and are versioned) together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from voxsurv.core.errors import InputError
from voxsurv.core.jsonfile import write_json_atomic

INFO_FORMAT = "voxsurv-inference-info/2"
#: per-slice networks (CT z-scored in the tumour, no mask channel, 64 mm crops, mean of slice risks)
OLD_INFO_FORMATS = ("voxsurv-inference-info/1",)
INFO_FILE = "inference_info.json"
TIERS = ("Low", "Intermediate", "High")
#: S(t) is reported at these times (days): 1, 2 and 3 years
REPORT_TIMES_DAYS = (365, 730, 1095)
#: keyword arguments of custom_transforms.pipeline.patient_preprocessing the bundle stores (besides
#: the features and the map statistics, which have their own fields)
PREPROCESSING_KEYS = ("pixdim", "img_size", "min_area_mm2", "fov_margin", "min_fov_mm", "hu_window", "maps_backend")


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
        features: selected map names, in channel order (channels 1..F; 0 is the CT, F+1 the mask).
        map_statistics: ``voxsurv.maps.normalise.MapStatistics.to_dict()`` fitted on the training cohort.
        network: keyword arguments of ``networks.VisionMambaSurv`` (one member), with
            ``in_channels``, ``img_size``, ``pooling`` and ``n_descriptors`` (> 0: anchored).
        n_members: members of the ``networks.SurvivalEnsemble`` in ``models/model.pt`` (1: one network).
        preprocessing: the keyword arguments of ``patient_preprocessing`` besides the features and
            statistics (:data:`PREPROCESSING_KEYS`: pixdim, img_size, min_area_mm2, fov_margin,
            min_fov_mm, hu_window, maps_backend), exactly as training used them.
        baseline: Breslow baseline (``event_times``, ``cumulative_hazard``, ``last_follow_up``) for
            the uncentred risk, fitted on the training patients' risks from these weights.
        tier_cutoffs: two risk values (tertiles of the training patients' risks): risk below the
            first is Low, below the second Intermediate, else High.
        training_risk_range: [min, max] of the training patients' risks (a new patient's risk
            outside it is extrapolation: ``in_training_range`` false in the report).
        model_version: bundle version + short weights hash.
        weights_sha256: sha256 of ``models/model.pt`` this was fitted with.
        provenance: where weights/statistics came from (training output, dates, cohort sizes).
    """

    features: list[str]
    map_statistics: dict
    network: dict
    preprocessing: dict
    baseline: dict
    tier_cutoffs: list[float]
    training_risk_range: list[float]
    n_members: int = 1
    model_version: str = "0.0.0"
    weights_sha256: str = ""
    tier_method: str = "tertiles (numpy linear quantiles 1/3, 2/3) of the training patients' risks"
    provenance: dict = field(default_factory=dict)
    format: str = INFO_FORMAT

    # ---- derived objects ----
    @property
    def in_channels(self) -> int:
        return int(self.network["in_channels"])

    @property
    def channel_names(self) -> list[str]:
        """What the network's input channels hold: CT, the maps, the tumour mask."""
        return ["ct", *self.features, "mask"]

    @property
    def anchored(self) -> bool:
        """True when the risk is a fixed descriptor offset + the network's image risk."""
        return int(self.network.get("n_descriptors", 0)) > 0

    def statistics(self):
        """The MapStatistics object of the selected maps (for stack_preprocessing); None for a
        network without maps (CT + mask only)."""
        from voxsurv.maps.normalise import MapStatistics

        if not self.features:
            return None
        return MapStatistics.from_dict(self.map_statistics).select(self.features)

    def breslow(self):
        """The voxsurv.stats.calibration.BreslowBaseline object."""
        from voxsurv.stats.calibration import BreslowBaseline

        b = self.baseline
        return BreslowBaseline(np.asarray(b["event_times"], dtype=float),
                               np.asarray(b["cumulative_hazard"], dtype=float), float(b["last_follow_up"]))

    def network_kwargs(self) -> dict:
        """Keyword arguments of one ``networks.VisionMambaSurv`` member."""
        return dict(self.network)

    # ---- storage ----
    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Atomic JSON write (temporary file + rename)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, path: str | Path | None = None) -> "InferenceInfo":
        fmt = d.get("format")
        repackage = ("re-package trained weights with `python -m voxsurv.inference.packaging` "
                     "(the bundle's new weights ship with the next study run)")
        if fmt in OLD_INFO_FORMATS:
            raise InputError(f"the bundle holds weights of the old per-slice format ({fmt}: CT z-scored in the "
                             "tumour, no mask channel, fixed 64 mm crop, mean of slice risks); this voxsurv runs "
                             "patient-level networks through custom_transforms.pipeline.patient_preprocessing",
                             path=None if path is None else str(path), fix=repackage)
        if fmt != INFO_FORMAT:
            raise InputError(f"not a voxsurv inference-info file (format {fmt!r})",
                             path=None if path is None else str(path), fix=repackage)
        known = set(cls.__dataclass_fields__)
        missing = [k for k in ("features", "map_statistics", "network", "preprocessing", "baseline",
                               "tier_cutoffs", "training_risk_range") if k not in d]
        if missing:
            raise InputError(f"inference_info.json lacks {missing}", path=None if path is None else str(path),
                             fix=repackage)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> "InferenceInfo":
        path = Path(path)
        if not path.is_file():
            raise InputError("the inference bundle has no inference_info.json", path=str(path),
                             fix="package trained weights into the bundle: "
                                 "python -m voxsurv.inference.packaging --weights FILE --bundle DIR ...")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"inference_info.json is not valid JSON ({exc})", path=str(path),
                             fix="re-package the bundle") from exc
        info = cls.from_dict(d, path)
        problems = []
        if len(info.tier_cutoffs) != 2 or not info.tier_cutoffs[0] <= info.tier_cutoffs[1]:
            problems.append(f"tier_cutoffs must be two increasing risks, got {info.tier_cutoffs}")
        lo_hi = info.training_risk_range
        if len(lo_hi) != 2 or not lo_hi[0] <= lo_hi[1]:
            problems.append(f"training_risk_range must be [min, max], got {lo_hi}")
        if info.in_channels != len(info.channel_names):
            problems.append(f"the network takes {info.in_channels} channels but the bundle names "
                            f"{len(info.channel_names)} (ct + {len(info.features)} maps + mask)")
        absent = [k for k in PREPROCESSING_KEYS if k not in info.preprocessing]
        if absent:
            problems.append(f"preprocessing lacks {absent}")
        if problems:
            raise InputError("; ".join(problems), path=str(path), fix="re-package the bundle")
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


def tertile_cutoffs(risks) -> list[float]:
    """Tertiles of the training patients' risks (numpy's default linear quantiles, R type 7)."""
    r = np.asarray(risks, dtype=float)
    r = r[np.isfinite(r)]
    if r.size < 3:
        raise InputError(f"{r.size} finite training risks: tertile cut-offs need at least 3",
                         fix="package with at least 3 training patients")
    return [float(v) for v in np.quantile(r, [1 / 3, 2 / 3])]


def in_training_range(risk: float, risk_range) -> bool:
    """True when ``risk`` lies within the training patients' [min, max] risk (inclusive)."""
    lo, hi = (float(v) for v in risk_range)
    return bool(lo <= float(risk) <= hi)
