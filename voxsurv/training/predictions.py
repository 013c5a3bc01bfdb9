"""Per-patient prediction tables written after every evaluation, so that the epoch (and every
other choice) can be made later on pooled out-of-fold predictions instead of inside one run.

Columns (one row per patient): patient_id, risk, image_risk, anchor_offset, log_volume_ml,
mean_hu, time_days, event, split, n_slices. For an anchored network risk = anchor_offset +
image_risk (the anchor is the fixed Cox on the descriptors); otherwise anchor_offset is 0 and
image_risk = risk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxsurv.training.distributed import is_rank0, unwrap

#: a training/evaluation run's per-patient table (not the inference predictions.csv:
#: voxsurv.inference.outputs.PREDICTION_COLUMNS)
RUN_PREDICTION_COLUMNS = ["patient_id", "risk", "image_risk", "anchor_offset", "log_volume_ml", "mean_hu",
                      "time_days", "event", "split", "n_slices"]


def anchor_offsets(network, descriptors: np.ndarray) -> np.ndarray:
    """(N,) fixed anchor offsets of `network` for (N, D) descriptors (0 for an unanchored one)."""
    import torch

    module = unwrap(network)
    if not hasattr(module, "anchor_offset") or len(descriptors) == 0:
        return np.zeros(len(descriptors))
    param = next(module.parameters(), None)
    device = param.device if param is not None else "cpu"
    with torch.no_grad():
        out = module.anchor_offset(torch.as_tensor(np.asarray(descriptors, dtype=np.float32), device=device))
    return out.detach().cpu().double().numpy().reshape(-1)


def patient_predictions(patient_table: dict | None, patients, network=None):
    """Prediction table from a patient-level metric's gathered arrays (`patient_number`, `risk`,
    ...; voxsurv.training.concordance.PatientConcordanceMetric.patient_table) and the data module's patient
    table (SurvivalPatients.table())."""
    import pandas as pd

    if patient_table is None or len(patient_table["patient_number"]) == 0:
        return pd.DataFrame(columns=RUN_PREDICTION_COLUMNS)
    pred = pd.DataFrame({"patient_number": np.asarray(patient_table["patient_number"]).astype(int),
                         "risk": np.asarray(patient_table["risk"], dtype=float)})
    table = pred.merge(patients, on="patient_number", how="left", validate="one_to_one")
    if table["patient_id"].isna().any():
        missing = table.loc[table["patient_id"].isna(), "patient_number"].tolist()
        raise RuntimeError(f"risks for patient numbers {missing} that the data module did not prepare")
    descriptors = table[["log_volume_ml", "mean_hu"]].to_numpy(dtype=float)
    table["anchor_offset"] = anchor_offsets(network, descriptors) if network is not None else 0.0
    table["image_risk"] = table["risk"] - table["anchor_offset"]
    return table[RUN_PREDICTION_COLUMNS]


class PatientPredictionsWriter:
    """Ignite handler: after each evaluator run, write its per-patient predictions (rank 0; the
    metric's buffers are already gathered across ranks).

    Files in `output_dir`: `<prefix>_<role>.csv` (newest) and, with `per_epoch`,
    `<prefix>_<role>_epoch{E}.csv` (E = the engine's epoch: the trainer's epoch for a validation
    run by ValidationHandler, 0 for one before training). With several `roles` (a score-only run
    over e.g. [train, test]) one file per role.
    """

    def __init__(self, metric, data, network, output_dir: str, roles=("val",), per_epoch: bool = True,
                 prefix: str = "predictions") -> None:
        self.metric, self.data, self.network = metric, data, network
        self.output_dir, self.per_epoch, self.prefix = Path(output_dir), bool(per_epoch), prefix
        self.roles = [roles] if isinstance(roles, str) else list(roles)

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine) -> None:
        if not is_rank0():
            return
        table = self.data.table()
        table = table[table["role"].isin(self.roles)].drop_duplicates("patient_number")
        pred = patient_predictions(self.metric.patient_table, table, self.network)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        role_of = dict(zip(table["patient_id"], table["role"]))
        for role in self.roles:
            part = pred[pred["patient_id"].map(role_of) == role]
            part.to_csv(self.output_dir / f"{self.prefix}_{role}.csv", index=False)
            if self.per_epoch:
                part.to_csv(self.output_dir / f"{self.prefix}_{role}_epoch{engine.state.epoch}.csv", index=False)
