"""Tumour descriptors: log tumour volume (ml) and mean tumour density (HU), measured once per
patient on the resampled grid BEFORE any intensity scaling or augmentation.

They are the two strongest simple predictors in the diagnosis of issue 11 (size and density):
the anchored network starts from a Cox model on them, and the study reports every deep row
against them. Measuring them here, from the HU image, keeps them independent of the network
input's scaling and of the random rotations/flips applied to the slice stack later.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from voxsurv.core.errors import InputError

__all__ = ["DESCRIPTOR_NAMES", "TumourDescriptors", "TumourDescriptorsd", "TumourDescriptorsD",
           "TumourDescriptorsDict", "voxel_spacing"]

#: Order of the entries of the ``descriptors`` vector.
DESCRIPTOR_NAMES = ("log_volume_ml", "mean_hu")


def voxel_spacing(img, pixdim: Sequence[float] | None = None) -> tuple[float, float, float]:
    """(x, y, z) voxel size in mm of a channel-first MetaTensor (from its affine), else ``pixdim``."""
    if isinstance(img, MetaTensor):
        return tuple(float(s) for s in img.pixdim[:3])
    if pixdim is None:
        raise InputError("no voxel spacing: the image is not a MetaTensor and no pixdim was given",
                         fix="load images with LoadImaged (MetaTensor) or pass pixdim=(x, y, z) mm")
    return tuple(float(s) for s in pixdim)


class TumourDescriptors(Transform):
    """CT (1, x, y, z) in HU + tumour mask (1, x, y, z) -> float32 tensor (2,):
    [log(tumour volume in ml), mean HU inside the tumour] (names: ``DESCRIPTOR_NAMES``).

    The volume is the number of mask voxels (> 0) times the voxel volume (from the mask's
    affine); the mean is over the same voxels of the unclipped, unscaled CT. An empty mask is an
    InputError (no tumour, nothing to describe).

    Args:
        pixdim: (x, y, z) mm, used only when the mask is not a MetaTensor.
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, pixdim: Sequence[float] | None = None) -> None:
        self.pixdim = pixdim

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor) -> torch.Tensor:
        image = convert_to_tensor(img, track_meta=False, dtype=torch.float64)
        roi = convert_to_tensor(mask, track_meta=False) > 0
        if roi.shape != image.shape:
            raise InputError(f"mask shape {tuple(roi.shape)} differs from image shape {tuple(image.shape)}",
                             fix="resample image and mask together (ResampleToSpacingd on both keys)")
        n = int(roi.sum())
        if n == 0:
            raise InputError("mask is empty after resampling (no tumour voxel)",
                             fix="check the contour; this patient cannot be described or sliced")
        voxel_ml = float(np.prod(voxel_spacing(mask if isinstance(mask, MetaTensor) else img, self.pixdim))) / 1000.0
        return torch.tensor([np.log(n * voxel_ml), float(image[roi].mean())], dtype=torch.float32)


class TumourDescriptorsd(MapTransform):
    """Dictionary twin of :class:`TumourDescriptors`: ``d[output_key] = descriptors(d[key],
    d[mask_key])``. InputError names ``d["patient_id"]`` when present.

    Args:
        keys: the CT key (HU, resampled; one key).
        mask_key: the tumour mask key.
        output_key: where the (2,) tensor goes.
        allow_missing_keys: skip when the CT key is absent.
    """

    backend = TumourDescriptors.backend

    def __init__(self, keys: KeysCollection, mask_key: str = "mask", output_key: str = "descriptors",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"TumourDescriptorsd describes one CT key, got {self.keys}")
        self.mask_key = mask_key
        self.output_key = output_key
        self.describer = TumourDescriptors()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[self.output_key] = self.describer(d[key], d[self.mask_key])
            except InputError as err:
                pid = d.get("patient_id")
                raise (err.with_patient(str(pid)) if pid is not None else err) from None
        return d


TumourDescriptorsD = TumourDescriptorsDict = TumourDescriptorsd
