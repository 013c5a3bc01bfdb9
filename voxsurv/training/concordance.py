"""Ignite handler for Harrell's C-index at PATIENT level over a whole epoch, correct under DDP.

Why patient level: the network scores 2D tumour slices, but survival belongs to the patient. The
metric buffers every slice's risk together with its label `[time, event, patient_number]`
(MONAI's `CumulativeIterationMetric`; under DDP the buffers are all-gathered across ranks before
`aggregate`), then reduces each patient's slice risks to one risk — the **mean** by default
(`"median"` and `"max"` are offered) — and computes Harrell's C with scikit-survival's
`concordance_index_censored` (pairs with tied risk count 1/2; tied times follow sksurv).

Labels of shape (B, 2) `[time, event]` (no patient column) treat every row as its own patient.
`patient_number` is any integer unique per patient in the run (e.g. the manifest row); it is
carried as a float in the label tensor, exact up to 2**24.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.handlers.ignite_metric import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric

AGGREGATIONS = ("mean", "median", "max")


def patient_risks(slice_risk, label, aggregation: str = "mean"):
    """Reduce slice-level risks to one per patient.

    Args:
        slice_risk: (N,) or (N, 1) risks, higher = shorter survival.
        label: (N, 2) `[time, event]` or (N, 3) `[time, event, patient_number]`.
        aggregation: how slice risks become a patient's risk: "mean" | "median" | "max".

    Returns:
        dict of 1-D numpy arrays `patient_number, risk, time, event, n_slices`, sorted by patient.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    risk = np.asarray(torch.as_tensor(slice_risk).detach().cpu().float(), dtype=np.float64).reshape(-1)
    lab = np.asarray(torch.as_tensor(label).detach().cpu().double())
    if lab.ndim != 2 or lab.shape[1] not in (2, 3) or lab.shape[0] != risk.shape[0]:
        raise ValueError(f"label must be (N, 2) or (N, 3) with N = {risk.shape[0]} risks, got {lab.shape}")
    patient = lab[:, 2].astype(np.int64) if lab.shape[1] == 3 else np.arange(len(risk))
    ids, inverse, counts = np.unique(patient, return_inverse=True, return_counts=True)
    reduce = {"mean": np.mean, "median": np.median, "max": np.max}[aggregation]
    out_risk = np.array([reduce(risk[inverse == i]) for i in range(len(ids))])
    first = np.array([np.flatnonzero(inverse == i)[0] for i in range(len(ids))], dtype=np.int64)
    return dict(patient_number=ids, risk=out_risk, time=lab[first, 0], event=lab[first, 1].astype(int),
                n_slices=counts)


def harrell_c_index(time, event, risk) -> float:
    """Harrell's C (scikit-survival's estimator); NaN when no pair is comparable (e.g. no event)."""
    from sksurv.metrics import concordance_index_censored

    event = np.asarray(event).astype(bool)
    if not event.any() or len(event) < 2:
        return float("nan")
    try:
        return float(concordance_index_censored(event, np.asarray(time, float), np.asarray(risk, float))[0])
    except ZeroDivisionError:  # no comparable pairs
        return float("nan")


class PatientConcordanceMetric(CumulativeIterationMetric):
    """Epoch-level patient C-index: buffers slice risks + labels, aggregates per patient, then C.

    After `aggregate()`, `self.patient_table` holds the patient-level arrays used (see
    `patient_risks`), so a writer can save per-patient predictions from the same gathered data.
    """

    def __init__(self, aggregation: str = "mean") -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.aggregation = aggregation
        self.patient_table: dict | None = None

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor):  # type: ignore[override]
        return y_pred.detach().float().reshape(y_pred.shape[0], -1)[:, :1], y.detach().float()

    def aggregate(self) -> float:  # type: ignore[override]
        y_pred, y = self.get_buffer()
        if not isinstance(y_pred, torch.Tensor) or y_pred.numel() == 0:
            self.patient_table = None
            return float("nan")
        self.patient_table = patient_risks(y_pred, y, self.aggregation)
        t = self.patient_table
        return harrell_c_index(t["time"], t["event"], t["risk"])


class ConcordanceIndex(IgniteMetricHandler):
    """Ignite metric: Harrell's C-index at patient level over the epoch (mean of slice risks).

    Args:
        aggregation: slice -> patient risk reduction, "mean" (default), "median" or "max".
        output_transform: maps `engine.state.output` to `(y_pred, y)`; in MONAI engines use
            `monai.handlers.from_engine(["pred", "label"])`, with label rows
            `[time, event, patient_number]`.
    """

    def __init__(self, aggregation: str = "mean", output_transform: Callable = lambda x: x) -> None:
        super().__init__(metric_fn=PatientConcordanceMetric(aggregation), output_transform=output_transform,
                         save_details=False)

    @property
    def patient_table(self) -> dict | None:
        return self.metric_fn.patient_table  # type: ignore[attr-defined]
