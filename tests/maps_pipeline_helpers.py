"""Small real patients for the voxel-maps pipeline tests: crops of ../shared/data/lung_crops
around the tumour's largest slice, written as NIfTI with a manifest, so a cohort runs in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk


def crop_patient(lung_crops: Path, patient_id: str, out_dir: Path, slices: int, half: int,
                 empty_mask: bool = False) -> dict:
    """`slices` axial slices x (2 half)^2 voxels around the centre of the largest tumour slice.
    Spacing stays as written in the source (1 x 1 x 1 mm); the pipeline resamples to 1 x 1 x 5."""
    image = sitk.ReadImage(str(lung_crops / "images" / f"{patient_id}_ct.nii.gz"))
    mask = sitk.ReadImage(str(lung_crops / "images" / f"{patient_id}_gtv.nii.gz"))
    m = sitk.GetArrayFromImage(mask)
    z = int(np.argmax(m.sum(axis=(1, 2))))
    ys, xs = np.nonzero(m[z])
    cy, cx = int(ys.mean()), int(xs.mean())
    z0 = max(0, z - slices // 2)
    box = (slice(cx - half, cx + half), slice(cy - half, cy + half), slice(z0, z0 + slices))
    image, mask = image[box], mask[box]
    if empty_mask:
        mask = mask * 0
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for what, vol in (("image", image), ("mask", mask)):
        paths[what] = out_dir / f"{patient_id}_{what}.nii.gz"
        sitk.WriteImage(vol, str(paths[what]))
    return {"patient_id": patient_id, "image": str(paths["image"]), "mask": str(paths["mask"])}


def write_manifest(records: list[dict], path: Path) -> Path:
    df = pd.DataFrame(records)
    df["time_days"] = 365.0
    df["event"] = 1
    df.to_csv(path, index=False)
    return path
