"""`voxsurv maps` single-patient mode: 4D NIfTI + channel-name sidecar + montage PNG in --out;
the old spellings (--out FILE, --png FILE, --window LOW HIGH) still work for one release."""

import json

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from maps_pipeline_helpers import crop_patient
from voxsurv.cli import main


def test_single_patient_writes_4d_nifti_sidecar_and_montage(lung_crops, tmp_path, capsys):
    rec = crop_patient(lung_crops, "radiogenomics-202", tmp_path, slices=10, half=16)
    out = tmp_path / "maps"
    rc = main(["maps", "--image", rec["image"], "--mask", rec["mask"], "--out", str(out),
               "--backend", "pyradiomics", "--features", "firstorder_Mean,glcm_Contrast,ngtdm",
               "--png", "--png-maps", "firstorder_Mean,ngtdm_Busyness"])
    assert rc == 0
    vol = sitk.ReadImage(str(out / "maps.nii.gz"))
    meta = json.loads((out / "maps.json").read_text())
    assert vol.GetDimension() == 4 and vol.GetSize()[3] == len(meta["names"]) == 7
    assert vol.GetSpacing()[:3] == (1.0, 1.0, 5.0) and vol.GetSize()[2] == 3  # 10 slices at 1 mm -> 3 at 5 mm (MONAI grid)
    assert meta["settings"]["window"] == [-95.0, 155.0]  # --hu-window 250 30 (the default)
    # ITK's NIfTI reader turns NaN into 0 (ITK PR #6683); the file holds NaN: read with nibabel
    maps = np.asarray(nib.load(str(out / "maps.nii.gz")).dataobj)  # (x, y, z, F)
    assert maps.shape[3] == 7 and np.isnan(maps).any() and np.isfinite(maps).any()
    assert (out / "montage.png").stat().st_size > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["maps.json", "maps.nii.gz", "montage.png"]  # nothing partial
    capsys.readouterr()
    # a misspelt map: bad input (exit 1, one error line), before any computation
    assert main(["maps", "--image", rec["image"], "--mask", rec["mask"], "--out", str(tmp_path / "other"),
                 "--backend", "pyradiomics", "--features", "glcm_Contrsat"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "glcm_Contrsat" in err and "Fix: " in err and err.count("\n") == 1
    assert not (tmp_path / "other").exists()
    # earlier results are replaced only with --overwrite
    assert main(["maps", "--image", rec["image"], "--mask", rec["mask"], "--out", str(out),
                 "--features", "firstorder_Mean"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_old_option_spellings_still_work_with_a_deprecation_warning(lung_crops, tmp_path, capsys):
    rec = crop_patient(lung_crops, "radiogenomics-202", tmp_path, slices=10, half=16)
    out, png = tmp_path / "old" / "maps.nii.gz", tmp_path / "old" / "m.png"
    rc = main(["maps", "--image", rec["image"], "--mask", rec["mask"], "--out", str(out), "--png", str(png),
               "--features", "firstorder_Mean", "--window", "-100", "200"])
    assert rc == 0
    err = capsys.readouterr().err
    assert err.count("is deprecated") == 3 and "--hu-window WIDTH LEVEL" in err
    assert out.is_file() and png.is_file() and (tmp_path / "old" / "maps.json").is_file()
    assert json.loads((tmp_path / "old" / "maps.json").read_text())["settings"]["window"] == [-100.0, 200.0]
