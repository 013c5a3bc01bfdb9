"""A tiny inference bundle built in a temporary folder: an untrained small VisionMambaSurv, map
statistics and training-cohort risks written as a finetune output would write them, then packaged
with voxsurv.inference.packaging. Lets the inference tests run without the trained weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "inference"
TINY_FEATURES = ("firstorder_Mean", "glcm_Contrast")
# rough tumour-ROI scale of these maps at 1 x 1 x 5 mm, W 250 / L 30 (only to spread the bins)
TINY_STATS = {"firstorder_Mean": (20.0, 40.0), "glcm_Contrast": (30.0, 40.0)}


def make_finetune_output(root: Path, features=TINY_FEATURES, img_size: int = 32, embed_dim: int = 32,
                         depth: int = 1, seed: int = 0, n_patients: int = 15) -> Path:
    """A fake finetune output folder: models/model_last.pt (full-state layout), map_statistics.json,
    predictions_finetune.csv (risks of the 'training cohort' with times/events)."""
    import pandas as pd
    import torch

    from networks import VisionMambaSurv
    from voxelmaps.normalise import MapStatistics

    out = Path(root)
    (out / "models").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = VisionMambaSurv(in_channels=1 + len(features), img_size=img_size, embed_dim=embed_dim, depth=depth)
    torch.save({"model": net.state_dict(), "trainer": {}}, out / "models" / "model_last.pt")
    mean = np.array([TINY_STATS.get(f, (0.0, 1.0))[0] for f in features])
    std = np.array([TINY_STATS.get(f, (0.0, 1.0))[1] for f in features])
    MapStatistics(list(features), mean, std, np.full(len(features), 1000.0)).save(out / "map_statistics.json")
    rng = np.random.default_rng(seed)
    risk = rng.normal(0.0, 0.5, n_patients)
    time = rng.exponential(900.0 * np.exp(-risk)) + 30.0
    time[0] = 2000.0  # follow-up beyond 3 years, so S(1095) is estimable
    event = (rng.random(n_patients) < 0.7).astype(int)
    event[1] = 1
    pd.DataFrame({"patient_id": [f"ft-{i:03d}" for i in range(n_patients)], "risk": risk, "time_days": time,
                  "event": event, "split": "finetune", "n_slices": 5}).to_csv(out / "predictions_finetune.csv",
                                                                           index=False)
    return out


def make_tiny_bundle(root: Path, roi_size_mm: float = 64.0, **kwargs) -> Path:
    """Copy of the inference bundle's configs + a packaged tiny model, in ``root/bundle``."""
    from voxsurv.inference.packaging import package

    root = Path(root)
    bundle = root / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    ft = make_finetune_output(root / "finetune", **kwargs)
    package(ft, bundle, preprocessing={"roi_size_mm": roi_size_mm})
    return bundle


def write_synthetic_patient(folder: Path, name: str = "syn", seed: int = 0, empty_mask: bool = False,
                            shift_mask_mm: float | None = None) -> tuple[Path, Path]:
    """A small CT (HU, int16) with a textured spherical 'tumour' and its mask, as NIfTI.

    ``empty_mask`` writes an all-zero mask; ``shift_mask_mm`` moves the mask's origin (a mask that
    lies outside the image / on another grid)."""
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (16, 56, 56)  # z, y, x
    spacing = (0.9, 0.9, 2.5)  # x, y, z mm
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    r = np.sqrt(((x - 28) * spacing[0]) ** 2 + ((y - 27) * spacing[1]) ** 2 + ((z - 8) * spacing[2]) ** 2)
    tumour = r < 13.0
    ct = np.where(tumour, 35 + 25 * rng.standard_normal(shape), -800 + 30 * rng.standard_normal(shape))
    image = sitk.GetImageFromArray(ct.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin((-25.0, -30.0, 100.0))
    mask = sitk.GetImageFromArray((np.zeros(shape) if empty_mask else tumour).astype(np.uint8))
    mask.CopyInformation(image)
    if shift_mask_mm:
        mask.SetOrigin(tuple(o + shift_mask_mm for o in image.GetOrigin()))
    ip, mp = folder / f"{name}_ct.nii.gz", folder / f"{name}_gtv.nii.gz"
    sitk.WriteImage(image, str(ip))
    sitk.WriteImage(mask, str(mp))
    return ip, mp


_SHARED: dict = {}


def shared_tiny_bundle() -> Path:
    """One read-only tiny bundle (128 mm field of view) per test process, shared by test modules
    that only predict with it."""
    import atexit
    import tempfile

    if "bundle" not in _SHARED:
        root = Path(tempfile.mkdtemp(prefix="voxsurv-tiny-bundle-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SHARED["bundle"] = make_tiny_bundle(root, roi_size_mm=128.0)
    return _SHARED["bundle"]
