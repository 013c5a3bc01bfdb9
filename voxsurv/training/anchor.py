"""Fit the anchor of an anchored network: a Cox model on the training patients' tumour
descriptors (log volume + mean HU), fitted BEFORE the network trains and then held fixed.

Why: tumour size and density already rank survival (issue 11: a Cox on volume + mean HU scores
test C 0.637); anchoring puts that ranking into the model explicitly, so the network can only add
what the descriptors do not explain and its `image_risk` can be judged on its own.

The coefficients are lifelines' `CoxPHFitter` (Efron ties, no penalty) on descriptors standardised
with the training patients' mean and standard deviation (ddof=0), which is exactly the form
`networks.VisionMambaSurv.set_anchor(coef, mean, scale)` applies: offset = ((d - mean) / scale) @ coef.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voxsurv.core.errors import InputError
from voxsurv.training.distributed import is_rank0, say, unwrap

logger = logging.getLogger(__name__)


@dataclass
class DescriptorAnchor:
    """A fitted anchor: Cox coefficients on standardised descriptors, with the standardisation."""

    names: list[str]
    coef: list[float]
    mean: list[float]
    scale: list[float]
    n_patients: int
    n_events: int

    def offset(self, descriptors) -> np.ndarray:
        """(N,) linear predictor ((d - mean) / scale) @ coef for descriptors (N, len(names))."""
        d = np.asarray(descriptors, dtype=float).reshape(-1, len(self.names))
        return ((d - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coef)


def fit_anchor(descriptors, time, event, names=("log_volume_ml", "mean_hu"), penalizer: float = 0.0) -> DescriptorAnchor:
    """Fit the anchor on the training patients.

    Args:
        descriptors: (N, D) per-patient descriptors (rows with a non-finite value are an error:
            they name a preprocessing problem that must be fixed, not averaged away).
        time, event: follow-up (days) and event indicator (1 = death) per patient.
        names: descriptor names (column order).
        penalizer: lifelines' L2 penalizer (0 = the plain partial-likelihood fit).
    """
    import pandas as pd
    from lifelines import CoxPHFitter

    d = np.asarray(descriptors, dtype=float)
    names = [str(n) for n in names]
    if d.ndim != 2 or d.shape[1] != len(names):
        raise ValueError(f"descriptors must be (patients, {len(names)}) for {names}, got shape {d.shape}")
    time = np.asarray(time, dtype=float).reshape(-1)
    event = np.asarray(event, dtype=int).reshape(-1)
    if not (len(time) == len(event) == len(d)):
        raise ValueError(f"{len(d)} descriptor rows but {len(time)} times and {len(event)} events")
    if not np.isfinite(d).all():
        raise ValueError("descriptors contain non-finite values; check the tumour masks of the training patients")
    if event.sum() < 1:
        raise ValueError("all training patients are censored: the anchor (a Cox model) cannot be fitted")
    mean = d.mean(axis=0)
    scale = d.std(axis=0)
    if (scale <= 0).any():
        raise ValueError(f"a descriptor is constant over the training patients ({dict(zip(names, scale))}); "
                         "it cannot anchor a Cox model")
    z = (d - mean) / scale
    frame = pd.DataFrame(z, columns=names).assign(time=time, event=event)
    cph = CoxPHFitter(penalizer=penalizer).fit(frame, duration_col="time", event_col="event")
    coef = [float(cph.params_[n]) for n in names]
    return DescriptorAnchor(names=names, coef=coef, mean=mean.tolist(), scale=scale.tolist(),
                            n_patients=int(len(d)), n_events=int(event.sum()))


def anchor_network(network, samples: list[dict], output_dir: str | None = None) -> DescriptorAnchor:
    """Fit the anchor on `samples` (the training patients' samples: "descriptors", "label") and
    set it on `network` (a VisionMambaSurv or SurvivalEnsemble built with n_descriptors > 0);
    write it to `output_dir/anchor.json`."""
    import torch

    if not samples:
        raise InputError("no training patients to fit the anchor on")
    d = torch.stack([torch.as_tensor(s["descriptors"]).float().reshape(-1) for s in samples]).numpy()
    label = torch.stack([torch.as_tensor(s["label"]).float() for s in samples]).numpy()
    anchor = fit_anchor(d, label[:, 0], label[:, 1])
    unwrap(network).set_anchor(anchor.coef, anchor.mean, anchor.scale)
    say("anchor (Cox on standardised " + ", ".join(anchor.names) + f", {anchor.n_patients} training patients, "
        f"{anchor.n_events} events): coef " + ", ".join(f"{c:+.3f}" for c in anchor.coef))
    if output_dir is not None and is_rank0():
        path = Path(output_dir) / "anchor.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(anchor), indent=1))
    return anchor
