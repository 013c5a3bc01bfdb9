"""PyRadiomics voxel-based backend on a tiny real crop: shape, NaN outside the ROI, values equal
to PyRadiomics run directly on the files, and the API's dispatch and errors."""

import numpy as np
import pytest
import SimpleITK as sitk

from maps_pipeline_helpers import crop_patient
from voxsurv.maps import compute_maps
from voxsurv.core.errors import InputError


@pytest.fixture(scope="module")
def tiny(lung_crops, tmp_path_factory):
    rec = crop_patient(lung_crops, "radiogenomics-202", tmp_path_factory.mktemp("tiny"),
                       slices=2, half=13)
    image, mask = sitk.ReadImage(rec["image"]), sitk.ReadImage(rec["mask"])
    image.SetSpacing((1.0, 1.0, 5.0))
    mask.SetSpacing((1.0, 1.0, 5.0))
    return image, mask


def test_pyradiomics_maps_shape_names_and_nan_outside_roi(tiny):
    image, mask = tiny
    img, roi = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask) > 0
    assert 0 < roi.sum() < roi.size  # the crop has voxels outside the ROI
    maps, names = compute_maps(img, roi, (5.0, 1.0, 1.0), "firstorder,glcm_Contrast,ngtdm",
                               backend="pyradiomics")
    assert maps.shape == (17 + 1 + 5,) + img.shape and maps.dtype == np.float64
    assert names[:2] == ["firstorder_10Percentile", "firstorder_90Percentile"]
    assert np.isnan(maps[:, ~roi]).all()
    assert np.isfinite(maps[:, roi]).all()
    mean = maps[names.index("firstorder_Mean")]
    assert np.nanmin(mean) >= -95 and np.nanmax(mean) <= 155  # clipped to the window first


def test_pyradiomics_maps_equal_pyradiomics_run_on_the_image(tiny):
    """Our array plumbing (crop, clip, placement by origin) vs PyRadiomics' own extractor."""
    from radiomics import featureextractor

    image, mask = tiny
    clipped = sitk.Clamp(sitk.Cast(image, sitk.sitkFloat64), lowerBound=-95, upperBound=155)
    ext = featureextractor.RadiomicsFeatureExtractor(
        binWidth=25, kernelRadius=1, maskedKernel=True, force2D=True, force2Ddimension=0,
        initValue=np.nan)
    ext.disableAllFeatures()
    ext.enableFeaturesByName(glszm=["ZoneEntropy"], firstorder=["Median"])
    ref = ext.execute(clipped, mask, voxelBased=True)
    maps, names = compute_maps(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask),
                               (5.0, 1.0, 1.0), ["glszm_ZoneEntropy", "firstorder_Median"],
                               backend="pyradiomics")
    roi = sitk.GetArrayFromImage(mask) > 0
    for i, name in enumerate(names):
        r = ref[f"original_{name}"]
        arr = sitk.GetArrayFromImage(r)
        x0, y0, z0 = image.TransformPhysicalPointToIndex(r.GetOrigin())
        full = np.full(roi.shape, np.nan)
        full[z0:z0 + arr.shape[0], y0:y0 + arr.shape[1], x0:x0 + arr.shape[2]] = arr
        np.testing.assert_array_equal(maps[i][roi], full[roi])


def test_api_rejects_bad_input_with_clear_errors():
    img = np.zeros((2, 5, 5))
    with pytest.raises(InputError, match="mask is empty"):
        compute_maps(img, np.zeros_like(img), (5, 1, 1), backend="pyradiomics")
    with pytest.raises(InputError, match="unknown maps backend"):
        compute_maps(img, np.ones_like(img), (5, 1, 1), backend="flash")
    with pytest.raises(InputError, match="mask shape"):
        compute_maps(img, np.ones((2, 5, 4)), (5, 1, 1), backend="pyradiomics")
    with pytest.raises(InputError, match="unknown map setting"):
        compute_maps(img, np.ones_like(img), (5, 1, 1), backend="pyradiomics", radious=2)


def test_torch_backend_through_the_api_agrees_with_pyradiomics(tiny):
    pytest.importorskip("voxsurv.maps.torch_engine")
    image, mask = tiny
    img, roi = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask)
    ref, names = compute_maps(img, roi, (5.0, 1.0, 1.0), backend="pyradiomics")
    got, got_names = compute_maps(img, roi, (5.0, 1.0, 1.0), backend="torch")
    assert got_names == names and got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    inside = roi > 0
    for g, r, name in zip(got, ref, names):
        span = np.nanmax(r[inside]) - np.nanmin(r[inside])
        assert np.nanmax(np.abs(g[inside] - r[inside])) <= 1e-6 * max(span, 1e-12), name


def test_maps_come_back_in_the_requested_order(tiny):
    image, mask = tiny
    img, roi = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mask)
    names = ["ngtdm_Busyness", "firstorder_Mean", "glcm_Contrast"]
    maps, got = compute_maps(img, roi, (5.0, 1.0, 1.0), names, backend="pyradiomics")
    assert got == names
    mean = maps[1][roi > 0]
    assert np.nanmin(mean) >= -95 and np.nanmax(mean) > 0  # HU, i.e. really the Mean map
    one, _ = compute_maps(img, roi, (5.0, 1.0, 1.0), ["glcm_Contrast"], backend="pyradiomics")
    np.testing.assert_array_equal(maps[2], one[0])
