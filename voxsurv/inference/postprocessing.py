"""Post-processing of the network output for one patient (MONAI dictionary transforms, used in
the inference bundle's ``postprocessing`` Compose on each decollated patient): network output ->
patient risk (-> anchor offset + image risk when anchored) -> risk tier -> inside the training
patients' range or not -> predicted survival S(t) at fixed times from the stored Breslow baseline.

The network pools the tumour's slices itself (networks.VisionMambaSurv, one risk per patient), as
it did in training: nothing is aggregated here.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from torch import nn

from voxsurv.inference.bundle_info import REPORT_TIMES_DAYS, in_training_range, risk_tier

__all__ = ["PatientRiskd", "AnchorDecompositiond", "RiskTierd", "TrainingRiskRanged", "SurvivalAtTimesd"]


class PatientRiskd(MapTransform):
    """The network's output for ONE patient (a tensor with one value, e.g. (1,) after decollation)
    under ``keys`` -> ``d[output_key]`` as a float.

    Why the check: an output with several values is a per-slice network (the old format) or a
    batch of several patients; averaging it silently would report a different quantity.

    Args:
        keys: key of the network output (the bundle: "pred").
        output_key: where the patient risk goes.
    """

    def __init__(self, keys: KeysCollection, output_key: str = "risk", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            r = (pred.detach().cpu().double() if isinstance(pred, torch.Tensor)
                 else torch.as_tensor(np.asarray(pred, dtype=float))).reshape(-1)
            if r.numel() != 1:
                raise ValueError(f"expected one risk per patient, got {r.numel()} values: the network must pool the "
                                 "tumour's slices (patient-level VisionMambaSurv) and the batch must hold one patient")
            d[self.output_key] = float(r[0])
        return d


class AnchorDecompositiond(MapTransform):
    """For an anchored network (risk = fixed descriptor offset + image risk): ``anchor_offset`` =
    ``network.anchor_offset(descriptors)`` and ``image_risk`` = risk - anchor_offset, so a report
    shows how much of the risk the tumour's volume and density alone give. Does nothing when
    ``anchored`` is False.

    Args:
        keys: key of the patient's descriptors ((n_descriptors,) tensor).
        network: the network (VisionMambaSurv or SurvivalEnsemble) that produced the risk.
        anchored: whether it is anchored (``InferenceInfo.anchored``).
        risk_key: where the patient risk is (from :class:`PatientRiskd`).
    """

    def __init__(self, keys: KeysCollection, network: nn.Module | None = None, anchored: bool = False,
                 risk_key: str = "risk", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if anchored and network is None:
            raise ValueError("AnchorDecompositiond needs the network when anchored")
        self.network, self.anchored, self.risk_key = network, bool(anchored), risk_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if not self.anchored:
            return d
        for key in self.key_iterator(d):
            desc = torch.as_tensor(d[key]).float().reshape(1, -1)
            buffers = list(self.network.buffers()) + list(self.network.parameters())
            if buffers:
                desc = desc.to(buffers[0].device)
            with torch.no_grad():
                offset = float(self.network.anchor_offset(desc).reshape(-1)[0])
            d["anchor_offset"] = offset
            d["image_risk"] = float(d[self.risk_key]) - offset
        return d


class RiskTierd(MapTransform):
    """Risk tier Low / Intermediate / High from the training patients' tertile cut-offs.

    Args:
        keys: key of the patient risk (the bundle: "risk").
        cutoffs: (c1, c2): Low below c1, Intermediate below c2, High from c2 on.
        output_key: where the tier name goes.
    """

    def __init__(self, keys: KeysCollection, cutoffs: Sequence[float] = (0.0, 0.0),
                 output_key: str = "tier", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(cutoffs) != 2 or cutoffs[0] > cutoffs[1]:
            raise ValueError(f"cutoffs must be two increasing values, got {cutoffs}")
        self.cutoffs = [float(c) for c in cutoffs]
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = risk_tier(float(d[key]), self.cutoffs)
            d["tier_cutoffs"] = list(self.cutoffs)
        return d


class TrainingRiskRanged(MapTransform):
    """``in_training_range``: whether the patient's risk lies within the training patients' [min,
    max]. Outside it the tier and S(t) extrapolate beyond anything the model was calibrated on.

    Args:
        keys: key of the patient risk.
        risk_range: [min, max] of the training patients' risks (``InferenceInfo.training_risk_range``).
        output_key: where the flag goes (the range itself goes to ``training_risk_range``).
    """

    def __init__(self, keys: KeysCollection, risk_range: Sequence[float] = (0.0, 0.0),
                 output_key: str = "in_training_range", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(risk_range) != 2 or risk_range[0] > risk_range[1]:
            raise ValueError(f"risk_range must be [min, max], got {risk_range}")
        self.risk_range = [float(v) for v in risk_range]
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = in_training_range(float(d[key]), self.risk_range)
            d["training_risk_range"] = list(self.risk_range)
        return d


class SurvivalAtTimesd(MapTransform):
    """Predicted survival S(t | risk) = exp(-H0(t) exp(risk)) at ``times`` (days) with the
    training patients' Breslow baseline H0 (voxsurv.stats.calibration.BreslowBaseline, step function).
    Times beyond the training follow-up give None (the baseline is unknown there).

    Args:
        keys: key of the patient risk.
        baseline: a BreslowBaseline.
        times: days (default 365, 730, 1095).
        output_key: where the {"s_365": ..., ...} dict goes.
    """

    def __init__(self, keys: KeysCollection, baseline=None, times: Sequence[float] = REPORT_TIMES_DAYS,
                 output_key: str = "survival", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if baseline is None:
            raise ValueError("SurvivalAtTimesd needs the Breslow baseline (InferenceInfo.breslow())")
        self.baseline = baseline
        self.times = [float(t) for t in times]
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            out = {}
            for t in self.times:
                s = float(np.atleast_1d(self.baseline.survival(t, float(d[key])))[0])
                out[f"s_{int(t)}"] = s if np.isfinite(s) else None
            d[self.output_key] = out
        return d
