"""Issue 2, item 4: `voxsurv convert` on the IBSI CT phantom (DICOM CT + RTSTRUCT) against its
NIfTI reference, and the DICOM bad-input cases on modified copies of the phantom's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from voxsurv.core.errors import InputError
from voxsurv.data.ingest.convert import convert_batch, convert_patient
from voxsurv.data.ingest.dicom_series import read_ct_series

RS_NAME = "DCM_RS_00060.dcm"


@pytest.fixture(scope="module")
def phantom(ibsi) -> Path:
    return ibsi / "ct_phantom"


@pytest.fixture
def ct_copy(phantom, tmp_path) -> Path:
    """A writable copy of the phantom's CT series."""
    dst = tmp_path / "ct"
    shutil.copytree(phantom / "dicom" / "image", dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def _cli(args, capsys):
    """Run `voxsurv ARGS` in this process (a subprocess would re-import torch/MONAI)."""
    from types import SimpleNamespace

    from voxsurv.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_cli_convert_ibsi_phantom_matches_nifti_reference(phantom, tmp_path, capsys):
    out = tmp_path / "out"
    run = _cli(["convert", "--ct-dir", str(phantom / "dicom/image"),
                "--rtstruct", str(phantom / "dicom/mask" / RS_NAME), "--roi", "GTV", "--out-dir", str(out)], capsys)
    assert run.returncode == 0, run.stderr
    assert "ROI 'GTV-1'" in run.stdout
    img, mask = sitk.ReadImage(str(out / "image.nii.gz")), sitk.ReadImage(str(out / "mask.nii.gz"))
    ref_img = sitk.ReadImage(str(phantom / "nifti/image/phantom.nii.gz"))
    ref_mask = sitk.ReadImage(str(phantom / "nifti/mask/mask.nii.gz"))
    assert img.GetPixelID() == sitk.sitkInt16 and mask.GetPixelID() == sitk.sitkUInt8
    assert img.GetSize() == ref_img.GetSize() == mask.GetSize()
    np.testing.assert_allclose(img.GetSpacing(), ref_img.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(img.GetOrigin(), ref_img.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(img.GetDirection(), ref_img.GetDirection(), atol=1e-6)
    diff = np.abs(sitk.GetArrayFromImage(img).astype(float) - sitk.GetArrayFromImage(ref_img))
    assert diff.max() <= 1.0
    np.testing.assert_allclose(mask.GetOrigin(), ref_mask.GetOrigin(), atol=1e-3)
    dice = _dice(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(ref_mask))
    assert dice >= 0.97, dice


def test_contour_inside_another_is_a_hole(phantom, tmp_path):
    """Even-odd rule: a square drawn inside the GTV on one slice empties those voxels."""
    ds = pydicom.dcmread(phantom / "dicom/mask" / RS_NAME)
    seq = ds.ROIContourSequence[0].ContourSequence
    ref = convert_patient(phantom / "dicom/image", phantom / "dicom/mask" / RS_NAME, "GTV", tmp_path / "a")
    ref_arr = sitk.GetArrayFromImage(sitk.ReadImage(str(ref.mask_path)))
    k = int(np.argmax(ref_arr.sum(axis=(1, 2))))  # the slice with most tumour
    ys, xs = np.nonzero(ref_arr[k])
    cy, cx = int(np.median(ys)), int(np.median(xs))
    while not ref_arr[k, cy - 3:cy + 4, cx - 3:cx + 4].all():  # find a 7x7 patch fully inside
        cx += 1
    img = sitk.ReadImage(str(ref.image_path))
    corners = [(cx - 2.5, cy - 2.5), (cx + 2.5, cy - 2.5), (cx + 2.5, cy + 2.5), (cx - 2.5, cy + 2.5)]
    pts = [img.TransformContinuousIndexToPhysicalPoint((x, y, float(k))) for x, y in corners]
    hole = pydicom.Dataset()
    hole.ContourGeometricType = "CLOSED_PLANAR"
    hole.NumberOfContourPoints = 4
    hole.ContourData = [f"{v:.4f}" for p in pts for v in p]
    seq.append(hole)
    ds.save_as(tmp_path / "rs_hole.dcm")
    res = convert_patient(phantom / "dicom/image", tmp_path / "rs_hole.dcm", "gtv", tmp_path / "b")
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(res.mask_path)))
    assert arr[k, cy - 2:cy + 3, cx - 2:cx + 3].sum() == 0  # the 5x5 hole
    assert int((ref_arr != arr).sum()) == 25  # nothing else changed


def test_rtstruct_without_roi_lists_names(phantom):
    rs = phantom / "dicom/mask" / RS_NAME
    with pytest.raises(InputError) as exc:
        convert_patient(phantom / "dicom/image", rs, "ptv|lung", "/nonexistent", patient_id="ibsi")
    assert str(exc.value) == (f"patient ibsi: no ROI matches 'ptv|lung' (ROIs present: 'GTV-1') ({rs}). "
                              "Fix: choose --roi from the names listed")


def test_several_matching_rois_listed(phantom, tmp_path):
    ds = pydicom.dcmread(phantom / "dicom/mask" / RS_NAME)
    import copy
    extra = copy.deepcopy(ds.StructureSetROISequence[0])
    extra.ROINumber, extra.ROIName = 2, "GTV-2"
    ds.StructureSetROISequence.append(extra)
    ds.save_as(tmp_path / "rs2.dcm")
    with pytest.raises(InputError, match=r"^ROI pattern 'gtv' matches 2 ROIs: 'GTV-1', 'GTV-2' "
                                         r"\(ROIs present: 'GTV-1', 'GTV-2'\)"):
        convert_patient(phantom / "dicom/image", tmp_path / "rs2.dcm", "gtv", tmp_path / "o")
    # an exact full-name pattern picks one
    assert convert_patient(phantom / "dicom/image", tmp_path / "rs2.dcm", "gtv-1", tmp_path / "o").roi_name == "GTV-1"


def test_non_ct_modality_rejected(ct_copy):
    for f in ct_copy.iterdir():
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.save_as(f)
    uid = pydicom.dcmread(next(ct_copy.iterdir())).SeriesInstanceUID
    with pytest.raises(InputError) as exc:
        read_ct_series(ct_copy, patient_id="p1")
    assert str(exc.value) == (f"patient p1: no CT series found (found: MR series {uid} (60 files)) ({ct_copy}). "
                              "Fix: point --ct-dir at the planning CT; only CT modality is supported")


def test_rtstruct_given_a_ct_slice(phantom):
    f = phantom / "dicom/image/DCM_IMG_00000.dcm"
    with pytest.raises(InputError, match=r"file is not an RTSTRUCT \(modality CT\)"):
        convert_patient(phantom / "dicom/image", f, "GTV", "/nonexistent")


def _shift_z(path: Path, dz: float) -> None:
    ds = pydicom.dcmread(path)
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + dz]
    ds.save_as(path)


def test_irregular_slice_spacing_rejected(ct_copy):
    _shift_z(ct_copy / "DCM_IMG_00030.dcm", 1.0)  # 3 mm series with one slice moved by 1 mm
    with pytest.raises(InputError) as exc:
        read_ct_series(ct_copy, patient_id="p2")
    assert str(exc.value) == (f"patient p2: irregular slice spacing: steps of 2, 3, 4 mm along the series ({ct_copy}). "
                              "Fix: export the complete CT series with uniform slice spacing")


def test_missing_slice_rejected(ct_copy):
    (ct_copy / "DCM_IMG_00030.dcm").unlink()
    with pytest.raises(InputError, match=r"^patient p3: missing slice\(s\): gap of 6.00 mm between DCM_IMG_\d+.dcm "
                                         r"and DCM_IMG_\d+.dcm where the series spacing is 3.00 mm"):
        read_ct_series(ct_copy, patient_id="p3")


def test_gantry_tilt_rejected(ct_copy):
    for f in ct_copy.iterdir():
        ds = pydicom.dcmread(f)
        ds.GantryDetectorTilt = 15
        ds.save_as(f)
    with pytest.raises(InputError, match=r"^patient p4: gantry tilt of 15 degrees: slices are sheared"):
        read_ct_series(ct_copy, patient_id="p4")


def test_sheared_stack_rejected_even_without_tilt_tag(ct_copy):
    for i, f in enumerate(sorted(ct_copy.iterdir())):
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * z / 3.0, z]
        ds.save_as(f)
    with pytest.raises(InputError, match=r"slice positions drift .* mm in-plane along the stack \(gantry tilt\)"):
        read_ct_series(ct_copy)


def test_rescale_slope_intercept_applied(ct_copy, phantom):
    ref = sitk.GetArrayFromImage(read_ct_series(phantom / "dicom/image")).astype(np.int32)
    for f in ct_copy.iterdir():
        ds = pydicom.dcmread(f)
        # same HU written as raw * 0.5 - 1024: raw doubles and shifts
        raw = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        ds.PixelData = ((raw + 1024) * 2).astype(np.uint16).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 0.5, -1024
        ds.BitsStored, ds.HighBit = 16, 15  # doubled values need more than the original 12 bits
        ds.save_as(f)
    got = sitk.GetArrayFromImage(read_ct_series(ct_copy)).astype(np.int32)
    assert np.array_equal(got, ref)


def test_batch_records_exclusions_and_goes_on(phantom, tmp_path, ct_copy, capsys):
    (ct_copy / "DCM_IMG_00030.dcm").unlink()
    rel = lambda p: Path(p).as_posix()  # noqa: E731
    csv = tmp_path / "batch.csv"
    csv.write_text("patient_id,ct_dir,rtstruct,roi,time_days,event\n"
                   f"good,{rel(phantom / 'dicom/image')},{rel(phantom / 'dicom/mask' / RS_NAME)},GTV,100,1\n"
                   f"gap,{rel(ct_copy)},{rel(phantom / 'dicom/mask' / RS_NAME)},GTV,200,0\n"
                   f"noroi,{rel(phantom / 'dicom/image')},{rel(phantom / 'dicom/mask' / RS_NAME)},heart,300,0\n")
    out = tmp_path / "conv"
    run = _cli(["convert", "--manifest", str(csv), "--out-dir", str(out)], capsys)
    assert run.returncode == 0, run.stderr
    converted = __import__("pandas").read_csv(out / "converted.csv")
    excluded = __import__("pandas").read_csv(out / "exclusions.csv")
    assert list(converted["patient_id"]) == ["good"] and list(converted["time_days"]) == [100]
    assert list(excluded["patient_id"]) == ["gap", "noroi"]
    assert excluded["message"][0].startswith("patient gap: missing slice(s)")
    assert excluded["message"][1].startswith("patient noroi: no ROI matches 'heart' (ROIs present: 'GTV-1')")
    # the converted table is a voxsurv manifest
    from voxsurv.data.manifest import load_manifest
    df = load_manifest(out / "converted.csv")
    assert Path(df.loc[0, "mask"]) == (out / "good" / "mask.nii.gz").resolve()


def test_dicom_seg_input_matches_reference(phantom, tmp_path):
    """A DICOM SEG made (highdicom) from the phantom's CT + reference mask converts back exactly."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    cts = sorted((pydicom.dcmread(f) for f in (phantom / "dicom/image").iterdir()),
                 key=lambda d: float(d.ImagePositionPatient[2]))
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "nifti/mask/mask.nii.gz")))  # z ascending
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="GTV-1", segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=cts, pixel_array=ref.astype(np.uint8), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[desc], series_instance_uid=hd.UID(), series_number=100, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="voxsurv-test", manufacturer_model_name="test", software_versions="0",
        device_serial_number="0")
    seg.save_as(tmp_path / "seg.dcm")
    res = convert_patient(phantom / "dicom/image", None, "gtv", tmp_path / "out", seg=tmp_path / "seg.dcm")
    assert res.roi_name == "GTV-1"
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(res.mask_path))), ref)
    with pytest.raises(InputError, match=r"^patient p5: no segment matches 'heart' \(segments present: 'GTV-1'\)"):
        convert_patient(phantom / "dicom/image", None, "heart", tmp_path / "o2", patient_id="p5", seg=tmp_path / "seg.dcm")


def test_reading_a_series_logs_no_dicom_uid(phantom, caplog):
    """Logs may travel to shared systems: no Study/Series/SOP UID in them."""
    import logging

    from voxsurv.core.privacy import redact

    with caplog.at_level(logging.DEBUG):
        read_ct_series(phantom / "dicom" / "image")
    assert caplog.records, "reading a series should say what it read"
    for record in caplog.records:
        assert redact(record.getMessage()) == record.getMessage(), record.getMessage()
