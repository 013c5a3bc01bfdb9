"""Map screening (the paper's step before training): which of the 90 voxel maps carry survival
information in the SOURCE cohort.

Screening model, deliberately small so 90 maps fit a CPU budget: "map alone". Each patient's map
is summarised inside the tumour by five numbers (mean, standard deviation, 10th/50th/90th
percentile over all ROI voxels of all tumour slices); a ridge Cox model (lifelines, penalizer 0.1,
standardised inputs) on these five numbers is fitted in 5-fold event-stratified cross-validation
inside the source cohort, and the metric is the cumulative/dynamic AUC at 2 years (IPCW from the
training folds, voxsurv.stats.metrics) averaged over folds. The CT itself is not an input (a "CT + map"
CNN per map would cost ~90 x the study budget here). Only source patients are used: the target
cohort plays no part in the choice.

Decorrelation (issue 11: the 16 maps first selected were near-duplicates, median pairwise |r|
0.88, so the network saw one signal 16 times): the passing maps are taken greedily by AUC and a map
is skipped when its |r| with a map already kept exceeds 0.8. r is the voxel-level Spearman
correlation over ROI voxels pooled across source patients (a seeded subsample per patient):
Spearman because the network sees each map through fixed bins of its z-score, so any monotone
near-duplicate is a duplicate; pooled across patients because the maps are z-scored with cohort
statistics, so between-patient differences are part of what a channel carries.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SUMMARIES = ("mean", "sd", "p10", "p50", "p90")


def roi_summaries(maps_roi: np.ndarray) -> np.ndarray:
    """(F, 5) SUMMARIES of each map over one patient's (F, N) ROI voxel values (NaN ignored)."""
    v = np.asarray(maps_roi, dtype=np.float64)
    with np.errstate(all="ignore"):
        return np.stack([np.nanmean(v, 1), np.nanstd(v, 1), *np.nanpercentile(v, [10, 50, 90], axis=1)], axis=1)


def screen_one_map(name: str, x: np.ndarray, time: np.ndarray, event: np.ndarray, folds: np.ndarray,
                   horizon_days: float = 730.0) -> dict:
    """Fold AUCs at `horizon_days` (and fold Harrell C) of the summary-statistic Cox model of one map."""
    from lifelines import CoxPHFitter

    from voxsurv.stats.metrics import cumulative_dynamic_auc, harrell_c

    aucs, cs, notes = [], [], []
    cols = [f"s{i}" for i in range(x.shape[1])]
    for k in np.unique(folds):
        tr, va = folds != k, folds == k
        xt = x[tr]
        mu, sd = np.nanmean(xt, 0), np.nanstd(xt, 0)
        sd[~np.isfinite(sd) | (sd < 1e-12)] = 1.0
        z = np.nan_to_num((x - mu) / sd)  # a NaN summary (map undefined in a tiny ROI) -> cohort mean
        keep = np.nanstd(z[tr], 0) > 1e-9
        if not keep.any():
            aucs.append(np.nan), cs.append(np.nan), notes.append(f"fold {k}: map constant")
            continue
        df = pd.DataFrame(z[tr][:, keep], columns=np.array(cols)[keep]).assign(T=time[tr], E=event[tr])
        try:
            cph = CoxPHFitter(penalizer=0.1).fit(df, "T", "E")
        except Exception as exc:  # noqa: BLE001 - a non-converging map scores NaN, with the reason
            aucs.append(np.nan), cs.append(np.nan), notes.append(f"fold {k}: {type(exc).__name__}")
            continue
        risk = lambda rows: np.asarray(cph.predict_log_partial_hazard(  # noqa: E731
            pd.DataFrame(rows[:, keep], columns=np.array(cols)[keep])), float).ravel()
        r_va = risk(z[va])
        a = cumulative_dynamic_auc(time[va], event[va], r_va, [horizon_days], time[tr], event[tr])[0]
        aucs.append(a.auc), cs.append(harrell_c(time[va], event[va], r_va))
        if a.reason:
            notes.append(f"fold {k}: {a.reason}")
    return {"map": name, "auc": float(np.nanmean(aucs)) if np.isfinite(aucs).any() else None,
            "fold_auc": [None if not np.isfinite(a) else float(a) for a in aucs],
            "c_index": float(np.nanmean(cs)) if np.isfinite(cs).any() else None, "notes": notes}


def _screen_task(args):
    name, x, time, event, folds, horizon, path = args
    res = screen_one_map(name, x, time, event, folds, horizon)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, path)
    return res


def screen_maps(summaries: np.ndarray, names: list[str], time, event, out_dir: str | Path,
                horizon_days: float = 730.0, n_folds: int = 5, seed: int = 0, workers: int = 2) -> pd.DataFrame:
    """Screen every map (parallel over maps, one JSON per map in `out_dir/maps/`, so a re-run
    skips finished maps). `summaries`: (patients, F, 5) for the source patients."""
    import multiprocessing as mp

    from voxsurv.training.folds import stratified_patient_folds

    time, event = np.asarray(time, float), np.asarray(event, int)
    folds = stratified_patient_folds(event, n_folds, seed)
    folder = Path(out_dir) / "maps"
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(n, summaries[:, j, :], time, event, folds, horizon_days, folder / f"{n}.json")
            for j, n in enumerate(names) if not (folder / f"{n}.json").is_file()]
    log.info("screening %d maps (%d already done) on %d source patients", len(todo), len(names) - len(todo), len(time))
    if todo:
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for i, r in enumerate(pool.map(_screen_task, todo, chunksize=4)):
                    if (i + 1) % 10 == 0:
                        log.info("  %d/%d maps screened", i + 1, len(todo))
        else:
            for t in todo:
                _screen_task(t)
    rows = [json.loads((folder / f"{n}.json").read_text()) for n in names]
    table = pd.DataFrame(rows).sort_values("auc", ascending=False, na_position="last").reset_index(drop=True)
    return table


def roi_voxel_sample(maps_roi: np.ndarray, max_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """(F, n) columns of one patient's (F, N) ROI voxel values: all when N <= max_voxels, else a
    uniform sample without replacement (so large tumours do not dominate the pooled correlation)."""
    maps_roi = np.asarray(maps_roi, dtype=np.float64)
    n = maps_roi.shape[1]
    if n <= max_voxels:
        return maps_roi
    return maps_roi[:, np.sort(rng.choice(n, size=max_voxels, replace=False))]


def voxel_correlation(samples, names: list[str]) -> pd.DataFrame:
    """Spearman correlation matrix (F x F DataFrame) of voxel values pooled over patients.

    `samples`: iterable of (F, n_p) arrays (one per patient, columns = voxels, rows in `names`
    order). NaN voxels (a map undefined in a window) are left out pair by pair: each map is ranked
    over its own non-NaN voxels, then Pearson's r of the ranks is computed over the voxels where
    both maps are defined (with no NaN this is exactly Spearman's rho). A map constant over all
    voxels has r = NaN with every other map (it cannot duplicate anything).
    """
    from scipy.stats import rankdata

    x = np.concatenate([np.asarray(s, np.float64) for s in samples], axis=1).T  # (voxels, F)
    if x.shape[1] != len(names):
        raise ValueError(f"samples have {x.shape[1]} maps, names {len(names)}")
    valid = np.isfinite(x)
    ranks = np.zeros_like(x)
    for j in range(x.shape[1]):
        ranks[valid[:, j], j] = rankdata(x[valid[:, j], j])
    m = valid.astype(np.float64)
    n = m.T @ m                            # voxels where both maps are defined
    s1 = ranks.T @ m                       # sum of map i's ranks over those voxels
    s2 = (ranks ** 2).T @ m
    sxy = ranks.T @ ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = n * sxy - s1 * s1.T
        var = (n * s2 - s1 ** 2) * (n * s2 - s1 ** 2).T
        r = cov / np.sqrt(var)
    r[~np.isfinite(r)] = np.nan
    np.fill_diagonal(r, 1.0)
    return pd.DataFrame(np.clip(r, -1.0, 1.0), index=list(names), columns=list(names))


def decorrelated_selection(table: pd.DataFrame, correlation: pd.DataFrame, threshold: float = 0.6,
                           max_abs_r: float = 0.8, max_maps: int = 16,
                           fallback_k: int = 8) -> tuple[list[str], pd.DataFrame, str]:
    """Greedy by screening AUC: keep a map that passes `threshold` unless its |r| with a map
    already kept exceeds `max_abs_r`; stop at `max_maps`. If no map passes the threshold, the
    same greedy rule runs over all maps until `fallback_k` are kept (said so in the rule).

    Returns (kept maps in AUC order, one decision row per map, the rule in words)."""
    ranked = table.dropna(subset=["auc"]).sort_values("auc", ascending=False, kind="stable")
    passing = ranked[ranked["auc"].astype(float) > threshold]
    pool, limit = (passing, max_maps) if len(passing) else (ranked, min(fallback_k, max_maps))
    kept: list[str] = []
    rows = []
    for m, auc in zip(ranked["map"], ranked["auc"].astype(float)):
        r_kept = {k: abs(float(correlation.loc[m, k])) for k in kept}
        r_kept = {k: v for k, v in r_kept.items() if np.isfinite(v)}
        closest = max(r_kept, key=r_kept.get) if r_kept else None
        row = {"map": m, "auc": auc, "max_abs_r_to_kept": r_kept.get(closest) if closest else None,
               "closest_kept": closest}
        if m not in set(pool["map"]):
            row["decision"] = f"not selected: AUC {auc:.3f} <= {threshold:g}"
        elif len(kept) >= limit:
            row["decision"] = f"not selected: cap of {limit} maps reached"
        elif closest is not None and r_kept[closest] > max_abs_r:
            row["decision"] = f"skipped: |r| {r_kept[closest]:.2f} > {max_abs_r:g} with {closest}"
        else:
            row["decision"] = "kept"
            kept.append(m)
        rows.append(row)
    decisions = pd.DataFrame(rows, columns=["map", "auc", "decision", "max_abs_r_to_kept", "closest_kept"])
    if len(passing):
        rule = (f"AUC > {threshold:g}: {len(passing)} of {len(table)} maps; greedy by AUC, skipping a map "
                f"with voxel |r| > {max_abs_r:g} to one already kept: {len(kept)} kept (cap {max_maps})")
    else:
        rule = (f"no map reached AUC > {threshold:g} (best {ranked['auc'].max():.3f}); fallback: greedy by AUC "
                f"over all maps, skipping |r| > {max_abs_r:g} to a kept map, until {limit} are kept")
    return kept, decisions, rule


def select_maps(table: pd.DataFrame, threshold: float = 0.6, fallback_k: int = 8) -> tuple[list[str], str]:
    """Maps with mean AUC > threshold; if none passes, the top `fallback_k` by AUC, and the rule
    used is returned in words (never a silent fallback)."""
    passed = table[table["auc"].astype(float) > threshold]
    if len(passed):
        return passed["map"].tolist(), f"AUC > {threshold:g}: {len(passed)} of {len(table)} maps"
    top = table.dropna(subset=["auc"]).head(fallback_k)
    return top["map"].tolist(), (f"no map reached AUC > {threshold:g} (best {table['auc'].max():.3f}); "
                                 f"fallback: top {fallback_k} maps by AUC")


def bar_chart(table: pd.DataFrame, threshold: float, path: str | Path, title: str) -> Path:
    """Ranked horizontal bar chart of the maps' screening AUC with the threshold line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.dropna(subset=["auc"])
    fig, ax = plt.subplots(figsize=(7, max(4, 0.16 * len(t))))
    colours = ["tab:red" if a > threshold else "tab:grey" for a in t["auc"]]
    ax.barh(range(len(t)), t["auc"], color=colours)
    ax.set_yticks(range(len(t)), t["map"], fontsize=6)
    ax.invert_yaxis()
    ax.axvline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    ax.axvline(0.5, color="k", ls=":", lw=0.6)
    ax.set_xlim(0.3, max(0.8, float(t["auc"].max()) + 0.02))
    ax.set_xlabel("2-year cumulative AUC, mean over 5 source-cohort folds")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
