"""Whole-ROI values on the IBSI digital phantom vs the IBSI-1 reference values.

Voxel maps have no reference values of their own, but a voxel map whose window covers a whole
slice gives that slice's whole-ROI value at every voxel. So the IBSI "2D" values (features per
axial slice, averaged over slices; for GLCM/GLRLM also over directions, tag `_2D_avg`) are
reproduced here THROUGH THE VOXEL-MAP PIPELINE: maps with a kernel radius as large as the slice,
read at one ROI voxel per slice, averaged over slices. First-order features are 3D whole-volume
statistics in IBSI, so they come from PyRadiomics' segment-based extraction.

Configuration of the phantom (IBSI manual): no resampling, no re-segmentation, no
discretisation (grey levels are the integers 1..6: bin width 1, edges at multiples of 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from voxsurv.maps.features import FEATURE_NAMES
from voxsurv.maps.settings import MapSettings

#: IBSI digital phantom configuration: integer grey levels used as they are.
PHANTOM_SETTINGS = MapSettings(radius=1, bin_width=1.0, window=None)

#: Tag suffix of the IBSI 2D value per class (first order: 3D whole volume, no suffix).
TAG_SUFFIX = {"firstorder": "", "glcm": "_2D_avg", "glrlm": "_2D_avg", "glszm": "_2D",
              "gldm": "_2D", "ngtdm": "_2D"}

#: PyRadiomics' documented definitions that differ from IBSI, and the conversion applied before
#: comparing (feature -> (reason, function of the PyRadiomics value)).
KNOWN_CONVERSIONS = {
    "firstorder_Kurtosis": ("PyRadiomics Kurtosis = IBSI excess kurtosis + 3", lambda v: v - 3.0),
}

#: PyRadiomics deviations from IBSI that the phantom (integer grey levels, no discretisation)
#: cannot show, named so that readers of the table know them (docs/maps.md).
KNOWN_DEVIATIONS = {
    "binning": "fixed bin width: PyRadiomics puts bin edges at multiples of the width "
               "(floor(min / w) x w), IBSI at the re-segmentation minimum; with the [-95, 155] HU "
               "window and width 25 the first PyRadiomics bin is [-100, -75), IBSI's [-95, -70)",
    "firstorder_Energy": "depends on voxelArrayShift (PyRadiomics default 0 = IBSI); "
                         "RootMeanSquared too",
    "firstorder_Entropy": "log2(p + eps): agrees with IBSI to ~1e-15",
}


def load_phantom(ibsi_dir: str | Path):
    """(image (z, y, x) float64, mask bool, spacing (z, y, x) mm) of the IBSI digital phantom."""
    import SimpleITK as sitk

    base = Path(ibsi_dir) / "digital_phantom" / "nifti"
    image = sitk.ReadImage(str(base / "image" / "phantom.nii.gz"))
    mask = sitk.ReadImage(str(base / "mask" / "mask.nii.gz"))
    return (sitk.GetArrayFromImage(image).astype(np.float64),
            sitk.GetArrayFromImage(mask) > 0, tuple(image.GetSpacing()[::-1]))


def load_reference(ibsi_dir: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    ref_dir = Path(ibsi_dir) / "reference"
    ref = pd.read_csv(ref_dir / "ibsi_1_dig_phantom.csv", sep=";")
    ref.columns = ["reference", "tolerance", "tag"]
    mapping = pd.read_csv(ref_dir / "pyradiomics_to_ibsi.csv")
    return ref.set_index("tag"), dict(zip(mapping["pyradiomics_feature"], mapping["ibsi_tag"]))


def per_slice_texture(image, mask, spacing, features, backend: str = "pyradiomics",
                      settings: MapSettings = PHANTOM_SETTINGS) -> dict[str, float]:
    """IBSI 2D values through voxel maps: radius >= slice size, so each map value is its slice's
    whole-ROI value; one ROI voxel per slice, averaged over the slices that hold ROI voxels."""
    from voxsurv.maps.api import compute_maps, make_settings

    radius = int(max(image.shape[1:]))
    maps, names = compute_maps(image, mask, spacing, features, backend=backend,
                               settings=make_settings(settings, radius=radius))
    per_slice = []
    for z in range(image.shape[0]):
        ys, xs = np.nonzero(mask[z])
        if ys.size:
            per_slice.append(maps[:, z, ys[0], xs[0]])
    return dict(zip(names, np.mean(per_slice, axis=0).astype(float)))


def digital_phantom_table(ibsi_dir: str | Path, texture_backend: str = "pyradiomics") -> pd.DataFrame:
    """One row per feature of the 90: IBSI tag, reference, tolerance, our value, the value after
    known conversions, |difference| relative to the reference, match (within the IBSI
    tolerance, or to the reference's 3 significant digits when its tolerance is 0), note."""
    from voxsurv.maps.pyradiomics_backend import compute_pyradiomics_roi_features

    image, mask, spacing = load_phantom(ibsi_dir)
    ref, mapping = load_reference(ibsi_dir)
    values = compute_pyradiomics_roi_features(image, mask, spacing, "firstorder", PHANTOM_SETTINGS)
    texture = [n for n in FEATURE_NAMES if not n.startswith("firstorder_")]
    values.update(per_slice_texture(image, mask, spacing, texture, backend=texture_backend))
    rows = []
    for name in FEATURE_NAMES:
        cls = name.split("_", 1)[0]
        tag = mapping[name] + TAG_SUFFIX[cls]
        reference = float(ref.loc[tag, "reference"])
        tolerance = float(ref.loc[tag, "tolerance"])
        value = values[name]
        note, compared = "", value
        if name in KNOWN_CONVERSIONS:
            note, conv = KNOWN_CONVERSIONS[name]
            compared = conv(value)
        rows.append({"feature": name, "ibsi_tag": tag, "reference": reference,
                     "tolerance": tolerance, "value": value, "compared": compared,
                     "match": _matches(compared, reference, tolerance),
                     "engine": "pyradiomics (segment, 3D)" if cls == "firstorder"
                     else f"{texture_backend} (voxel maps, slice-sized kernel)",
                     "note": note})
    return pd.DataFrame(rows)


def _matches(value: float, reference: float, tolerance: float) -> bool:
    if not np.isfinite(value):
        return False
    if tolerance > 0:
        return abs(value - reference) <= tolerance
    # IBSI phantom values are given to 3 significant digits with tolerance 0
    return float(f"{value:.3g}") == float(f"{reference:.3g}")


def markdown_table(table: pd.DataFrame) -> str:
    lines = ["| feature | IBSI tag | IBSI reference | value | compared | match | note |",
             "|---|---|---:|---:|---:|:---:|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.feature} | {r.ibsi_tag} | {r.reference:.4g} | {r.value:.4g} | "
                     f"{r.compared:.4g} | {'yes' if r.match else '**no**'} | {r.note} |")
    return "\n".join(lines)


__all__ = ["digital_phantom_table", "load_phantom", "load_reference",
           "markdown_table", "per_slice_texture"]
