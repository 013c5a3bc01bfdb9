"""The study's one split file: who is source, fine-tune or test, decided once and checked in.

Why a file: every model of the comparison (baselines and Vision-Mamba runs) must see exactly the
same patients in each role, and the split must never be re-drawn after looking at test results.
Patients whose tumour mask is empty (on the original grid, or after resampling to the maps' 1 x 1
x 5 mm grid) cannot have maps or slices; they are excluded from every model and listed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from voxsurv.core.errors import InputError

ROLES = ("source", "finetune", "test")
SPLIT_COLUMNS = ("patient_id", "cohort", "role")


def mask_problem(image_path: str, mask_path: str, patient_id: str,
                 spacing_xyz=(1.0, 1.0, 5.0)) -> str | None:
    """Why this patient cannot enter the study (unreadable/empty mask, or empty once resampled to
    `spacing_xyz` by the bundles' own chain, custom_transforms.pipeline.volume_preprocessing), or None."""
    from custom_transforms.pipeline import volume_preprocessing
    from voxsurv.core.errors import input_error_in
    from voxsurv.data.ingest.volumes import check_image_mask

    try:
        check_image_mask(image_path, mask_path, patient_id)
        volume_preprocessing([], pixdim=tuple(spacing_xyz))({"image": image_path, "mask": mask_path,
                                                           "patient_id": patient_id})
    except Exception as exc:  # noqa: BLE001 - MONAI wraps the InputError; anything else is raised
        err = input_error_in(exc)
        if err is None:
            raise
        return str(err.with_patient(patient_id))
    return None


def make_split(manifest: pd.DataFrame, source: str = "lung1", target: str = "radiogenomics",
               finetune_fraction: float = 0.2, seed: int = 0,
               excluded: dict[str, str] | None = None) -> pd.DataFrame:
    """(patient_id, cohort, role) for every usable patient of the two cohorts.

    Source-cohort patients get role "source"; the target cohort gets a seeded, event-stratified
    `finetune_fraction` as "finetune" and the rest "test" (voxsurv.training.folds.stratified_holdout,
    the same rule the fine-tune bundle uses). `excluded` (patient_id -> reason) are left out.
    """
    from voxsurv.training.folds import stratified_holdout

    excluded = excluded or {}
    df = manifest[manifest["cohort"].isin([source, target])]
    df = df[~df["patient_id"].isin(list(excluded))].sort_values("patient_id").reset_index(drop=True)
    src = df[df["cohort"] == source]
    tgt = df[df["cohort"] == target].reset_index(drop=True)
    if src.empty or tgt.empty:
        raise InputError(f"need patients of both cohorts {source!r} and {target!r}",
                         fix="check the manifest's `cohort` column")
    chosen = stratified_holdout(tgt["event"].to_numpy(int), finetune_fraction, seed)
    out = pd.concat([
        pd.DataFrame({"patient_id": src["patient_id"], "cohort": source, "role": "source"}),
        pd.DataFrame({"patient_id": tgt["patient_id"], "cohort": target,
                      "role": np.where(chosen, "finetune", "test")}),
    ], ignore_index=True)
    return out


def write_split(split: pd.DataFrame, path: str | Path, excluded: dict[str, str] | None = None) -> Path:
    """Write the split CSV and, beside it, `<stem>_excluded.csv` (patient_id, problem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    split.loc[:, list(SPLIT_COLUMNS)].to_csv(path, index=False)
    pd.DataFrame(sorted((excluded or {}).items()), columns=["patient_id", "problem"]).to_csv(
        path.with_name(path.stem + "_excluded.csv"), index=False)
    return path


def read_split(path: str | Path) -> pd.DataFrame:
    """Read and check a split file: the three columns, known roles, one row per patient."""
    path = Path(path)
    if not path.is_file():
        raise InputError("split file not found", path=str(path),
                         fix="make it with scripts/run_real_study.py (step `split`)")
    df = pd.read_csv(path, dtype=str)
    missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"split file lacks columns {missing}", path=str(path))
    bad = sorted(set(df["role"]) - set(ROLES))
    if bad:
        raise InputError(f"unknown roles {bad} (allowed: {list(ROLES)})", path=str(path))
    dup = df["patient_id"][df["patient_id"].duplicated()].tolist()
    if dup:
        raise InputError(f"patients listed twice: {dup[:5]}", path=str(path))
    return df


def study_table(manifest: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """Manifest rows of the split's patients with their `role` (inner join on patient_id)."""
    return manifest.merge(split[["patient_id", "role"]], on="patient_id", how="inner")
