"""`voxsurv maps` single-patient mode: 4D NIfTI + channel-name sidecar + montage PNG."""

import json

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from maps_pipeline_helpers import crop_patient
from voxsurv.cli import main


def test_single_patient_writes_4d_nifti_sidecar_and_montage(lung_crops, tmp_path):
    rec = crop_patient(lung_crops, "radiogenomics-202", tmp_path, slices=10, half=16)
    out, png = tmp_path / "maps.nii.gz", tmp_path / "montage.png"
    rc = main(["maps", "--image", rec["image"], "--mask", rec["mask"], "--out", str(out),
               "--backend", "pyradiomics", "--features", "firstorder_Mean,glcm_Contrast,ngtdm",
               "--png", str(png), "--png-maps", "firstorder_Mean,ngtdm_Busyness"])
    assert rc == 0
    vol = sitk.ReadImage(str(out))
    meta = json.loads((tmp_path / "maps.json").read_text())
    assert vol.GetDimension() == 4 and vol.GetSize()[3] == len(meta["names"]) == 7
    assert vol.GetSpacing()[:3] == (1.0, 1.0, 5.0) and vol.GetSize()[2] == 3  # 10 slices at 1 mm -> 3 at 5 mm (MONAI grid)
    # ITK's NIfTI reader turns NaN into 0 (ITK PR #6683); the file holds NaN: read with nibabel
    maps = np.asarray(nib.load(str(out)).dataobj)  # (x, y, z, F)
    assert maps.shape[3] == 7 and np.isnan(maps).any() and np.isfinite(maps).any()
    assert png.stat().st_size > 10_000
    assert main(["maps", "--image", rec["image"], "--mask", rec["mask"], "--out", str(out),
                 "--backend", "pyradiomics", "--features", "glcm_Contrsat"]) == 2
