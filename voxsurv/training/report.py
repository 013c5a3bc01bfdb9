"""The main command's closing lines: the test C-index of the fine-tuned model and, on the demo
cohort (whose true risks are known), the C-index of the true risk on the same patients: the
ceiling the simulation allows, up to chance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from voxsurv.training.distributed import is_rank0, say


def report(output_dir: str, manifest: str, prediction_files: list[str], test_split: str = "test",
           name: str = "predictions", label: str = "fine-tuned model") -> dict:
    """Merge the per-split prediction files into `<name>.csv`, print the test C-index and, for
    the demo cohort (true_risk.csv beside the manifest), the true-risk C-index on the same
    patients; write `<name>_metrics.json`. Under DDP only rank 0 reports."""
    if not is_rank0():
        return {}
    import pandas as pd

    from voxsurv.training.concordance import harrell_c_index

    frames = [pd.read_csv(f) for f in prediction_files if Path(f).exists()]
    if not frames:
        raise RuntimeError(f"no predictions written in {output_dir}")
    pred = pd.concat(frames, ignore_index=True)
    out = Path(output_dir)
    pred.to_csv(out / f"{name}.csv", index=False)
    test = pred[pred["split"] == test_split]
    result = {"test_patients": int(len(test)), "test_events": int(test["event"].sum()),
              "test_c_index": harrell_c_index(test["time_days"], test["event"], test["risk"])}
    say(f"TEST C-index ({label}, {result['test_patients']} patients, {result['test_events']} events): "
        f"{result['test_c_index']:.3f}")
    truth_file = Path(manifest).parent / "true_risk.csv"
    if truth_file.exists():
        truth = pd.read_csv(truth_file)[["patient_id", "true_risk"]]
        m = test.merge(truth, on="patient_id")
        result["true_risk_c_index"] = harrell_c_index(m["time_days"], m["event"], m["true_risk"])
        say(f"true-risk C-index on the same test patients (the simulation's ceiling, up to chance): "
            f"{result['true_risk_c_index']:.3f}")
    say(f"per-patient predictions: {out / f'{name}.csv'}")
    with open(out / f"{name}_metrics.json", "w") as f:
        json.dump({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in result.items()}, f, indent=1)
    return result


def summarise_predictions(folder: str, roles, label: str = "model", manifest: str | None = None) -> dict:
    """Print the C-index of `folder/predictions_<role>.csv` for each role (a score-only run) and
    return {role: C}. Under DDP only rank 0 reports."""
    if not is_rank0():
        return {}
    import pandas as pd

    from voxsurv.training.concordance import harrell_c_index

    out = {}
    for role in ([roles] if isinstance(roles, str) else roles):
        pred = pd.read_csv(Path(folder) / f"predictions_{role}.csv")
        out[role] = harrell_c_index(pred["time_days"], pred["event"], pred["risk"])
        say(f"{role} C-index ({label}, {len(pred)} patients, {int(pred['event'].sum())} events): {out[role]:.3f}")
    return out
