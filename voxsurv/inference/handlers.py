"""Pieces the inference bundle's own `monai.bundle run` workflow calls: the datalist of a folder
and an Ignite handler writing one predictions row per patient. (`voxsurv predict` does more:
Grad-CAM, overlays, per-patient reports and exclusions; see voxsurv.inference.predictor.)"""

from __future__ import annotations

import logging
from pathlib import Path

from voxsurv.inference.outputs import ANCHOR_COLUMNS, PREDICTION_COLUMNS

logger = logging.getLogger(__name__)



def bundle_datalist(dataset_dir: str) -> list[dict]:
    """``[{"image", "mask", "patient_id"}]`` from ``dataset_dir/manifest.csv`` (columns patient_id,
    image, mask; paths relative to the CSV). An empty list when there is no manifest, so the
    config still parses (MONAI Label, verify_net_in_out, check_properties read it)."""
    from voxsurv.inference.predictor import read_prediction_manifest

    path = Path(dataset_dir) / "manifest.csv"
    if not path.is_file():
        return []
    rows = read_prediction_manifest(path)
    return [{"image": r["image"], "mask": r["mask"], "patient_id": r["patient_id"]} for r in rows
            if r.get("image") and r.get("mask")]


def require_patients(dataset, dataset_dir: str) -> None:
    """Stop `monai.bundle run` with a clear message when there is nothing to predict."""
    from voxsurv.core.errors import InputError

    if len(dataset) == 0:
        raise InputError("no patients to predict: manifest.csv missing or empty", path=str(Path(dataset_dir) / "manifest.csv"),
                         fix="pass --dataset_dir DIR with DIR/manifest.csv (patient_id, image, mask), or use voxsurv predict")
    logger.info("predicting %d patient(s) from %s", len(dataset), Path(dataset_dir) / "manifest.csv")


class PredictionsWriter:
    """Ignite handler: after each iteration keep the PREDICTION_COLUMNS (voxsurv.inference.outputs)
    of every patient in it (+ anchor_offset, image_risk when anchored); at the end write
    ``output_dir/predictions.csv``.

    Args:
        output_dir: where predictions.csv goes.
        anchored: add the anchor_offset and image_risk columns.
    """

    def __init__(self, output_dir: str, anchored: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.columns = list(PREDICTION_COLUMNS) + (list(ANCHOR_COLUMNS) if anchored else [])
        self.rows: list[dict] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine) -> None:
        outputs, batches = engine.state.output, engine.state.batch
        if isinstance(outputs, dict):  # an evaluator that does not decollate
            outputs, batches = [outputs], [batches]
        for out, batch in zip(outputs, batches):
            pid = batch.get("patient_id") if isinstance(batch, dict) else None
            pid = pid[0] if isinstance(pid, (list, tuple)) else pid
            row = {"patient_id": pid, "risk": out["risk"], "tier": out["tier"],
                   "in_training_range": out.get("in_training_range")}
            row.update(out.get("survival", {}))
            row.update({k: out[k] for k in ANCHOR_COLUMNS if k in out})
            self.rows.append(row)
            logger.info("patient %s: risk %.4f (%s)", pid, row["risk"], row["tier"])

    def write(self, engine) -> None:
        import pandas as pd

        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "predictions.csv"
        pd.DataFrame(self.rows, columns=self.columns).to_csv(path, index=False)
        logger.info("%d patient(s) -> %s", len(self.rows), path)
