"""PNG overlay of the tumour slices a risk came from: CT (grey), tumour contour (green), Grad-CAM
heat map (jet, transparent where low) and its colour bar, on the input CT's own slices; with the
patient's orientation letters on every panel, and a footer naming the model version, the date and
"research use only". The PNG shows exactly the slices passed in (:func:`choose_panels` picks at
most 12), and its text chunks repeat them, so report.json and the picture cannot disagree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

__all__ = ["CONTOUR_RGB", "RESEARCH_USE", "choose_panels", "input_slices_at", "orientation_letters", "write_overlay"]

#: contour colour (pure green, drawn without anti-aliasing so the pixels are exactly this)
CONTOUR_RGB = (0, 255, 0)
#: display window of the CT (soft tissue / mediastinum: W 400, L 40)
DISPLAY_HU = (-160.0, 240.0)
HEAT_FLOOR = 0.1  # CAM below this fraction of the patient's maximum is not drawn
MAX_PANELS = 12
RESEARCH_USE = "Research use only - not for clinical decisions"
_LPS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative, positive) end of each LPS world axis


def choose_panels(slices: list[int], max_panels: int = MAX_PANELS) -> list[int]:
    """At most ``max_panels`` of ``slices``, evenly spread from the first to the last."""
    slices = list(slices)
    if len(slices) <= max_panels:
        return slices
    return [slices[int(round(i))] for i in np.linspace(0, len(slices) - 1, max_panels)]


def orientation_letters(image: sitk.Image) -> dict:
    """Patient-direction letters at the left/right/top/bottom edges of an axial panel drawn as
    array[y, x] (x to the right, y downwards), from the image's direction cosines (LPS)."""
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)

    def letter(vec):
        axis = int(np.argmax(np.abs(vec)))
        return _LPS[axis][1] if vec[axis] > 0 else _LPS[axis][0]

    right, down = letter(d[:, 0]), letter(d[:, 1])
    opposite = {a: b for pair in _LPS for a, b in (pair, pair[::-1])}
    return {"right": right, "left": opposite[right], "bottom": down, "top": opposite[down]}


def input_slices_at(reference: sitk.Image, z_mm) -> list[int]:
    """Axial indices of ``reference`` nearest to world z positions (mm), unique and sorted."""
    n = reference.GetSize()[2]
    zs = np.array([reference.TransformIndexToPhysicalPoint((0, 0, k))[2] for k in range(n)])
    return sorted({int(np.argmin(np.abs(zs - z))) for z in np.atleast_1d(z_mm)})


def write_overlay(path: str | Path, ct: sitk.Image, mask: sitk.Image, cam: sitk.Image, slices: list[int],
                  title: str = "", footer: str = "", margin_mm: float = 15.0) -> dict:
    """Write the overlay PNG of exactly ``slices`` (axial indices of ``ct``; at most 12: see
    :func:`choose_panels`) and return what it shows (slices, orientation, footer).

    All three images must share ``ct``'s grid. The panels are cropped to the tumour's bounding box
    plus ``margin_mm``; orientation letters come from the CT's direction (radiological view of
    LPS data: patient left on the image right). The footer line always ends with "research use
    only"; the PNG's text chunks hold the shown slices, the footer and the title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    slices = [int(k) for k in slices]
    if not 0 < len(slices) <= MAX_PANELS:
        raise ValueError(f"the overlay shows 1 to {MAX_PANELS} slices, got {len(slices)} (use choose_panels)")
    ct_a = sitk.GetArrayViewFromImage(ct)  # (z, y, x)
    m_a = sitk.GetArrayViewFromImage(mask) > 0
    c_a = sitk.GetArrayViewFromImage(cam)
    sx, sy = ct.GetSpacing()[:2]
    ys, xs = np.nonzero(m_a.any(axis=0))
    y0, y1 = max(0, ys.min() - int(margin_mm / sy)), min(ct_a.shape[1], ys.max() + 1 + int(margin_mm / sy))
    x0, x1 = max(0, xs.min() - int(margin_mm / sx)), min(ct_a.shape[2], xs.max() + 1 + int(margin_mm / sx))
    letters = orientation_letters(ct)
    footer = f"{footer}  |  {RESEARCH_USE}" if footer else RESEARCH_USE

    ncols = min(4, len(slices))
    nrows = int(np.ceil(len(slices) / ncols))
    # no ticks at all (axis("off") alone still builds ~40 tick lines per panel: a third of the drawing time)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.2, 3.3 * nrows + 0.9), squeeze=False,
                             subplot_kw={"xticks": [], "yticks": []})
    heat_cmap = plt.get_cmap("jet")
    green = tuple(c / 255.0 for c in CONTOUR_RGB)
    for ax in axes.ravel():
        ax.axis("off")
    letter_style = dict(color="yellow", fontsize=9, fontweight="bold", transform=None)
    for ax, k in zip(axes.ravel(), slices):
        z = ct.TransformIndexToPhysicalPoint((0, 0, int(k)))[2]
        ax.imshow(ct_a[k, y0:y1, x0:x1], cmap="gray", vmin=DISPLAY_HU[0], vmax=DISPLAY_HU[1],
                  aspect=sy / sx, interpolation="nearest")
        heat = np.ma.masked_less(c_a[k, y0:y1, x0:x1], HEAT_FLOOR)
        ax.imshow(heat, cmap=heat_cmap, vmin=0.0, vmax=1.0, alpha=0.45, aspect=sy / sx, interpolation="nearest")
        if m_a[k, y0:y1, x0:x1].any():
            ax.contour(m_a[k, y0:y1, x0:x1].astype(float), levels=[0.5], colors=[green], linewidths=2.0,
                       antialiased=False)
        letter_style["transform"] = ax.transAxes
        for text, (u, v, ha, va) in ((letters["left"], (0.02, 0.5, "left", "center")),
                                     (letters["right"], (0.98, 0.5, "right", "center")),
                                     (letters["top"], (0.5, 0.98, "center", "top")),
                                     (letters["bottom"], (0.5, 0.02, "center", "bottom"))):
            ax.text(u, v, text, ha=ha, va=va, **letter_style)
        ax.set_title(f"slice {k} (z {z:.1f} mm)", fontsize=9)
    fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(0.0, 1.0), cmap=heat_cmap), ax=axes.ravel().tolist(),
                 fraction=0.03, pad=0.02, label="Grad-CAM (fraction of the patient's maximum)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.text(0.01, 0.005, footer, fontsize=8, ha="left", va="bottom", color="#333333")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = {"slices": slices, "orientation": letters, "footer": footer, "title": title}
    fig.savefig(path, dpi=100, pil_kwargs={"compress_level": 1}, metadata={"Title": title, "Description": footer,
                                         "voxsurv:slices": ",".join(map(str, slices)),
                                         "voxsurv:orientation": ",".join(f"{k}={v}" for k, v in letters.items())})
    plt.close(fig)
    return shown
