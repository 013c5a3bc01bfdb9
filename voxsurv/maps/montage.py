"""Montage of voxel maps over the CT slice with the largest tumour area (the paper's
supplementary figure of maps): panel 1 the CT with the contour, then one panel per chosen map,
each over the greyscale CT, with its own colour bar (maps have unrelated units)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voxsurv.core.errors import InputError

#: display window for the CT underlay (soft tissue + some lung), HU
CT_DISPLAY_WINDOW = (-400.0, 300.0)


def draw_montage(image: np.ndarray, roi: np.ndarray, maps: np.ndarray, names: Sequence[str],
                 chosen: Sequence[str], path: str | Path, title: str | None = None,
                 slice_index: int | None = None, margin: int = 10, columns: int = 3) -> Path:
    """Write a PNG. Arrays are (z, y, x) / (F, z, y, x); `slice_index` defaults to the axial
    slice with the most ROI voxels; the view is cropped to the ROI box + `margin` voxels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(names)
    unknown = [c for c in chosen if c not in names]
    if unknown:
        raise InputError(f"maps {unknown} were not computed",
                         fix=f"choose among the computed maps, e.g. {', '.join(names[:5])}")
    z = int(np.argmax(roi.sum(axis=(1, 2)))) if slice_index is None else int(slice_index)
    ys, xs = np.nonzero(roi[z])
    y0, y1 = max(0, ys.min() - margin), min(roi.shape[1], ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(roi.shape[2], xs.max() + margin + 1)
    ct = image[z, y0:y1, x0:x1]
    contour = roi[z, y0:y1, x0:x1]

    n = len(chosen) + 1
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    ax = axes.flat[0]
    ax.imshow(ct, cmap="gray", vmin=CT_DISPLAY_WINDOW[0], vmax=CT_DISPLAY_WINDOW[1])
    ax.contour(contour, levels=[0.5], colors="red", linewidths=1.0)
    ax.set_title(f"CT, slice {z} (HU {CT_DISPLAY_WINDOW[0]:.0f}..{CT_DISPLAY_WINDOW[1]:.0f})",
                 fontsize=9)
    for ax, name in zip(list(axes.flat)[1:], chosen):
        m = maps[names.index(name), z, y0:y1, x0:x1]
        ax.imshow(ct, cmap="gray", vmin=CT_DISPLAY_WINDOW[0], vmax=CT_DISPLAY_WINDOW[1])
        finite = m[np.isfinite(m)]
        vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
        im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=vmin, vmax=vmax)
        ax.contour(contour, levels=[0.5], colors="white", linewidths=0.6)
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
