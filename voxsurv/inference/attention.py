"""Grad-CAM of the slices a patient's risk came from, put back into the input CT's geometry.

The network sees 2D crops of the 1 x 1 x 5 mm resampled volume, resized to its input size.
Each crop carries (from custom_transforms.TumourSlices) its slice index, crop start and an affine
placing it in patient space; the CAMs are resized back to the crop size, laid into a small volume
on the resampled grid (the crops' bounding box) and resampled (linear) onto the input image's
grid with SimpleITK, so the NIfTI written has exactly the input CT's size, spacing, origin and
direction and overlays it in any viewer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

__all__ = ["crops_to_volume", "resample_like", "attention_on_input_grid"]

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _shift(x: float, y: float, z: float) -> np.ndarray:
    s = np.eye(4)
    s[:3, 3] = (x, y, z)
    return s


def crops_to_volume(values: Sequence[torch.Tensor], crops: Sequence) -> sitk.Image:
    """Lay 2D maps (each (H, W), any size) into a volume on the grid the crops were cut from.

    Args:
        values: one 2D tensor per crop; resized (bilinear) to the crop's size.
        crops: the (1, sx, sy) mask crops of custom_transforms.TumourSlicesd (MetaTensors whose meta
            has ``slice_index`` and ``crop_start`` and whose affine is the RAS affine of the crop).

    Returns:
        a float32 SimpleITK image (LPS geometry) covering the crops' bounding box.
    """
    if not crops or len(values) != len(crops):
        raise ValueError(f"need one value map per crop, got {len(values)} maps for {len(crops)} crops")
    boxes = []
    for crop in crops:
        (x0, y0), k = crop.meta["crop_start"], int(crop.meta["slice_index"])
        boxes.append((int(x0), int(y0), k, int(crop.shape[-2]), int(crop.shape[-1])))
    bx0, by0, bk0 = min(b[0] for b in boxes), min(b[1] for b in boxes), min(b[2] for b in boxes)
    bx1 = max(b[0] + b[3] for b in boxes)
    by1 = max(b[1] + b[4] for b in boxes)
    bk1 = max(b[2] for b in boxes) + 1
    vol = np.zeros((bx1 - bx0, by1 - by0, bk1 - bk0), dtype=np.float32)
    for v, (x0, y0, k, sx, sy) in zip(values, boxes):
        v = torch.as_tensor(v, dtype=torch.float32).reshape(1, 1, *v.shape[-2:])
        if tuple(v.shape[-2:]) != (sx, sy):
            v = F.interpolate(v, size=(sx, sy), mode="bilinear", align_corners=False)
        vol[x0 - bx0:x0 - bx0 + sx, y0 - by0:y0 - by0 + sy, k - bk0] = v[0, 0].numpy()
    # affine of the resampled volume = crop affine @ shift(crop start)^-1; then move to the box corner
    x0, y0, k = boxes[0][:3]
    crop_affine = np.asarray(crops[0].affine, dtype=np.float64)
    ras = crop_affine @ np.linalg.inv(_shift(x0, y0, k)) @ _shift(bx0, by0, bk0)
    lps = _RAS_TO_LPS @ ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(vol.transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).reshape(-1)])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


def resample_like(image: sitk.Image, reference: sitk.Image, linear: bool = True) -> sitk.Image:
    """``image`` on ``reference``'s grid (0 outside), float32."""
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    return sitk.Resample(image, reference, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)


def attention_on_input_grid(cams: torch.Tensor, crops: Sequence, reference: sitk.Image) -> sitk.Image:
    """(N, 1, H, W) Grad-CAMs of N crops -> one volume on the input CT's grid, scaled so that the
    patient's largest CAM value is 1 (slices stay comparable with each other)."""
    cams = torch.as_tensor(cams).detach().float().clamp_min(0)
    peak = float(cams.max()) if cams.numel() else 0.0
    if peak > 0:
        cams = cams / peak
    vol = crops_to_volume([c[0] for c in cams], crops)
    return resample_like(vol, reference)
