"""PyRadiomics voxel-based extraction: the reference backend for voxel maps.

PyRadiomics (`import radiomics`) is slow in voxel mode (27-39 s per tumour of ~74k voxels for all
90 maps) but it is the definition the paper used, so every other engine is tested against it.
This module only translates: numpy (z, y, x) arrays + spacing -> SimpleITK images, MapSettings ->
PyRadiomics settings (`voxelBased=True`, `kernelRadius`, `maskedKernel`, `force2D`,
`force2Ddimension=0`, `binWidth`/`binCount`, `initValue=NaN`, `voxelBatch`), and PyRadiomics'
cropped per-feature images back into one (F, z, y, x) float64 array on the input grid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from voxsurv.maps.features import by_class, resolve_features
from voxsurv.maps.inputs import check_inputs
from voxsurv.maps.settings import MapSettings

log = logging.getLogger(__name__)


def _quiet_pyradiomics() -> None:
    """PyRadiomics logs every class at INFO; keep only its errors (failed features)."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)


def _sitk_inputs(image, mask, spacing, settings: MapSettings):
    """Checked image clipped to the settings' window (float64) and its ROI as SimpleITK images, on
    one grid; also the ROI as a boolean (z, y, x) array."""
    import SimpleITK as sitk

    image, roi, spacing = check_inputs(image, mask, spacing)
    image = image.astype(np.float64)
    if settings.window is not None:
        image = np.clip(image, *settings.window)
    img = sitk.GetImageFromArray(np.ascontiguousarray(image))
    img.SetSpacing(spacing[::-1])  # SimpleITK wants (x, y, z)
    msk = sitk.GetImageFromArray(roi.astype(np.uint8))
    msk.CopyInformation(img)
    return img, msk, roi


def _extractor(names: list[str], params: dict):
    from radiomics import featureextractor

    _quiet_pyradiomics()
    extractor = featureextractor.RadiomicsFeatureExtractor(**params)
    extractor.disableAllImageTypes()
    extractor.enableImageTypeByName("Original")
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**by_class(names))
    return extractor


def compute_pyradiomics_maps(image, mask, spacing, features: str | Iterable[str] | None = None,
                             settings: MapSettings | None = None,
                             voxel_batch: int = -1) -> tuple[np.ndarray, list[str]]:
    """Voxel-level maps with PyRadiomics (the reference).

    Args:
        image: (z, y, x) CT in HU. Clipped to `settings.window` here.
        mask: (z, y, x) ROI, > 0 inside.
        spacing: voxel size in mm in the array's axis order (z, y, x).
        features: names or classes (see `voxsurv.maps.features.resolve_features`); None = all 90.
        settings: MapSettings (defaults: the paper's).
        voxel_batch: PyRadiomics `voxelBatch` (voxels per batch; -1 all at once). Changes memory,
            not values.

    Returns:
        (maps, names): float64 (F, z, y, x), NaN outside the ROI, names in the requested order.
    """
    settings = settings or MapSettings()
    names = resolve_features(features)

    import SimpleITK as sitk

    img, msk, roi = _sitk_inputs(image, mask, spacing, settings)
    params = settings.to_pyradiomics()
    params["voxelBatch"] = int(voxel_batch)
    result = _extractor(names, params).execute(img, msk, voxelBased=True)

    maps = np.full((len(names),) + roi.shape, np.nan, dtype=np.float64)
    for i, name in enumerate(names):
        fmap = result.get(f"original_{name}")
        if fmap is None:  # the whole class failed; PyRadiomics logged why
            log.warning("PyRadiomics returned no map for %s", name)
            continue
        # PyRadiomics crops to the ROI bounding box (+ kernel radius): put it back by its origin.
        x0, y0, z0 = img.TransformPhysicalPointToIndex(fmap.GetOrigin())
        arr = sitk.GetArrayFromImage(fmap)
        maps[i, z0:z0 + arr.shape[0], y0:y0 + arr.shape[1], x0:x0 + arr.shape[2]] = arr
    maps[:, ~roi] = np.nan
    return maps, names


def compute_pyradiomics_roi_features(image, mask, spacing,
                                     features: str | Iterable[str] | None = None,
                                     settings: MapSettings | None = None) -> dict[str, float]:
    """Whole-ROI (segment-based) PyRadiomics values with the same settings, for IBSI checks."""
    settings = settings or MapSettings()
    names = resolve_features(features)
    img, msk, _ = _sitk_inputs(image, mask, spacing, settings)
    result = _extractor(names, settings.to_pyradiomics()).execute(img, msk)
    return {name: float(result[f"original_{name}"]) for name in names}
