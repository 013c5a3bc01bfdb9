"""Post-processing of the network output for one patient (MONAI dictionary transforms, used in
the inference bundle's ``postprocessing`` Compose): slice risks -> patient risk -> risk tier ->
predicted survival S(t) at fixed times from the stored Breslow baseline.

The network returns one log-hazard per tumour slice, (N, 1); training scored a patient by the
MEAN of its slice risks (survival.handlers.ConcordanceIndex, aggregation="mean"), so inference does
the same. Applied to an un-decollated batch holding all slices of ONE patient.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from voxsurv.inference.bundle_info import REPORT_TIMES_DAYS, risk_tier

__all__ = ["PatientRiskd", "RiskTierd", "SurvivalAtTimesd"]

AGGREGATIONS = ("mean", "median", "max")


class PatientRiskd(MapTransform):
    """(N, 1) slice risks under ``keys`` -> ``d[output_key]`` patient risk (float) and
    ``d["slice_risks"]`` (list of N floats).

    Args:
        keys: key of the network output (default "pred").
        aggregation: "mean" (as in training), "median" or "max".
        output_key: where the patient risk goes.
    """

    def __init__(self, keys: KeysCollection = "pred", aggregation: str = "mean", output_key: str = "risk",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.aggregation = aggregation
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            r = (pred.detach().cpu().double() if isinstance(pred, torch.Tensor)
                 else torch.as_tensor(np.asarray(pred, dtype=float))).reshape(-1)
            if r.numel() == 0:
                raise ValueError("no slice risks to aggregate (no tumour slice reached the network)")
            agg = {"mean": r.mean(), "median": r.median(), "max": r.max()}[self.aggregation]
            d[self.output_key] = float(agg)
            d["slice_risks"] = [float(v) for v in r]
        return d


class RiskTierd(MapTransform):
    """Risk tier Low / Intermediate / High from the training cohort's tertile cut-offs.

    Args:
        keys: key of the patient risk (default "risk").
        cutoffs: (c1, c2): Low below c1, Intermediate below c2, High from c2 on.
        output_key: where the tier name goes.
    """

    def __init__(self, keys: KeysCollection = "risk", cutoffs: Sequence[float] = (0.0, 0.0),
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


class SurvivalAtTimesd(MapTransform):
    """Predicted survival S(t | risk) = exp(-H0(t) exp(risk)) at ``times`` (days) with the
    training cohort's Breslow baseline H0 (survival.calibration.BreslowBaseline, step function).
    Times beyond the training follow-up give None (the baseline is unknown there).

    Args:
        keys: key of the patient risk.
        baseline: a BreslowBaseline.
        times: days (default 365, 730, 1095).
        output_key: where the {"s_365": ..., ...} dict goes.
    """

    def __init__(self, keys: KeysCollection = "risk", baseline=None, times: Sequence[float] = REPORT_TIMES_DAYS,
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
