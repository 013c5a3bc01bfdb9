"""Issue 2, bad input for NIfTI/NRRD volumes: each a real or minimally modified case with the
exact message checked (the error names the patient, the file and the fix)."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from voxsurv.core.errors import InputError
from voxsurv.data.ingest.volumes import check_image_mask, check_record
from voxsurv.data.manifest import load_manifest

EMPTY_MASK_PATIENTS = {"lung1-003", "lung1-263", "lung1-327", "radiogenomics-256", "radiogenomics-391"}


def _paths(lung_crops, pid):
    return lung_crops / f"images/{pid}_ct.nii.gz", lung_crops / f"images/{pid}_gtv.nii.gz"


def test_good_patient_passes(lung_crops):
    image, mask = check_image_mask(*_paths(lung_crops, "lung1-002"), patient_id="lung1-002")
    assert image.GetSize() == mask.GetSize() == (92, 92, 92)


def test_empty_mask_real_case_names_patient(lung_crops):
    image, mask = _paths(lung_crops, "lung1-003")
    with pytest.raises(InputError) as exc:
        check_image_mask(image, mask, patient_id="lung1-003")
    assert str(exc.value) == (f"patient lung1-003: mask is empty (no voxel > 0) ({mask}). "
                              "Fix: re-export the tumour contour or exclude this patient")
    assert exc.value.patient_id == "lung1-003"


def test_the_five_empty_masks_are_found_from_the_manifest(lung_crops):
    df = load_manifest(lung_crops / "manifest.csv")
    # quick scan of all 300 masks, then the full check on the empty ones and a few good ones
    empty = {r["patient_id"] for r in df.to_dict("records")
             if not sitk.GetArrayFromImage(sitk.ReadImage(r["mask"])).any()}
    assert empty == EMPTY_MASK_PATIENTS
    bad = {}
    for rec in df[df["patient_id"].isin(empty) | df.index.isin(range(5))].to_dict("records"):
        try:
            check_record(rec)
        except InputError as err:
            bad[err.patient_id] = err.problem
    assert bad == {pid: "mask is empty (no voxel > 0)" for pid in EMPTY_MASK_PATIENTS}


def test_mask_on_a_different_grid(lung_crops, tmp_path):
    image, mask = _paths(lung_crops, "lung1-002")
    m = sitk.ReadImage(str(mask))
    shifted = tmp_path / "shifted_gtv.nii.gz"
    m.SetOrigin((0.0, 0.0, 2.0))
    sitk.WriteImage(m, str(shifted))
    with pytest.raises(InputError) as exc:
        check_image_mask(image, shifted, patient_id="lung1-002")
    assert str(exc.value) == (f"patient lung1-002: mask is on a different grid than the image: origin (0.0, 0.0, 2.0) mm "
                              f"vs image (0.0, 0.0, 0.0) mm ({shifted}). "
                              "Fix: resample the mask onto the image grid (nearest neighbour) or re-export both")
    cropped = tmp_path / "cropped_gtv.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(mask))[:, :, :90], str(cropped))
    with pytest.raises(InputError, match=r"^patient lung1-002: mask is on a different grid than the image: "
                                         r"size \(92, 92, 90\) vs image \(92, 92, 92\)"):
        check_image_mask(image, cropped, patient_id="lung1-002")
    resampled = tmp_path / "spacing_gtv.nii.gz"
    m = sitk.ReadImage(str(mask))
    m.SetSpacing((1.0, 1.0, 1.5))
    sitk.WriteImage(m, str(resampled))
    with pytest.raises(InputError, match=r"spacing \(1.0, 1.0, 1.5\) mm vs image \(1.0, 1.0, 1.0\) mm"):
        check_image_mask(image, resampled, patient_id="lung1-002")


@pytest.mark.parametrize("name", ["trunc_ct.nii.gz", "trunc_ct.nii"])
def test_truncated_nifti(lung_crops, tmp_path, name):
    image, mask = _paths(lung_crops, "lung1-002")
    full = tmp_path / ("full_" + name)
    sitk.WriteImage(sitk.ReadImage(str(image)), str(full))
    data = full.read_bytes()
    bad = tmp_path / name
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        check_image_mask(bad, mask, patient_id="lung1-002")
    assert str(exc.value) == (f"patient lung1-002: image file is unreadable (truncated or corrupt) ({bad}). "
                              "Fix: re-export or re-download the file")


def test_missing_file(lung_crops, tmp_path):
    image, _ = _paths(lung_crops, "lung1-002")
    with pytest.raises(InputError, match=r"^patient x: mask file not found \(.*nope.nii.gz\). Fix: check the path"):
        check_image_mask(image, tmp_path / "nope.nii.gz", patient_id="x")


def test_nrrd_pair_is_read(lung_crops, tmp_path):
    image, mask = _paths(lung_crops, "lung1-002")
    for src, dst in ((image, tmp_path / "ct.nrrd"), (mask, tmp_path / "gtv.nrrd")):
        sitk.WriteImage(sitk.ReadImage(str(src)), str(dst))
    img, m = check_image_mask(tmp_path / "ct.nrrd", tmp_path / "gtv.nrrd", "lung1-002")
    assert img.GetSize() == (92, 92, 92) and sitk.GetArrayViewFromImage(m).sum() > 0
