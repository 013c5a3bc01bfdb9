"""Every choice of the study on the SOURCE only, by pooled out-of-fold C over 5 folds x 3 seeds.

Pooled out-of-fold C: for one seed and one epoch, the validation predictions of the 5 fold runs
(each source patient predicted once, by the run that did not train on it) are pooled and one
Harrell C is computed over all source patients. Per epoch the study reports the mean and sd of
that C over the seeds. Pooling (rather than averaging 5 fold Cs of ~40 patients) uses every
comparable pair once and is far less noisy; issue 11 found the old one-fold choice was noise.

Rules, fixed here before any run:
  * epoch: the evaluated epoch >= 1 with the highest mean pooled OOF C (ties: the earlier epoch);
    epoch 0 (untrained) is reported, never chosen;
  * candidate: the highest mean pooled OOF C at its chosen epoch (ties: the earlier candidate in
    the protocol file).
The chosen epoch's C is optimistic (the same predictions chose it); the last epoch's C, with no
choice, is reported beside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from voxsurv.stats.metrics import harrell_c

EPOCH_FILE = re.compile(r"predictions_val_epoch(\d+)\.csv$")


def epoch_predictions(run_dir: str | Path) -> dict[int, pd.DataFrame]:
    """{epoch: validation predictions} of one bundle run (predictions_val_epoch{E}.csv)."""
    out = {}
    for p in Path(run_dir).glob("predictions_val_epoch*.csv"):
        m = EPOCH_FILE.search(p.name)
        if m:
            out[int(m.group(1))] = pd.read_csv(p, dtype={"patient_id": str})
    if not out:
        raise FileNotFoundError(f"no predictions_val_epoch*.csv in {run_dir}: did the bundle run evaluate?")
    return out


def pooled_oof(runs: dict[tuple[int, int], str | Path], source_ids) -> pd.DataFrame:
    """Long table (seed, epoch, fold, patient_id, risk, image_risk, time_days, event) of the
    validation predictions of fold x seed runs (`runs`: (fold, seed) -> run folder).

    Only epochs that every run evaluated are kept: a run interrupted and resumed from its
    checkpoint also validates at its resume point (e.g. epoch 39), an epoch no other run has.
    Checks that, for every seed and epoch, the folds predict each source patient exactly once.
    """
    per_run = {key: epoch_predictions(run_dir) for key, run_dir in runs.items()}
    shared = set.intersection(*(set(p) for p in per_run.values()))
    parts = [df.assign(seed=seed, epoch=epoch, fold=fold)
             for (fold, seed), preds in per_run.items() for epoch, df in preds.items() if epoch in shared]
    long = pd.concat(parts, ignore_index=True)
    want = set(map(str, source_ids))
    for (seed, epoch), g in long.groupby(["seed", "epoch"]):
        ids = g.patient_id.astype(str)
        if ids.duplicated().any() or set(ids) != want:
            missing = sorted(want - set(ids))[:5]
            raise ValueError(f"seed {seed}, epoch {epoch}: out-of-fold predictions do not cover the source "
                             f"patients once each (missing {missing}, duplicated {ids[ids.duplicated()].tolist()[:5]})")
    return long


def pooled_c_by_seed(long: pd.DataFrame, risk: str = "risk") -> pd.DataFrame:
    """(seed, epoch, c): pooled out-of-fold Harrell C of column `risk` per seed and epoch."""
    rows = [{"seed": s, "epoch": e, "c": harrell_c(g.time_days, g.event, g[risk])}
            for (s, e), g in long.groupby(["seed", "epoch"])]
    return pd.DataFrame(rows)


def selection_table(by_seed: pd.DataFrame) -> pd.DataFrame:
    """(epoch, mean, sd, n_seeds, per_seed) over seeds; sd with ddof=1 (NaN for one seed)."""
    rows = []
    for e, g in by_seed.groupby("epoch"):
        c = g.sort_values("seed").c.to_numpy(float)
        rows.append({"epoch": int(e), "mean": float(c.mean()), "sd": float(c.std(ddof=1)) if len(c) > 1 else float("nan"),
                     "n_seeds": int(len(c)), "per_seed": [float(x) for x in c]})
    return pd.DataFrame(rows).sort_values("epoch").reset_index(drop=True)


def choose_epoch(table: pd.DataFrame) -> int:
    """The evaluated epoch >= 1 with the highest mean pooled OOF C (ties: the earlier)."""
    trained = table[table.epoch >= 1]
    if trained.empty:
        raise ValueError("no trained epoch was evaluated (only epoch 0)")
    best = trained["mean"].max()
    return int(trained[trained["mean"] == best].epoch.min())


def choose_candidate(summaries: list[dict]) -> str:
    """Name of the candidate with the highest mean pooled OOF C at its chosen epoch; ties go to the
    earlier entry of `summaries` (the protocol file's order). Each summary: name, chosen_mean."""
    best = max(s["chosen_mean"] for s in summaries)
    return next(s["name"] for s in summaries if s["chosen_mean"] == best)


def summarise_protocol(name: str, long: pd.DataFrame) -> dict:
    """Selection record of one protocol (candidate): the table per epoch, the chosen epoch, the
    mean +- sd at the chosen, last and untrained epochs; also of image_risk when anchored."""
    table = selection_table(pooled_c_by_seed(long))
    epoch = choose_epoch(table)
    row = table.set_index("epoch")
    last = int(table.epoch.max())
    out = {"name": name, "table": table.to_dict("records"), "chosen_epoch": epoch,
           "chosen_mean": float(row.loc[epoch, "mean"]), "chosen_sd": float(row.loc[epoch, "sd"]),
           "chosen_per_seed": row.loc[epoch, "per_seed"],
           "last_epoch": last, "last_mean": float(row.loc[last, "mean"]), "last_sd": float(row.loc[last, "sd"]),
           "untrained_mean": float(row.loc[0, "mean"]) if 0 in row.index else None,
           "untrained_sd": float(row.loc[0, "sd"]) if 0 in row.index else None,
           "rule": "epoch >= 1 with the highest mean pooled out-of-fold C over seeds (ties: earlier)"}
    if "image_risk" in long and long.image_risk.notna().all() and not np.allclose(long.image_risk, long.risk):
        img = selection_table(pooled_c_by_seed(long, "image_risk")).set_index("epoch")
        out["image_risk_at_chosen"] = {"mean": float(img.loc[epoch, "mean"]), "sd": float(img.loc[epoch, "sd"])}
    return out
