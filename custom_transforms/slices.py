"""Tumour-slice selection: one 2D sample per axial slice that contains tumour, cropped to a fixed
in-plane field of view centred on the tumour (paper: 96 x 96 mm). Each sample keeps the patient
id, the slice index (in the volume it was cut from) and the slice's physical position z (mm).

Axial slices are the last spatial axis of a MONAI channel-first volume (C, x, y, z).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor, ensure_tuple

from voxsurv.errors import InputError

__all__ = ["TumourSlices", "TumourSlicesd", "TumourSlicesD", "TumourSlicesDict", "tumour_slice_indices"]

PAD_MODES = ("minimum", "zero")


def _affine_of(x) -> torch.Tensor:
    aff = getattr(x, "affine", None)
    return torch.eye(4, dtype=torch.float64) if aff is None else torch.as_tensor(aff, dtype=torch.float64)


def _pixdim(affine: torch.Tensor) -> np.ndarray:
    return np.sqrt((affine[:3, :3].numpy() ** 2).sum(axis=0))


def tumour_slice_indices(mask: NdarrayOrTensor, pixel_area_mm2: float, min_area_mm2: float = 0.0):
    """Indices (last axis) of axial slices whose tumour area (voxels > 0, any channel) is > 0 and
    >= ``min_area_mm2``; and the per-slice areas in mm2."""
    m = convert_to_tensor(mask, track_meta=False) > 0
    m = m.any(dim=0) if m.ndim == 4 else m
    area = m.sum(dim=(0, 1)).double().numpy() * pixel_area_mm2
    keep = np.nonzero((area > 0) & (area >= min_area_mm2))[0]
    return keep.tolist(), area


class TumourSlices(Transform):
    """Cut axial tumour slices out of a channel-first 3D volume.

    ``TumourSlices(...)(img, mask)`` returns a list of (C, H, W) MetaTensors, one per axial slice
    whose tumour area in ``mask`` is >= ``min_area_mm2``; H x W = ``roi_size_mm`` / pixel size,
    centred on the tumour's bounding box in that slice (``centre="slice"``) or in the whole
    volume (``centre="volume"``). Parts outside the volume are padded with the volume's minimum
    (``pad="minimum"``, e.g. air / window floor; 0 for masks) or 0 (``pad="zero"``).
    Each crop's affine places it in patient space; its meta has ``slice_index``, ``z_mm``
    (world z of the slice centre, mm), ``tumour_area_mm2`` and ``crop_start`` (x, y voxel).

    Args:
        min_area_mm2: smallest tumour area for a slice to count (0: any tumour voxel).
        roi_size_mm: in-plane field of view, one value or (x, y), mm (paper: 96).
        centre: ``"slice"`` or ``"volume"``: which tumour bounding box the crop is centred on.
        pad: ``"minimum"`` or ``"zero"``.
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, min_area_mm2: float = 0.0, roi_size_mm: float | Sequence[float] = 96.0,
                 centre: str = "slice", pad: str = "minimum") -> None:
        if centre not in ("slice", "volume"):
            raise ValueError(f"centre must be 'slice' or 'volume', got {centre!r}")
        if pad not in PAD_MODES:
            raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
        size = ensure_tuple(roi_size_mm)
        self.roi_size_mm = (float(size[0]), float(size[-1]))
        self.min_area_mm2 = float(min_area_mm2)
        self.centre = centre
        self.pad = pad

    def plan(self, mask: NdarrayOrTensor) -> list[dict]:
        """Where to cut: one dict per kept slice (slice_index, z_mm, tumour_area_mm2, crop_start,
        size), computed from the mask alone so every key of a sample is cut identically."""
        if convert_to_tensor(mask, track_meta=False).ndim != 4:
            raise ValueError(f"expected a channel-first 3D mask (C, x, y, z), got shape {tuple(mask.shape)}")
        affine = _affine_of(mask)
        px, py, _ = _pixdim(affine)
        size = (max(1, int(round(self.roi_size_mm[0] / px))), max(1, int(round(self.roi_size_mm[1] / py))))
        keep, area = tumour_slice_indices(mask, px * py, self.min_area_mm2)
        m = (convert_to_tensor(mask, track_meta=False) > 0).any(dim=0).numpy()
        if self.centre == "volume" and keep:
            xs, ys, _ = np.nonzero(m)
            volume_centre = ((xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0)
        plans = []
        for k in keep:
            if self.centre == "slice":
                xs, ys = np.nonzero(m[:, :, k])
                cx, cy = (xs.min() + xs.max()) / 2.0, (ys.min() + ys.max()) / 2.0
            else:
                cx, cy = volume_centre
            start = (int(np.floor(cx - (size[0] - 1) / 2.0 + 0.5)), int(np.floor(cy - (size[1] - 1) / 2.0 + 0.5)))
            world = affine @ torch.tensor([cx, cy, float(k), 1.0], dtype=torch.float64)
            plans.append({"slice_index": int(k), "z_mm": float(world[2]), "tumour_area_mm2": float(area[k]),
                          "crop_start": start, "size": size})
        return plans

    def cut(self, img: NdarrayOrTensor, plan: dict) -> MetaTensor:
        """One (C, H, W) crop of ``img`` following ``plan`` (from :meth:`plan`)."""
        t = convert_to_tensor(img, track_meta=False)
        if t.ndim != 4:
            raise ValueError(f"expected a channel-first 3D volume (C, x, y, z), got shape {tuple(t.shape)}")
        k, (x0, y0), (sx, sy) = plan["slice_index"], plan["crop_start"], plan["size"]
        fill = float(t.min()) if self.pad == "minimum" else 0.0
        out = torch.full((t.shape[0], sx, sy), fill, dtype=t.dtype)
        X, Y = t.shape[1], t.shape[2]
        ax0, ax1 = max(x0, 0), min(x0 + sx, X)
        ay0, ay1 = max(y0, 0), min(y0 + sy, Y)
        if ax1 > ax0 and ay1 > ay0:
            out[:, ax0 - x0:ax1 - x0, ay0 - y0:ay1 - y0] = t[:, ax0:ax1, ay0:ay1, k]
        affine = _affine_of(img)
        shift = torch.eye(4, dtype=torch.float64)
        shift[:3, 3] = torch.tensor([x0, y0, k], dtype=torch.float64)
        meta = {key: val for key, val in getattr(img, "meta", {}).items()
                if key in ("filename_or_obj", "patient_id", "zscore_mean_hu", "zscore_std_hu", "zscore_region",
                           "hu_window")}
        meta.update({k2: plan[k2] for k2 in ("slice_index", "z_mm", "tumour_area_mm2", "crop_start")})
        return MetaTensor(out, affine=affine @ shift, meta=meta)

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor) -> list[MetaTensor]:
        return [self.cut(img, p) for p in self.plan(mask)]


def _patient_id(d: Mapping, key: str, mask) -> str:
    if d.get(key) is not None:
        return str(d[key])
    meta = getattr(mask, "meta", {}) or {}
    if meta.get("patient_id"):
        return str(meta["patient_id"])
    name = os.path.basename(str(meta.get("filename_or_obj", "") or ""))
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


class TumourSlicesd(MapTransform):
    """Dictionary twin of :class:`TumourSlices`: returns a LIST of per-slice dicts, so a MONAI
    Compose maps the following transforms over the slices. Each dict holds the (C, H, W) crops of
    ``image_keys`` and ``mask_key`` (same cut for all), the other entries of the input copied,
    and ``patient_id``, ``slice_index``, ``z_mm`` (also in each crop's meta). InputError naming
    the patient when no slice qualifies.

    Args:
        image_keys: keys of channel-first 3D volumes on the mask's grid (CT, maps, ...).
        mask_key: key of the tumour mask.
        min_area_mm2, roi_size_mm, centre, pad: as in :class:`TumourSlices`.
        patient_id_key: where the patient id is read (else the mask's meta / file name).
        allow_missing_keys: skip absent image keys.
    """

    backend = TumourSlices.backend

    def __init__(self, image_keys: KeysCollection = "image", mask_key: str = "mask", min_area_mm2: float = 0.0,
                 roi_size_mm: float | Sequence[float] = 96.0, centre: str = "slice", pad: str = "minimum",
                 patient_id_key: str = "patient_id", allow_missing_keys: bool = False) -> None:
        super().__init__(image_keys, allow_missing_keys)
        self.mask_key = mask_key
        self.patient_id_key = patient_id_key
        self.slicer = TumourSlices(min_area_mm2, roi_size_mm, centre, pad)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> list[dict[Hashable, NdarrayOrTensor]]:
        d = dict(data)
        mask = d[self.mask_key]
        pid = _patient_id(d, self.patient_id_key, mask)
        plans = self.slicer.plan(mask)
        if not plans:
            raise InputError(f"no axial slice with tumour area >= {self.slicer.min_area_mm2:g} mm2 "
                             "(mask empty or too small after resampling)", patient_id=pid,
                             fix="check the mask, lower min_area_mm2 or exclude this patient")
        keys = [k for k in self.key_iterator(d)]
        if self.mask_key not in keys:
            keys.append(self.mask_key)
        samples = []
        for p in plans:
            s = {k: v for k, v in d.items() if k not in keys}
            for key in keys:
                crop = self.slicer.cut(d[key], p)
                crop.meta["patient_id"] = pid
                s[key] = crop
            s.update({self.patient_id_key: pid, "slice_index": p["slice_index"], "z_mm": p["z_mm"]})
            samples.append(s)
        return samples


TumourSlicesD = TumourSlicesDict = TumourSlicesd
