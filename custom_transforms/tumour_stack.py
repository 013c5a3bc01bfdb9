"""The per-patient network input: a stack of axial tumour slices (C, H, W, S) cut with ONE field of
view per patient that holds the whole tumour, and the random choice of K of those slices for
training.

Why one field of view per patient: a fixed crop (64 mm) cut the tumour in 23% of source slices
(issue 11), and a crop sized per slice would erase the size information the model needs. The side
is the tumour's largest in-plane extent over its kept slices plus a margin, so no kept slice is
cut (``tumour_cut_slices`` reports it: 0 by construction); each slice is centred on its own
tumour, padded with 0 in every channel (inputs are scaled before, so 0 means "nothing": below the
HU window, no map value, no mask) and resized anti-aliased to ``img_size``.

Axial slices are the last spatial axis of a MONAI channel-first volume (C, x, y, z), and the stack
keeps them there: (C, H, W, S). MONAI's RandFlipd(spatial_axis=0) and RandRotated(range_z=...)
then act in-plane on every slice alone (rotation about the slice axis; see the tests).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, Transform
from monai.utils import convert_to_tensor

from custom_transforms.descriptors import voxel_spacing
from voxsurv.core.errors import InputError

__all__ = ["STACK_META_KEYS", "RandTumourSlices", "RandTumourSlicesd", "RandTumourSlicesD",
           "RandTumourSlicesDict", "TumourStack", "TumourStackd", "TumourStackD", "TumourStackDict"]

#: meta keys written by TumourStack (besides affine).
STACK_META_KEYS = ("channel_names", "slice_indices", "crop_boxes", "fov_mm", "tumour_cut_slices",
                   "tumour_area_mm2", "volume_affine", "volume_spatial_shape", "patient_id")


class TumourStack(Transform):
    """Channel-first volume (C, x, y, z) + tumour mask (1, x, y, z) on the same grid -> MetaTensor
    (C, img_size, img_size, S) of the S axial slices whose tumour area is >= ``min_area_mm2``.

    Field of view (one per patient, square in mm): side = max(``min_fov_mm``, (1 + 2 x
    ``fov_margin``) x the largest in-plane tumour extent (bounding-box side, mm) over the kept
    slices), rounded up to whole voxels. Each slice is cropped around the centre of its own tumour
    bounding box (integer voxel box, 0 outside the volume) and resized with anti-aliased bilinear
    interpolation: every slice of a patient has the same pixel size, so tumour area is kept.

    Meta of the output: ``channel_names`` (when given), ``slice_indices`` (S,) int64 z-index in
    the volume, ``crop_boxes`` (S, 4) int64 = x0, y0, width_x, width_y in voxels of the volume
    (paste back: resize a (H, W) slice map to (width_x, width_y) and add it at [x0:, y0:] of
    slice ``slice_indices[s]``; parts outside the volume drop), ``fov_mm`` (the crop's side),
    ``tumour_cut_slices`` (kept slices with tumour voxels outside their box: 0 by construction),
    ``tumour_area_mm2`` (S,), ``volume_affine`` (4, 4) and ``volume_spatial_shape`` (3,) of the
    input grid. The stack's own affine has the in-plane pixel size fov_mm / img_size and the
    input's slice step.

    Args:
        img_size: output in-plane size in pixels (H = W).
        min_area_mm2: smallest tumour area for a slice to be kept (slivers at the tumour's ends).
        fov_margin: margin on each side, as a fraction of the largest tumour extent.
        min_fov_mm: smallest field of view (tiny tumours still get some context).
        channel_names: names of the input's channels, written to the output's meta.
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, img_size: int = 48, min_area_mm2: float = 10.0, fov_margin: float = 0.15,
                 min_fov_mm: float = 20.0, channel_names: Sequence[str] | None = None) -> None:
        if int(img_size) < 1:
            raise ValueError(f"img_size must be >= 1, got {img_size}")
        if fov_margin < 0 or min_fov_mm <= 0:
            raise ValueError(f"need fov_margin >= 0 and min_fov_mm > 0, got {fov_margin}, {min_fov_mm}")
        self.img_size = int(img_size)
        self.min_area_mm2 = float(min_area_mm2)
        self.fov_margin = float(fov_margin)
        self.min_fov_mm = float(min_fov_mm)
        self.channel_names = None if channel_names is None else [str(c) for c in channel_names]

    def plan(self, mask: NdarrayOrTensor) -> dict:
        """Where to cut, from the mask alone: slice_indices, crop_boxes, fov_mm, tumour_cut_slices,
        tumour_area_mm2. Empty ``slice_indices`` when no slice qualifies."""
        m = convert_to_tensor(mask, track_meta=False)
        if m.ndim != 4:
            raise ValueError(f"expected a channel-first 3D mask (C, x, y, z), got shape {tuple(m.shape)}")
        roi = (m > 0).any(dim=0).numpy()  # (x, y, z)
        px, py, _ = voxel_spacing(mask)
        area = roi.sum(axis=(0, 1)) * px * py
        keep = [int(k) for k in np.nonzero((area > 0) & (area >= self.min_area_mm2))[0]]
        boxes = []
        for k in keep:
            xs, ys = np.nonzero(roi[:, :, k])
            boxes.append((xs.min(), xs.max(), ys.min(), ys.max()))
        extent = max([max((x1 - x0 + 1) * px, (y1 - y0 + 1) * py) for x0, x1, y0, y1 in boxes], default=0.0)
        side_mm = max(self.min_fov_mm, (1.0 + 2.0 * self.fov_margin) * extent)
        nx, ny = math.ceil(side_mm / px - 1e-6), math.ceil(side_mm / py - 1e-6)
        fov_mm = nx * px  # the crop's real side: the requested one rounded up to whole voxels
        crop_boxes, cut = [], 0
        for k, (x0, x1, y0, y1) in zip(keep, boxes):
            bx = int(math.floor((x0 + x1) / 2.0 - (nx - 1) / 2.0 + 0.5))
            by = int(math.floor((y0 + y1) / 2.0 - (ny - 1) / 2.0 + 0.5))
            crop_boxes.append((bx, by, nx, ny))
            inside = roi[max(bx, 0):bx + nx, max(by, 0):by + ny, k].sum()
            cut += int(inside < roi[:, :, k].sum())
        return {"slice_indices": keep, "crop_boxes": crop_boxes, "fov_mm": float(fov_mm),
                "tumour_cut_slices": cut, "tumour_area_mm2": [float(area[k]) for k in keep]}

    def cut(self, img: NdarrayOrTensor, plan: dict) -> MetaTensor:
        """The (C, H, W, S) stack of ``img`` following ``plan`` (from :meth:`plan`)."""
        t = convert_to_tensor(img, track_meta=False, dtype=torch.float32)
        if t.ndim != 4:
            raise ValueError(f"expected a channel-first 3D volume (C, x, y, z), got shape {tuple(t.shape)}")
        if not plan["slice_indices"]:
            raise ValueError("empty plan: no tumour slice to cut")
        _, X, Y, _ = t.shape
        nx, ny = plan["crop_boxes"][0][2:]
        crops = torch.zeros((len(plan["slice_indices"]), t.shape[0], nx, ny), dtype=torch.float32)
        for s, (k, (bx, by, _, _)) in enumerate(zip(plan["slice_indices"], plan["crop_boxes"])):
            ax0, ax1, ay0, ay1 = max(bx, 0), min(bx + nx, X), max(by, 0), min(by + ny, Y)
            if ax1 > ax0 and ay1 > ay0:
                crops[s, :, ax0 - bx:ax1 - bx, ay0 - by:ay1 - by] = t[:, ax0:ax1, ay0:ay1, k]
        size = (self.img_size, self.img_size)
        if (nx, ny) != size:
            crops = F.interpolate(crops, size=size, mode="bilinear", align_corners=False, antialias=True)
        stack = crops.permute(1, 2, 3, 0).contiguous()  # (C, H, W, S)
        volume_affine = torch.as_tensor(img.affine if isinstance(img, MetaTensor) else np.eye(4),
                                        dtype=torch.float64)
        px, py, pz = voxel_spacing(img) if isinstance(img, MetaTensor) else (1.0, 1.0, 1.0)
        meta = {k: v for k, v in (getattr(img, "meta", None) or {}).items()
                if k in ("filename_or_obj", "patient_id")}
        meta.update({
            "slice_indices": torch.as_tensor(plan["slice_indices"], dtype=torch.int64),
            "crop_boxes": torch.as_tensor(plan["crop_boxes"], dtype=torch.int64).reshape(-1, 4),
            "fov_mm": plan["fov_mm"], "tumour_cut_slices": int(plan["tumour_cut_slices"]),
            "tumour_area_mm2": torch.as_tensor(plan["tumour_area_mm2"], dtype=torch.float64),
            "volume_affine": volume_affine, "volume_spatial_shape": torch.as_tensor(t.shape[1:], dtype=torch.int64),
        })
        if self.channel_names is not None:
            if len(self.channel_names) != t.shape[0]:
                raise ValueError(f"{len(self.channel_names)} channel names for {t.shape[0]} channels")
            meta["channel_names"] = list(self.channel_names)
        affine = torch.diag(torch.tensor([nx * px / self.img_size, ny * py / self.img_size, pz, 1.0],
                                         dtype=torch.float64))
        return MetaTensor(stack, affine=affine, meta=meta)

    def __call__(self, img: NdarrayOrTensor, mask: NdarrayOrTensor) -> MetaTensor:
        plan = self.plan(mask)
        if not plan["slice_indices"]:
            raise InputError(f"no axial slice with tumour area >= {self.min_area_mm2:g} mm2 "
                             "(mask empty or too small after resampling)",
                             fix="check the mask, lower min_area_mm2 or exclude this patient")
        return self.cut(img, plan)


class TumourStackd(MapTransform):
    """Dictionary twin of :class:`TumourStack`: ``d[key] = stack(d[key], d[mask_key])`` for every
    key, all cut with the plan of ``d[mask_key]``. InputError naming ``d[patient_id_key]`` when no
    slice qualifies; the patient id is also written to each stack's meta.

    Args:
        keys: channel-first volumes on the mask's grid (e.g. the concatenated "image").
        mask_key: the tumour mask (any channel count; > 0 = tumour).
        img_size, min_area_mm2, fov_margin, min_fov_mm, channel_names: see :class:`TumourStack`.
        patient_id_key: where the patient id is read.
        allow_missing_keys: skip absent keys.
    """

    backend = TumourStack.backend

    def __init__(self, keys: KeysCollection, mask_key: str = "mask", img_size: int = 48,
                 min_area_mm2: float = 10.0, fov_margin: float = 0.15, min_fov_mm: float = 20.0,
                 channel_names: Sequence[str] | None = None, patient_id_key: str = "patient_id",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.patient_id_key = patient_id_key
        self.stacker = TumourStack(img_size, min_area_mm2, fov_margin, min_fov_mm, channel_names)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        plan = self.stacker.plan(d[self.mask_key])
        pid = d.get(self.patient_id_key)
        if not plan["slice_indices"]:
            raise InputError(f"no axial slice with tumour area >= {self.stacker.min_area_mm2:g} mm2 "
                             "(mask empty or too small after resampling)",
                             patient_id=None if pid is None else str(pid),
                             fix="check the mask, lower min_area_mm2 or exclude this patient")
        for key in self.key_iterator(d):
            stack = self.stacker.cut(d[key], plan)
            if pid is not None:
                stack.meta["patient_id"] = str(pid)
            d[key] = stack
        return d


def _take_slices(stack: NdarrayOrTensor, positions: torch.Tensor) -> NdarrayOrTensor:
    """Slices ``positions`` (last axis) of a (C, H, W, S) stack; per-slice meta follows."""
    out = stack[..., positions] if isinstance(stack, torch.Tensor) else torch.as_tensor(stack)[..., positions]
    if isinstance(stack, MetaTensor):
        out = MetaTensor(out.as_tensor(), meta=dict(stack.meta))  # the meta holds the affine
        for key in ("slice_indices", "crop_boxes", "tumour_area_mm2"):
            if key in out.meta:
                out.meta[key] = torch.as_tensor(out.meta[key])[positions]
        out.meta["stack_positions"] = positions.clone()
    return out


class RandTumourSlices(Randomizable, Transform):
    """(C, H, W, S) tumour stack -> (C, H, W, K): K random slices, in stack order. Without
    replacement when S >= K; when S < K every slice once plus K - S drawn with replacement (so a
    small tumour gives all it has). Per-slice meta (slice_indices, crop_boxes, tumour_area_mm2)
    follows; ``stack_positions`` records the chosen positions. Draws only from ``self.R``:
    ``set_random_state(seed)`` makes it reproducible.

    Args:
        num_slices: K.
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, num_slices: int = 1) -> None:
        if int(num_slices) < 1:
            raise ValueError(f"num_slices must be >= 1, got {num_slices}")
        self.num_slices = int(num_slices)
        self._positions: torch.Tensor | None = None

    def randomize(self, n_slices: int) -> None:
        if n_slices < 1:
            raise ValueError("the stack has no slice")
        k = self.num_slices
        if n_slices >= k:
            pos = self.R.choice(n_slices, size=k, replace=False)
        else:
            pos = np.concatenate([np.arange(n_slices), self.R.choice(n_slices, size=k - n_slices, replace=True)])
        self._positions = torch.as_tensor(np.sort(pos), dtype=torch.int64)

    def __call__(self, stack: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize(int(stack.shape[-1]))
        if self._positions is None:
            raise RuntimeError("call randomize() or __call__(..., randomize=True) first")
        return _take_slices(stack, self._positions)


class RandTumourSlicesd(Randomizable, MapTransform):
    """Dictionary twin of :class:`RandTumourSlices`: the same K positions for every key (drawn from
    the slice count of the first key present).

    Args:
        keys: (C, H, W, S) stacks of one patient, same S.
        num_slices: K.
        allow_missing_keys: skip absent keys.
    """

    backend = RandTumourSlices.backend

    def __init__(self, keys: KeysCollection, num_slices: int = 1, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.sampler = RandTumourSlices(num_slices)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.sampler.set_random_state(seed, state)
        return self

    def randomize(self, n_slices: int) -> None:
        self.sampler.randomize(n_slices)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        self.randomize(int(d[keys[0]].shape[-1]))
        for key in keys:
            if d[key].shape[-1] != d[keys[0]].shape[-1]:
                raise ValueError(f"stacks differ in slice count: {key} {tuple(d[key].shape)} vs "
                                 f"{keys[0]} {tuple(d[keys[0]].shape)}")
            d[key] = self.sampler(d[key], randomize=False)
        return d


TumourStackD = TumourStackDict = TumourStackd
RandTumourSlicesD = RandTumourSlicesDict = RandTumourSlicesd
