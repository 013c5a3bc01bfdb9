"""CT intensity transforms: the paper's HU window (width 250, level 30 -> [-95, 155] HU), alone
(input of the radiomics maps, which need HU) or followed by a z-score whose statistics come from
the tumour mask or the whole image (input of the network)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

from voxsurv.errors import InputError

__all__ = ["HUWindow", "HUWindowd", "HUWindowD", "HUWindowDict",
           "HUWindowZScore", "HUWindowZScored", "HUWindowZScoreD", "HUWindowZScoreDict", "window_bounds"]

REGIONS = ("mask", "image")


def window_bounds(width: float, level: float) -> tuple[float, float]:
    """(lower, upper) HU of a window: level -/+ width / 2."""
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    return level - width / 2.0, level + width / 2.0


class HUWindow(Transform):
    """Clip a CT image (any shape, HU) to a window, without rescaling; float32 out, metadata kept.

    Args:
        width: window width in HU (paper: 250).
        level: window centre in HU (paper: 30). Defaults clip to [-95, 155].
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, width: float = 250.0, level: float = 30.0) -> None:
        self.lower, self.upper = window_bounds(width, level)
        self.width, self.level = float(width), float(level)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        img_t = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        out = torch.clamp(img_t, self.lower, self.upper)
        return convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]


class HUWindowZScore(Transform):
    """HU window then z-score: ``(clip(x) - mean) / std`` with mean and (population) std of the
    clipped values inside ``region``: the tumour mask (voxels > 0, all channels) or the whole image.
    The whole image is normalised with these statistics. A constant region gives std 0; then only
    the mean is removed (std taken as 1). Channel-first input of any spatial size; float32 out.

    Args:
        width: window width in HU (paper: 250).
        level: window centre in HU (paper: 30).
        region: ``"mask"`` (statistics inside the tumour; needs ``mask`` at call time) or ``"image"``.
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, width: float = 250.0, level: float = 30.0, region: str = "mask") -> None:
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
        self.window = HUWindow(width, level)
        self.region = region

    def statistics(self, clipped: torch.Tensor, mask: NdarrayOrTensor | None) -> tuple[float, float]:
        """Mean and population std of ``clipped`` over the chosen region."""
        if self.region == "image":
            values = clipped.as_tensor() if hasattr(clipped, "as_tensor") else clipped
            values = values.reshape(-1)
        else:
            if mask is None:
                raise ValueError("region='mask' needs a mask: pass mask=... (or use region='image')")
            m = convert_to_tensor(mask, track_meta=False) > 0
            if m.shape[1:] != clipped.shape[1:]:
                raise ValueError(f"mask spatial shape {tuple(m.shape[1:])} differs from image {tuple(clipped.shape[1:])}")
            m = m.expand(clipped.shape) if m.shape[0] == 1 else m
            plain = clipped.as_tensor() if hasattr(clipped, "as_tensor") else clipped
            values = plain[m]
            if values.numel() == 0:
                raise InputError("mask is empty: z-score statistics need at least one tumour voxel",
                                 fix="exclude this patient or use region='image'")
        values = values.double()
        mean = float(values.mean())
        std = float(values.std(unbiased=False))
        return mean, (std if std > 1e-8 else 1.0)

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        img_t = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        clipped = torch.clamp(img_t, self.window.lower, self.window.upper)
        mean, std = self.statistics(clipped, mask)
        out = (clipped - mean) / std
        if hasattr(out, "meta"):
            out.meta = dict(out.meta)
            out.meta.update({"zscore_mean_hu": mean, "zscore_std_hu": std, "zscore_region": self.region,
                             "hu_window": (self.window.lower, self.window.upper)})
        return convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]


class HUWindowd(MapTransform):
    """Dictionary twin of :class:`HUWindow`."""

    backend = HUWindow.backend

    def __init__(self, keys: KeysCollection = "image", width: float = 250.0, level: float = 30.0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.window = HUWindow(width, level)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.window(d[key])
        return d


class HUWindowZScored(MapTransform):
    """Dictionary twin of :class:`HUWindowZScore`; the mask comes from ``d[mask_key]``. An empty
    mask raises InputError naming ``d["patient_id"]`` when present.

    Args:
        keys: image keys to normalise.
        mask_key: key of the tumour mask (used when ``region="mask"``).
        width, level, region: as in :class:`HUWindowZScore`.
        allow_missing_keys: skip absent image keys.
    """

    backend = HUWindowZScore.backend

    def __init__(self, keys: KeysCollection = "image", mask_key: str = "mask", width: float = 250.0,
                 level: float = 30.0, region: str = "mask", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.normaliser = HUWindowZScore(width, level, region)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        mask = d.get(self.mask_key) if self.normaliser.region == "mask" else None
        if self.normaliser.region == "mask" and mask is None:
            raise KeyError(f"HUWindowZScored(region='mask') needs the mask under key {self.mask_key!r}")
        for key in self.key_iterator(d):
            try:
                d[key] = self.normaliser(d[key], mask)
            except InputError as err:
                pid = d.get("patient_id")
                raise (err.with_patient(str(pid)) if pid is not None else err) from None
        return d


HUWindowD = HUWindowDict = HUWindowd
HUWindowZScoreD = HUWindowZScoreDict = HUWindowZScored
