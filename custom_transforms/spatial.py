"""Resampling to the paper's voxel size (1 x 1 x 5 mm), built on MONAI's Spacing so affine,
pixdim and inverse stay MONAI's own. The interpolation is chosen per key by the caller (image
bilinear, mask nearest: a resampled mask stays binary), never guessed from the key's name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Spacing, Spacingd

__all__ = ["PAPER_PIXDIM", "ResampleToSpacing", "ResampleToSpacingd", "ResampleToSpacingD",
           "ResampleToSpacingDict"]

#: Voxel size (mm) of the paper's preprocessing, in MONAI's (x, y, z) order; z is the axial step.
PAPER_PIXDIM = (1.0, 1.0, 5.0)


class ResampleToSpacing(Spacing):
    """MONAI :class:`~monai.transforms.Spacing` with the paper's defaults: 1 x 1 x 5 mm, border
    padding, float32 output. Channel-first (C, x, y, z) MetaTensor in and out.

    Args:
        pixdim: output voxel size in mm, MONAI (x, y, z) order.
        mode: interpolation, ``"bilinear"`` for images, ``"nearest"`` for masks.
        kwargs: passed to MONAI's Spacing.
    """

    def __init__(self, pixdim: Sequence[float] | float = PAPER_PIXDIM, mode: str = "bilinear",
                 padding_mode: str = "border", dtype=np.float32, **kwargs) -> None:
        super().__init__(pixdim=pixdim, mode=mode, padding_mode=padding_mode, dtype=dtype, **kwargs)


class ResampleToSpacingd(Spacingd):
    """Dictionary twin of :class:`ResampleToSpacing` (MONAI's Spacingd with the paper's defaults):
    ``ResampleToSpacingd(["image", "mask"], mode=["bilinear", "nearest"])``.

    Args:
        keys: keys to resample together.
        mode: one interpolation mode per key (or one for all): ``"bilinear"`` for images,
            ``"nearest"`` for masks and labels. Required: a mask resampled bilinearly silently
            grows fractional edges.
        pixdim: output voxel size in mm, MONAI (x, y, z) order (default 1 x 1 x 5).
        kwargs: passed to MONAI's Spacingd (``allow_missing_keys``, ``align_corners``, ...).
    """

    def __init__(self, keys: KeysCollection, mode: str | Sequence[str], pixdim: Sequence[float] | float = PAPER_PIXDIM,
                 padding_mode: str = "border", dtype=np.float32, **kwargs) -> None:
        super().__init__(keys=keys, pixdim=pixdim, mode=mode, padding_mode=padding_mode, dtype=dtype, **kwargs)


ResampleToSpacingD = ResampleToSpacingDict = ResampleToSpacingd
