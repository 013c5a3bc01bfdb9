"""A deterministic synthetic cohort pair to run the whole pipeline on without real data.

Why synthetic: the main command must run out of the box on a fresh machine, and tests need a
cohort whose true risk is known so they can check that training *learns* (C-index well above 0.5),
which no real cohort can tell us.

What is simulated (per patient, a small chest CT crop of 64 x 64 x 24 voxels at 1 x 1 x 2.5 mm):
- soft tissue (~40 HU) around an aerated lung (~-800 HU) holding one tumour;
- a tumour (irregular ellipsoid, 7-13 mm radii) with a *latent heterogeneity* h in [0, 1]:
  a hypodense necrotic core whose size grows with h, an enhancing rim, and a smooth random texture
  whose amplitude grows with h; homogeneous tumours (h ~ 0) are flat soft tissue;
- scanner noise (white Gaussian) on the whole image;
- survival from a Weibull proportional-hazards model with linear predictor
  `true_risk = beta * (h - 0.5) / 0.29` (h standardised), plus independent uniform censoring.

Between cohorts ("source", larger, for pre-training; "target", smaller, for fine-tuning and test)
the scanner noise, an HU calibration offset and the baseline hazard differ: a cross-institution
shift. The heterogeneity -> hazard relation is the same, as the paper's transfer assumes.

The true risk and h are written to `true_risk.csv`, apart from the manifest, so that training code
never sees them. Everything is drawn from one seeded `numpy.random.Generator`: the same seed gives
byte-identical arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SHAPE_ZYX = (24, 64, 64)  # SimpleITK array order (z, y, x)
SPACING_XYZ = (1.0, 1.0, 2.5)  # mm
MANIFEST_NAME = "manifest.csv"
TRUE_RISK_NAME = "true_risk.csv"


@dataclass(frozen=True)
class CohortShift:
    """What differs between the two simulated institutions."""

    noise_hu: float  # scanner noise standard deviation
    hu_offset: float  # calibration offset added to every voxel
    baseline_scale_days: float  # Weibull scale at true_risk = 0 (baseline hazard)


SOURCE = CohortShift(noise_hu=10.0, hu_offset=0.0, baseline_scale_days=900.0)
TARGET = CohortShift(noise_hu=16.0, hu_offset=8.0, baseline_scale_days=600.0)
WEIBULL_SHAPE = 1.3
RISK_BETA = 1.6  # log hazard ratio per standard deviation of heterogeneity


def _smooth_field(rng: np.random.Generator, sigma_vox: tuple[float, float, float]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal(SHAPE_ZYX), sigma=sigma_vox, mode="reflect")
    return field / (field.std() + 1e-8)


def simulate_patient(rng: np.random.Generator, shift: CohortShift, heterogeneity: float):
    """One CT crop (float32 HU, z-y-x) and its tumour mask (uint8) for a given heterogeneity."""
    nz, ny, nx = SHAPE_ZYX
    z, y, x = np.meshgrid(np.arange(nz) * SPACING_XYZ[2], np.arange(ny) * SPACING_XYZ[1],
                          np.arange(nx) * SPACING_XYZ[0], indexing="ij")
    centre_mm = np.array([nz * SPACING_XYZ[2] / 2, ny / 2, nx / 2])
    # lung: a large ellipsoid of aerated tissue; soft tissue (chest wall/mediastinum) around it
    lung = (((z - centre_mm[0]) / 40.0) ** 2 + ((y - centre_mm[1]) / 28.0) ** 2
            + ((x - centre_mm[2] - 4.0) / 27.0) ** 2) < 1.0
    image = np.where(lung, -800.0, 40.0) + 8.0 * _smooth_field(rng, (1.0, 2.0, 2.0))
    image[lung] += 25.0 * _smooth_field(rng, (0.6, 1.5, 1.5))[lung]  # parenchymal texture
    # tumour: irregular ellipsoid inside the lung
    radii = rng.uniform(7.0, 13.0, size=3)
    radii[0] = rng.uniform(7.0, 12.0)
    offset = rng.uniform(-4.0, 4.0, size=3)
    dz, dy, dx = (z - centre_mm[0] - offset[0]), (y - centre_mm[1] - offset[1]), (x - centre_mm[2] - offset[2])
    r = np.sqrt((dz / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dx / radii[2]) ** 2)
    r_bumpy = r * (1.0 + 0.12 * _smooth_field(rng, (1.5, 4.0, 4.0)))
    mask = (r_bumpy < 1.0) & lung
    # intratumoral heterogeneity: necrotic core, enhancing rim, textured interior
    core_radius = 0.15 + 0.55 * heterogeneity
    texture = (4.0 + 40.0 * heterogeneity) * _smooth_field(rng, (0.6, 1.2, 1.2))
    tumour = 45.0 + texture
    tumour = np.where(r_bumpy < core_radius, 45.0 - 45.0 * heterogeneity + 0.5 * texture, tumour)
    rim = (r_bumpy > 0.75) & (r_bumpy < 1.0)
    tumour = np.where(rim, tumour + 10.0 + 25.0 * heterogeneity, tumour)
    image = np.where(mask, tumour, image)
    image = image + shift.hu_offset + shift.noise_hu * rng.standard_normal(SHAPE_ZYX)
    return np.clip(image, -1024, 3000).astype(np.float32), mask.astype(np.uint8)


def _survival(rng: np.random.Generator, true_risk: np.ndarray, shift: CohortShift):
    """Weibull PH event times with independent uniform censoring (~30%)."""
    u = rng.uniform(size=true_risk.shape)
    event_time = shift.baseline_scale_days * (-np.log(u) * np.exp(-true_risk)) ** (1.0 / WEIBULL_SHAPE)
    censor_time = rng.uniform(0.3, 3.0, size=true_risk.shape) * shift.baseline_scale_days
    time = np.minimum(event_time, censor_time)
    event = (event_time <= censor_time).astype(int)
    return np.maximum(np.round(time), 1.0), event


def _write_nifti(array_zyx: np.ndarray, path: Path, dtype) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array_zyx.astype(dtype))
    img.SetSpacing(SPACING_XYZ)
    sitk.WriteImage(img, str(path), useCompression=True)


def generate_demo_cohort(out_dir: str | Path, n_source: int = 120, n_target: int = 80, seed: int = 0,
                         finetune_fraction: float = 0.2, overwrite: bool = False) -> Path:
    """Write the demo cohort pair under `out_dir` and return the manifest path.

    Layout: `images/<id>_ct.nii.gz` (int16 HU), `images/<id>_gtv.nii.gz` (uint8), `manifest.csv`
    (patient_id, cohort, image, mask, time_days, event, split; paths relative to `out_dir`), and
    `true_risk.csv` (patient_id, cohort, heterogeneity, true_risk). Source patients are all
    `split=train` (cross-validation folds are made later); target patients are an event-stratified
    seeded `finetune_fraction` for `finetune`, the rest `test`.
    """
    import pandas as pd

    from voxsurv.training.folds import stratified_holdout

    out = Path(out_dir)
    manifest_path = out / MANIFEST_NAME
    if manifest_path.exists() and not overwrite:
        logger.info("demo cohort already at %s; leaving it as it is", manifest_path)
        return manifest_path
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for cohort, n, shift in (("source", n_source, SOURCE), ("target", n_target, TARGET)):
        h = rng.uniform(0.0, 1.0, size=n)
        true_risk = RISK_BETA * (h - 0.5) / 0.2887
        time, event = _survival(rng, true_risk, shift)
        if cohort == "source":
            split = np.array(["train"] * n, dtype=object)
        else:
            split = np.where(stratified_holdout(event, finetune_fraction, seed + 1), "finetune", "test")
        for i in range(n):
            pid = f"{cohort[:3]}-{i:03d}"
            image, mask = simulate_patient(rng, shift, float(h[i]))
            _write_nifti(np.round(image), out / "images" / f"{pid}_ct.nii.gz", np.int16)
            _write_nifti(mask, out / "images" / f"{pid}_gtv.nii.gz", np.uint8)
            rows.append(dict(patient_id=pid, cohort=cohort, image=f"images/{pid}_ct.nii.gz",
                             mask=f"images/{pid}_gtv.nii.gz", time_days=float(time[i]),
                             event=int(event[i]), split=split[i]))
            truth.append(dict(patient_id=pid, cohort=cohort, heterogeneity=float(h[i]),
                              true_risk=float(true_risk[i])))
        logger.info("demo cohort %s: %d patients, %d events", cohort, n, int(event.sum()))
    pd.DataFrame(truth).to_csv(out / TRUE_RISK_NAME, index=False)
    pd.DataFrame(rows).to_csv(manifest_path, index=False)  # written last: its presence means complete
    return manifest_path


def ensure_demo_cohort(dataset_dir: str, manifest: str, **demo_kwargs) -> str:
    """Return `manifest`; when it does not exist and `dataset_dir` holds nothing, write the demo
    cohort there first (printing that it does). A missing manifest in a non-empty folder is an
    error: we never write synthetic data next to somebody's real data."""
    from voxsurv.core.errors import InputError
    from voxsurv.training.distributed import barrier, is_rank0, say

    manifest_path = Path(manifest)
    if not is_rank0():  # under DDP rank 0 writes, the others wait
        barrier()
        return str(manifest_path)
    if manifest_path.exists():
        barrier()
        return str(manifest_path)
    folder = Path(dataset_dir)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(f"manifest not found and {folder} is not empty", path=str(manifest_path),
                         fix="pass --manifest <your manifest.csv>, or an empty/new --dataset_dir for the demo cohort")
    say(f"no data in {folder}: generating the synthetic demo cohort there (source + target) ...")
    path = generate_demo_cohort(folder, **demo_kwargs)
    say(f"demo cohort written: {path}")
    barrier()
    if Path(path).resolve() != manifest_path.resolve():
        raise InputError("the demo cohort was written but the configured manifest is elsewhere",
                         path=str(manifest_path), fix=f"use --manifest {path}")
    return str(path)
