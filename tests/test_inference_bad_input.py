"""Bad input to `voxsurv predict`: a DICOM series that is not CT, an RTSTRUCT without the ROI, a mask
outside the image, an empty mask — each a clear error naming the patient, the problem and the fix;
a manifest run records them in exclusions.csv and goes on with the other patients."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from inference_helpers import shared_tiny_bundle, write_synthetic_patient
from voxsurv.core.errors import InputError

UID = re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?!\d)")


@pytest.fixture(scope="module")
def predictor():
    from voxsurv.inference.predictor import RiskPredictor

    return RiskPredictor(shared_tiny_bundle())


@pytest.fixture(scope="module")
def dicom(ibsi):
    d = ibsi / "ct_phantom" / "dicom"
    return d / "image", next((d / "mask").glob("*.dcm"))


def _cli(args, capsys):
    from voxsurv.cli import main

    rc = main(["predict", "--bundle", str(shared_tiny_bundle()), *args])
    return rc, capsys.readouterr().err


def test_dicom_series_that_is_not_ct(dicom, tmp_path, capsys):
    import pydicom

    ct_dir, rtstruct = dicom
    mr = tmp_path / "mr"
    mr.mkdir()
    for f in sorted(ct_dir.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.save_as(mr / f.name)
    rc, err = _cli(["--ct-dir", str(mr), "--rtstruct", str(rtstruct), "--roi", "GTV", "--patient-id", "P-MR",
                    "--out", str(tmp_path / "out")], capsys)
    assert rc == 1
    assert "patient P-MR: no CT series found (found: MR series" in err and "Fix:" in err
    assert not UID.search(err)  # the referenced series UID is redacted


def test_rtstruct_without_the_roi(dicom, tmp_path, capsys):
    ct_dir, rtstruct = dicom
    rc, err = _cli(["--ct-dir", str(ct_dir), "--rtstruct", str(rtstruct), "--roi", "^liver$", "--patient-id", "P-ROI",
                    "--out", str(tmp_path)], capsys)
    assert rc == 1
    assert "patient P-ROI: no ROI matches '^liver$'" in err and "GTV" in err and "Fix:" in err


def test_mask_outside_the_image(predictor, tmp_path):
    image, mask = write_synthetic_patient(tmp_path, "off", shift_mask_mm=200.0)
    with pytest.raises(InputError) as info:
        predictor.predict({"patient_id": "P-OFF", "image": str(image), "mask": str(mask)}, tmp_path / "out")
    msg = str(info.value)
    assert msg.startswith("patient P-OFF: mask is on a different grid than the image") and "Fix:" in msg
    assert not (tmp_path / "out" / "report.json").exists()


def test_empty_mask(predictor, tmp_path, capsys):
    image, mask = write_synthetic_patient(tmp_path, "empty", empty_mask=True)
    rc, err = _cli(["--image", str(image), "--mask", str(mask), "--patient-id", "P-EMPTY", "--out", str(tmp_path / "o")],
                   capsys)
    assert rc == 1 and "patient P-EMPTY: mask is empty" in err and "Fix:" in err


def test_manifest_run_records_bad_patients_and_goes_on(tmp_path, capsys):
    data = tmp_path / "data"
    good = write_synthetic_patient(data, "good", seed=1)
    empty = write_synthetic_patient(data, "empty", empty_mask=True)
    off = write_synthetic_patient(data, "off", shift_mask_mm=200.0)
    good2 = write_synthetic_patient(data, "good2", seed=2)
    rows = [("good", *good), ("empty", *empty), ("off", *off), ("missing", data / "nope.nii.gz", good[1]),
            ("good", *good2), ("good2", *good2)]
    pd.DataFrame([{"patient_id": p, "image": i.name, "mask": m.name} for p, i, m in rows]).to_csv(
        data / "manifest.csv", index=False)
    out = tmp_path / "out"
    rc, err = _cli(["--manifest", str(data / "manifest.csv"), "--out", str(out), "--workers", "2"], capsys)
    assert rc == 0
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["patient_id", "folder", "risk", "tier", "s_365", "s_730", "s_1095",
                                  "in_training_range", "time_days", "event"]
    assert list(pred.patient_id) == ["good", "good2"] and pred.risk.notna().all()
    excl = pd.read_csv(out / "exclusions.csv").set_index("patient_id")
    assert set(excl.index) == {"empty", "off", "missing", "good"}  # "good" twice: the duplicate row
    assert "empty" in excl.loc["empty", "problem"]
    assert "different grid" in excl.loc["off", "problem"]
    assert "not found" in excl.loc["missing", "problem"]
    assert "duplicate" in excl.loc["good", "problem"]
    for pid in ("good", "good2"):
        assert {"report.json", "gradcam.nii.gz", "overlay.png"} <= {p.name for p in (out / pid).iterdir()}
    assert "warning: excluded: patient empty" in err
    shutil.rmtree(data)
