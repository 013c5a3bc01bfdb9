"""The (z, y, x) image, mask and spacing every maps backend accepts, checked once so the torch
engine and the PyRadiomics reference reject bad input with the same message."""

from __future__ import annotations

import numpy as np

from voxsurv.core.errors import InputError


def check_inputs(image, mask, spacing) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Validate and normalise the (z, y, x) image, mask and spacing shared by every backend."""
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3:
        raise InputError(f"image must be a 3D (z, y, x) array, got shape {image.shape}",
                         fix="pass one channel without the channel axis")
    if mask.shape != image.shape:
        raise InputError(f"mask shape {mask.shape} differs from image shape {image.shape}",
                         fix="resample the mask onto the image grid (nearest neighbour)")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(s > 0 for s in spacing):
        raise InputError(f"spacing must be 3 positive numbers in (z, y, x) order, got {spacing}")
    roi = mask > 0
    if not roi.any():
        raise InputError("mask is empty (no voxel > 0)",
                         fix="check the contour file; this patient cannot have radiomics maps")
    if not np.isfinite(image[roi]).all():
        raise InputError("image has NaN or infinite values inside the mask",
                         fix="fill or exclude the non-finite voxels")
    return image, roi, spacing
