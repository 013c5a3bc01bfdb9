"""One entry point for voxel-level radiomics maps, whatever the backend.

`compute_maps` clips the CT to the HU window, then dispatches to the `torch` engine
(`voxsurv.maps.torch_engine`, fast, CPU/CUDA) or to `pyradiomics` (the slow reference). Both return
the same thing: a channel-first (F, z, y, x) array with NaN outside the ROI and the channel names.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from voxsurv.maps.features import resolve_features
from voxsurv.maps.settings import MapSettings
from voxsurv.core.errors import InputError

BACKENDS = ("torch", "pyradiomics")


def make_settings(settings: MapSettings | None = None, **overrides) -> MapSettings:
    """MapSettings from an optional base plus keyword overrides (None values are ignored, except
    `bin_count` and `window`, where None is meaningful only when given explicitly)."""
    base = (settings or MapSettings()).to_dict()
    for key, value in overrides.items():
        if key not in base:
            raise InputError(f"unknown map setting {key!r}", fix=f"use one of {', '.join(base)}")
        base[key] = value
    return MapSettings.from_dict(base)


def compute_maps(image, mask, spacing, features: str | Iterable[str] | None = None,
                 backend: str = "torch", settings: MapSettings | None = None, device=None,
                 voxel_batch: int | None = None, **setting_overrides) -> tuple[np.ndarray, list[str]]:
    """Voxel-level radiomics maps of one CT + ROI.

    Args:
        image: (z, y, x) CT in HU (numpy or anything `np.asarray` takes); axial slices on axis 0.
        mask: (z, y, x) ROI, > 0 inside.
        spacing: voxel size in mm, in the array's axis order (z, y, x).
        features: names ("glcm_Contrast"), classes ("glcm") or None for all 90.
        backend: "torch" (default) or "pyradiomics" (reference, slow).
        settings: MapSettings; keyword overrides such as `radius=2`, `bin_width=25.0`,
            `bin_count=32`, `window=(-95, 155)`, `force2d`, `masked_kernel`, `dtype` replace fields.
        device: torch device for the torch backend ("cpu", "cuda"); None = CPU.
        voxel_batch: voxels per batch (bounds memory; values do not change). None: backend default.

    Returns:
        (maps, names): (F, z, y, x) float array (float64 from PyRadiomics; the settings' dtype
        from torch), NaN outside the ROI, names in the requested order.
    """
    settings = make_settings(settings, **setting_overrides)
    names = resolve_features(features)
    image = np.asarray(image)
    if settings.window is not None:
        image = np.clip(image.astype(np.float64), *settings.window)
    if backend == "pyradiomics":
        from voxsurv.maps.pyradiomics_backend import compute_pyradiomics_maps

        return compute_pyradiomics_maps(image, mask, spacing, names, settings,
                                        voxel_batch=-1 if voxel_batch is None else voxel_batch)
    if backend == "torch":
        return _torch_maps(image, mask, spacing, names, settings, device, voxel_batch)
    raise InputError(f"unknown maps backend {backend!r}", fix=f"use one of {', '.join(BACKENDS)}")


def _torch_maps(image, mask, spacing, names, settings: MapSettings, device, voxel_batch):
    from voxsurv.maps.inputs import check_inputs

    image, roi, spacing = check_inputs(image, mask, spacing)
    if not (settings.force2d and settings.masked_kernel):
        raise InputError("the torch engine computes 2D masked-kernel maps only "
                         f"(force2d={settings.force2d}, masked_kernel={settings.masked_kernel})",
                         fix="use backend='pyradiomics' for 3D or unmasked kernels")
    try:
        import torch

        from voxsurv.maps.torch_engine import compute_torch_maps
    except ImportError as exc:
        raise InputError(f"the torch engine is not available ({exc})",
                         fix="use backend='pyradiomics'") from exc
    kwargs = {}
    if voxel_batch is not None:
        kwargs["voxel_batch"] = voxel_batch
    maps, out_names = compute_torch_maps(
        image, roi.astype(np.uint8), spacing, names, radius=settings.radius,
        bin_width=settings.bin_width, bin_count=settings.bin_count,
        dtype=getattr(torch, settings.dtype), device=device or "cpu", **kwargs)
    maps = np.asarray(maps)
    if list(out_names) != names:  # the engine may order by class; restore the requested order
        index = {n: i for i, n in enumerate(out_names)}
        maps = maps[[index[n] for n in names]]
    return maps, names
