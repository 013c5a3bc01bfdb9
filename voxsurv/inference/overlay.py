"""PNG overlay of the tumour slices a risk came from: CT (grey), tumour contour (green), Grad-CAM
heat map (jet, transparent where low) and its colour bar, on the input CT's own slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

__all__ = ["CONTOUR_RGB", "input_slices_at", "write_overlay"]

#: contour colour (pure green, drawn without anti-aliasing so the pixels are exactly this)
CONTOUR_RGB = (0, 255, 0)
#: display window of the CT (soft tissue / mediastinum: W 400, L 40)
DISPLAY_HU = (-160.0, 240.0)
HEAT_FLOOR = 0.1  # CAM below this fraction of the patient's maximum is not drawn
MAX_PANELS = 12


def input_slices_at(reference: sitk.Image, z_mm) -> list[int]:
    """Axial indices of ``reference`` nearest to world z positions (mm), unique and sorted."""
    n = reference.GetSize()[2]
    zs = np.array([reference.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(n)])
    return sorted({int(np.argmin(np.abs(zs - z))) for z in np.atleast_1d(z_mm)})


def write_overlay(path: str | Path, ct: sitk.Image, mask: sitk.Image, cam: sitk.Image, slices: list[int],
                  title: str = "", margin_mm: float = 15.0) -> Path:
    """Write the overlay PNG of ``slices`` (axial indices of ``ct``; at most 12, evenly chosen).

    All three images must share ``ct``'s grid. The panels are cropped to the tumour's bounding box
    plus ``margin_mm``; patient left is on the image right (radiological view of LPS data).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    ct_a = sitk.GetArrayViewFromImage(ct)  # (z, y, x)
    m_a = sitk.GetArrayViewFromImage(mask) > 0
    c_a = sitk.GetArrayViewFromImage(cam)
    if len(slices) > MAX_PANELS:
        slices = [slices[int(round(i))] for i in np.linspace(0, len(slices) - 1, MAX_PANELS)]
    sx, sy = ct.GetSpacing()[:2]
    ys, xs = np.nonzero(m_a.any(axis=0))
    y0, y1 = max(0, ys.min() - int(margin_mm / sy)), min(ct_a.shape[1], ys.max() + 1 + int(margin_mm / sy))
    x0, x1 = max(0, xs.min() - int(margin_mm / sx)), min(ct_a.shape[2], xs.max() + 1 + int(margin_mm / sx))

    ncols = min(4, len(slices))
    nrows = int(np.ceil(len(slices) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.2, 3.3 * nrows + 0.6), squeeze=False)
    heat_cmap = plt.get_cmap("jet")
    green = tuple(c / 255.0 for c in CONTOUR_RGB)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), slices):
        z = ct.TransformIndexToPhysicalPoint((0, 0, int(k)))[2]
        ax.imshow(ct_a[k, y0:y1, x0:x1], cmap="gray", vmin=DISPLAY_HU[0], vmax=DISPLAY_HU[1],
                  aspect=sy / sx, interpolation="nearest")
        heat = np.ma.masked_less(c_a[k, y0:y1, x0:x1], HEAT_FLOOR)
        ax.imshow(heat, cmap=heat_cmap, vmin=0.0, vmax=1.0, alpha=0.45, aspect=sy / sx, interpolation="nearest")
        if m_a[k, y0:y1, x0:x1].any():
            ax.contour(m_a[k, y0:y1, x0:x1].astype(float), levels=[0.5], colors=[green], linewidths=2.0,
                       antialiased=False)
        ax.set_title(f"slice {k} (z {z:.1f} mm)", fontsize=9)
    fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(0.0, 1.0), cmap=heat_cmap), ax=axes.ravel().tolist(),
                 fraction=0.03, pad=0.02, label="Grad-CAM (fraction of the patient's maximum)")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
