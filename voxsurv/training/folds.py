"""Patient-level splits: stratified cross-validation folds and the target fine-tune/test split.

Splitting is always by patient (never by slice), stratified on the event indicator so every fold
sees deaths, and seeded so a fold number means the same patients on every run and every rank.
"""

from __future__ import annotations

import numpy as np


def stratified_patient_folds(event, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold number (0..n_folds-1) for each patient, stratified on `event` (scikit-learn's StratifiedKFold)."""
    from sklearn.model_selection import StratifiedKFold

    event = np.asarray(event).astype(int)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if len(event) < n_folds:
        raise ValueError(f"{len(event)} patients cannot make {n_folds} folds")
    folds = np.empty(len(event), dtype=int)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, val_idx) in enumerate(skf.split(np.zeros(len(event)), event)):
        folds[val_idx] = k
    return folds


def stratified_holdout(event: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean array, True for a seeded event-stratified `fraction` of patients (>= 1 per stratum)."""
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(event), dtype=bool)
    for value in (0, 1):
        idx = np.flatnonzero(np.asarray(event) == value)
        if len(idx) == 0:
            continue
        n = max(1, int(round(fraction * len(idx))))
        chosen[rng.choice(idx, size=min(n, len(idx)), replace=False)] = True
    return chosen


def split_fold(df, fold: int, n_folds: int = 5, seed: int = 0):
    """(train_df, val_df) of patient rows for cross-validation fold `fold` (validation = that fold)."""
    if not 0 <= int(fold) < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    folds = stratified_patient_folds(df["event"].to_numpy(), n_folds, seed)
    return df[folds != int(fold)].reset_index(drop=True), df[folds == int(fold)].reset_index(drop=True)


def assign_target_split(df, fraction: float = 0.2, seed: int = 0):
    """A copy of `df` with `split` = "finetune" for a seeded event-stratified `fraction`, else "test".

    Used for a real target cohort whose manifest has no split column (the paper: fine-tune on 20%,
    test on 80%).
    """
    out = df.copy()
    out["split"] = np.where(stratified_holdout(out["event"].to_numpy(), fraction, seed), "finetune", "test")
    return out
