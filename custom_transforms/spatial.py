"""Resampling to the paper's voxel size (1 x 1 x 5 mm), built on MONAI's Spacing so affine,
pixdim and inverse stay MONAI's own. Image bilinear, mask nearest (a resampled mask stays binary)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Spacing, Spacingd
from monai.utils import ensure_tuple

__all__ = ["PAPER_PIXDIM", "ResampleToSpacing", "ResampleToSpacingd", "ResampleToSpacingD",
           "ResampleToSpacingDict"]

#: Voxel size (mm) of the paper's preprocessing, in MONAI's (x, y, z) order; z is the axial step.
PAPER_PIXDIM = (1.0, 1.0, 5.0)

_NEAREST_HINTS = ("mask", "label", "seg", "gtv", "roi")


class ResampleToSpacing(Spacing):
    """MONAI :class:`~monai.transforms.Spacing` with the paper's defaults: 1 x 1 x 5 mm, bilinear,
    border padding, float32 output. Channel-first (C, x, y, z) MetaTensor in and out.

    Args:
        pixdim: output voxel size in mm, MONAI (x, y, z) order.
        mode: interpolation, ``"bilinear"`` for images, ``"nearest"`` for masks.
        kwargs: passed to MONAI's Spacing.
    """

    def __init__(self, pixdim: Sequence[float] | float = PAPER_PIXDIM, mode: str = "bilinear",
                 padding_mode: str = "border", dtype=np.float32, **kwargs) -> None:
        super().__init__(pixdim=pixdim, mode=mode, padding_mode=padding_mode, dtype=dtype, **kwargs)


class ResampleToSpacingd(Spacingd):
    """Dictionary twin of :class:`ResampleToSpacing` (MONAI's Spacingd). With ``mode=None`` each
    key gets ``"nearest"`` when its name says it is a mask/label/segmentation, else ``"bilinear"``.

    Args:
        keys: keys to resample together (default image and mask).
        pixdim: output voxel size in mm, MONAI (x, y, z) order (default 1 x 1 x 5).
        mode: one mode or one per key; None chooses per key as above.
        kwargs: passed to MONAI's Spacingd (``allow_missing_keys``, ``align_corners``, ...).
    """

    def __init__(self, keys: KeysCollection = ("image", "mask"), pixdim: Sequence[float] | float = PAPER_PIXDIM,
                 mode: str | Sequence[str] | None = None, padding_mode: str = "border", dtype=np.float32,
                 **kwargs) -> None:
        if mode is None:
            mode = tuple("nearest" if any(h in str(k).lower() for h in _NEAREST_HINTS) else "bilinear"
                         for k in ensure_tuple(keys))
        super().__init__(keys=keys, pixdim=pixdim, mode=mode, padding_mode=padding_mode, dtype=dtype, **kwargs)


ResampleToSpacingD = ResampleToSpacingDict = ResampleToSpacingd
