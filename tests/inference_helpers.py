"""A tiny inference bundle built in a temporary folder: an untrained small patient-level
VisionMambaSurv (CT + 2 maps + mask channels), map statistics, and synthetic training patients
written as a training run would leave them, then packaged with voxsurv.inference.packaging (which
recomputes the training patients' risks through the bundle's own pipeline). Lets the inference
tests run without trained weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "inference"
TINY_FEATURES = ("firstorder_Mean", "glcm_Contrast")
# rough tumour-ROI scale of these maps at 1 x 1 x 5 mm, W 250 / L 30 (only to spread the bins)
TINY_STATS = {"firstorder_Mean": (20.0, 40.0), "glcm_Contrast": (30.0, 40.0)}
TINY_NETWORK = {"img_size": 32, "embed_dim": 32, "depth": 1}


def tiny_network(features=TINY_FEATURES, seed: int = 0, n_members: int = 1, **kwargs):
    """An untrained small VisionMambaSurv (or SurvivalEnsemble of ``n_members`` differently seeded ones)."""
    import torch

    from networks import SurvivalEnsemble, VisionMambaSurv

    members = []
    for i in range(n_members):
        torch.manual_seed(seed + 1000 * i)
        members.append(VisionMambaSurv(in_channels=2 + len(features), **{**TINY_NETWORK, **kwargs}))
    return members[0] if n_members == 1 else SurvivalEnsemble.from_members(members)


def make_training_output(root: Path, features=TINY_FEATURES, seed: int = 0, network=None, **kwargs) -> Path:
    """A fake training output folder: models/model.pt (plain state dict) and map_statistics.json."""
    import torch

    from voxsurv.maps.normalise import MapStatistics

    out = Path(root)
    (out / "models").mkdir(parents=True, exist_ok=True)
    net = network if network is not None else tiny_network(features, seed, **kwargs)
    torch.save(net.state_dict(), out / "models" / "model.pt")
    mean = np.array([TINY_STATS.get(f, (0.0, 1.0))[0] for f in features])
    std = np.array([TINY_STATS.get(f, (0.0, 1.0))[1] for f in features])
    MapStatistics(list(features), mean, std, np.full(len(features), 1000.0)).save(out / "map_statistics.json")
    return out


def write_training_cohort(folder: Path, n_patients: int = 4, split: str = "train") -> Path:
    """Synthetic training patients (images/ + manifest.csv with time_days, event, split); returns the manifest."""
    import pandas as pd

    folder = Path(folder)
    rows = []
    for i in range(n_patients):
        ip, mp = write_synthetic_patient(folder / "images", f"tr{i}", seed=100 + i, radius_mm=9.0 + 2.0 * i)
        rows.append({"patient_id": f"tr{i}", "image": str(ip.relative_to(folder)), "mask": str(mp.relative_to(folder)),
                     "time_days": [400.0, 2000.0, 900.0, 1500.0, 700.0, 1200.0][i % 6],
                     "event": [1, 0, 1, 0, 1, 1][i % 6], "split": split})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def make_tiny_bundle(root: Path, n_members: int = 1, network=None, features=TINY_FEATURES, min_fov_mm: float = 20.0,
                     **kwargs) -> Path:
    """Copy of the inference bundle's configs + a packaged tiny model, in ``root/bundle``."""
    from voxsurv.inference.packaging import package

    root = Path(root)
    bundle = root / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    if network is None:
        network = tiny_network(features, n_members=n_members, **kwargs)
    out = make_training_output(root / "training", features=features, network=network)
    manifest = write_training_cohort(root / "cohort")
    package(out / "models" / "model.pt", bundle, manifest, map_statistics=out / "map_statistics.json",
            features=list(features), preprocessing={"img_size": network_img_size(network), "min_fov_mm": min_fov_mm})
    return bundle


def network_img_size(network) -> int:
    member = network.members[0] if hasattr(network, "members") else network
    return int(member.img_size)


def write_synthetic_patient(folder: Path, name: str = "syn", seed: int = 0, empty_mask: bool = False,
                            shift_mask_mm: float | None = None, radius_mm: float = 13.0) -> tuple[Path, Path]:
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
    tumour = r < radius_mm
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
    """One read-only tiny bundle per test process, shared by test modules that only predict with it."""
    import atexit
    import tempfile

    if "bundle" not in _SHARED:
        root = Path(tempfile.mkdtemp(prefix="voxsurv-tiny-bundle-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SHARED["bundle"] = make_tiny_bundle(root)
    return _SHARED["bundle"]
