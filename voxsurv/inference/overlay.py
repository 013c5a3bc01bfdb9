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
HEAT_ALPHA = 0.45
MAX_PANELS = 12
PANEL_PX = 300  # the longer side of a panel (the tumour's box + margin, drawn to scale)
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


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError):
        return ImageFont.load_default()


def jet(values: np.ndarray) -> np.ndarray:
    """matplotlib's "jet" colour map for values in [0, 1] -> RGB floats in [0, 1] (..., 3)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # r, g, b peaks of the piecewise-linear map
    return np.clip(1.5 - np.abs(4.0 * v - 4.0 * centres), 0.0, 1.0)


def _panel_rgb(ct: np.ndarray, cam: np.ndarray, roi: np.ndarray, size_px: tuple[int, int]) -> np.ndarray:
    """One panel (uint8 RGB, ``size_px`` = (width, height)): CT in the display window, Grad-CAM
    blended where >= HEAT_FLOOR, tumour contour 2 px in exactly CONTOUR_RGB."""
    from PIL import Image

    lo, hi = DISPLAY_HU
    grey = np.clip((ct.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    heat = cam >= HEAT_FLOOR
    rgb[heat] = (1.0 - HEAT_ALPHA) * rgb[heat] + HEAT_ALPHA * jet(cam[heat])
    img = np.asarray(Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8)).resize(size_px, Image.NEAREST)).copy()
    m = np.asarray(Image.fromarray(roi.astype(np.uint8) * 255).resize(size_px, Image.NEAREST)) > 0
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    edge = m & ~inner
    thick = edge.copy()  # 2 px: the edge and its inner neighbours
    thick[1:, :] |= edge[:-1, :] & m[1:, :]
    thick[:, 1:] |= edge[:, :-1] & m[:, 1:]
    img[thick] = CONTOUR_RGB
    return img


def write_overlay(path: str | Path, ct: sitk.Image, mask: sitk.Image, cam: sitk.Image, slices: list[int],
                  title: str = "", footer: str = "", margin_mm: float = 15.0) -> dict:
    """Write the overlay PNG of exactly ``slices`` (axial indices of ``ct``; at most 12: see
    :func:`choose_panels`) and return what it shows (slices, orientation, footer).

    All three images must share ``ct``'s grid. The panels are cropped to the tumour's bounding box
    plus ``margin_mm`` and drawn to scale (mm); orientation letters come from the CT's direction
    (radiological view of LPS data: patient left on the image right). The footer line always ends
    with "research use only"; the PNG's text chunks hold the shown slices, the footer and the
    title. Drawn with numpy + Pillow (matplotlib took ~1 CPU s per patient for the same picture).
    """
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

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
    width_mm, height_mm = (x1 - x0) * sx, (y1 - y0) * sy
    scale = PANEL_PX / max(width_mm, height_mm)
    size_px = (max(1, int(round(width_mm * scale))), max(1, int(round(height_mm * scale))))
    cell_w, cell_h, top, bar_w = PANEL_PX + 20, PANEL_PX + 34, 50, 210
    canvas_w = max(900, ncols * cell_w + bar_w + 20)
    canvas_h = max(600, top + nrows * cell_h + 40)
    canvas = Image.new("RGB", (canvas_w, canvas_h), "white")
    draw = ImageDraw.Draw(canvas)
    f_title, f_panel, f_letter, f_small = _font(16), _font(13), _font(14), _font(12)
    if title:
        draw.text((canvas_w // 2, 14), title, fill="black", font=f_title, anchor="mt")
    for n, k in enumerate(slices):
        r, c = divmod(n, ncols)
        cx, cy = 10 + c * cell_w, top + r * cell_h
        panel = _panel_rgb(ct_a[k, y0:y1, x0:x1], c_a[k, y0:y1, x0:x1], m_a[k, y0:y1, x0:x1], size_px)
        px, py = cx + (PANEL_PX - size_px[0]) // 2, cy + 22 + (PANEL_PX - size_px[1]) // 2
        canvas.paste(Image.fromarray(panel), (px, py))
        z = ct.TransformIndexToPhysicalPoint((0, 0, int(k)))[2]
        draw.text((cx + PANEL_PX // 2, cy + 4), f"slice {k} (z {z:.1f} mm)", fill="black", font=f_panel, anchor="mt")
        w, h = size_px
        for text, (u, v, anchor) in ((letters["left"], (px + 4, py + h // 2, "lm")),
                                     (letters["right"], (px + w - 4, py + h // 2, "rm")),
                                     (letters["top"], (px + w // 2, py + 3, "mt")),
                                     (letters["bottom"], (px + w // 2, py + h - 3, "mb"))):
            draw.text((u, v), text, fill=(255, 255, 0), font=f_letter, anchor=anchor)
    # colour bar: the heat map's scale (fraction of the patient's maximum)
    bx, by, bh = ncols * cell_w + 40, top + 22, max(200, nrows * cell_h - 60)
    ramp = jet(np.linspace(1.0, 0.0, bh))[:, None, :].repeat(28, axis=1)
    canvas.paste(Image.fromarray((ramp * 255.0 + 0.5).astype(np.uint8)), (bx, by))
    for frac in (0.0, 0.5, 1.0):
        yy = by + int(round((1.0 - frac) * (bh - 1)))
        draw.line([(bx + 28, yy), (bx + 34, yy)], fill="black")
        draw.text((bx + 38, yy), f"{frac:.1f}", fill="black", font=f_small, anchor="lm")
    draw.text((bx + 125, by + bh // 2), "Grad-CAM\n(fraction of the\npatient's maximum)", fill="black",
              font=f_small, anchor="mm", align="center")
    draw.text((10, canvas_h - 8), footer, fill=(40, 40, 40), font=f_small, anchor="lb")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in (("Title", title), ("Description", footer), ("voxsurv:slices", ",".join(map(str, slices))),
                       ("voxsurv:orientation", ",".join(f"{k}={v}" for k, v in letters.items()))):
        info.add_text(key, value)
    canvas.save(path, format="PNG", pnginfo=info, compress_level=1)
    return {"slices": slices, "orientation": letters, "footer": footer, "title": title}
