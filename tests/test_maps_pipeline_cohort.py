"""Cohort extraction: maps once per patient into a content-addressed cache; a killed run resumes
without recomputing finished patients and ends identical to an uninterrupted run; bad patients
are recorded and skipped; a Dask cluster gives the same files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maps_pipeline_helpers import crop_patient, write_manifest
from voxelmaps.cohort import CohortJob, extract_cohort, load_patient_maps, read_cohort

REPO = Path(__file__).resolve().parents[1]
FEATURES = "firstorder,glcm,glszm_ZoneEntropy,ngtdm"


@pytest.fixture(scope="module")
def cohort(lung_crops, tmp_path_factory):
    """3 real patients; the first small (done fast), the next two bigger (~1 s each)."""
    d = tmp_path_factory.mktemp("cohort")
    records = [crop_patient(lung_crops, "radiogenomics-202", d, slices=10, half=10),
               crop_patient(lung_crops, "lung1-246", d, slices=20, half=20),
               crop_patient(lung_crops, "lung1-240", d, slices=20, half=20)]
    return records, write_manifest(records, d / "manifest.csv")


def _cli(manifest, out_dir):
    return [sys.executable, "-m", "voxsurv", "maps", "--manifest", str(manifest),
            "--out-dir", str(out_dir), "--backend", "pyradiomics", "--features", FEATURES]


def _sidecars(out_dir):
    return sorted((Path(out_dir) / "maps").glob("*.json"))


def test_killed_extraction_resumes_without_recomputing(cohort, tmp_path):
    records, manifest = cohort
    out = tmp_path / "resumed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli(manifest, out), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not _sidecars(out) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    finished = _sidecars(out)
    assert 1 <= len(finished) < 3, "the kill must land after the first patient and before the last"
    assert not (out / "maps_index.csv").exists()  # the run really died midway
    before = {p: (p.stat().st_mtime_ns, p.with_suffix(".npz").stat().st_mtime_ns) for p in finished}
    done_ids = {json.loads(p.read_text())["patient_id"] for p in finished}

    subprocess.run(_cli(manifest, out), cwd=REPO, env=env, check=True, capture_output=True)
    index = pd.read_csv(out / "maps_index.csv")
    assert list(index["patient_id"]) == [r["patient_id"] for r in records]
    status = dict(zip(index["patient_id"], index["status"]))
    assert {pid for pid, s in status.items() if s == "cached"} == done_ids
    for p, mtimes in before.items():  # not rewritten
        assert (p.stat().st_mtime_ns, p.with_suffix(".npz").stat().st_mtime_ns) == mtimes
    assert pd.read_csv(out / "exclusions.csv").empty

    # an uninterrupted run (here with 2 worker processes) writes the same keys and arrays
    ref = tmp_path / "uninterrupted"
    job = CohortJob(str(ref), backend="pyradiomics", features=read_features())
    rows = extract_cohort(read_cohort(manifest), job, workers=2)
    assert [r["key"] for r in rows] == list(index["key"])
    for key in index["key"]:
        a = load_patient_maps(out / "maps" / f"{key}.npz")
        b = load_patient_maps(ref / "maps" / f"{key}.npz")
        assert a["names"] == b["names"] and len(a["names"]) == 17 + 22 + 1 + 5
        for k in ("maps", "image", "mask"):
            np.testing.assert_array_equal(a[k], b[k])
        assert np.isnan(a["maps"][:, a["mask"] == 0]).all()
        assert a["spacing_zyx_mm"] == [5.0, 1.0, 1.0]  # resampled to 1 x 1 x 5 mm


def read_features():
    from voxelmaps.features import resolve_features

    return resolve_features(FEATURES)


def test_dask_cluster_and_bad_patients_are_recorded(cohort, lung_crops, tmp_path):
    distributed = pytest.importorskip("distributed")
    records, _ = cohort
    empty = crop_patient(lung_crops, "radiogenomics-202", tmp_path / "bad", slices=10, half=10,
                         empty_mask=True)
    empty["patient_id"] = "empty-1"
    missing = {"patient_id": "missing-1", "image": str(tmp_path / "nope.nii.gz"),
               "mask": str(tmp_path / "nope_gtv.nii.gz")}
    job = CohortJob(str(tmp_path / "dask"), backend="pyradiomics",
                    features=["firstorder_Mean", "glcm_Contrast"])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        rows = extract_cohort([records[0], empty, missing], job,
                              dask_scheduler=cluster.scheduler_address)
    assert [r["status"] for r in rows] == ["computed", "excluded", "excluded"]
    excl = pd.read_csv(tmp_path / "dask" / "exclusions.csv")
    problems = dict(zip(excl["patient_id"], excl["problem"]))
    assert "mask is empty" in problems["empty-1"] and "file not found" in problems["missing-1"]
    # same content address and values as the serial path
    serial = extract_cohort([records[0]], CohortJob(str(tmp_path / "serial"), backend="pyradiomics",
                                                    features=["firstorder_Mean", "glcm_Contrast"]))
    assert serial[0]["key"] == rows[0]["key"]
    a, b = load_patient_maps(rows[0]["maps_file"]), load_patient_maps(serial[0]["maps_file"])
    np.testing.assert_array_equal(a["maps"], b["maps"])
    full = load_patient_maps(rows[0]["maps_file"], full_grid=True)
    assert full["maps"].shape[1:] == tuple(full["grid_shape_zyx"])
    assert int(full["mask"].sum()) == full["roi_voxels"]


def test_changed_settings_get_a_new_cache_entry(cohort, tmp_path):
    from voxelmaps.settings import MapSettings

    records, _ = cohort
    out = str(tmp_path / "c")
    feats = ["firstorder_Mean"]
    a = extract_cohort(records[:1], CohortJob(out, backend="pyradiomics", features=feats))
    b = extract_cohort(records[:1], CohortJob(out, backend="pyradiomics", features=feats,
                                              settings=MapSettings(bin_width=10)))
    c = extract_cohort(records[:1], CohortJob(out, backend="pyradiomics", features=feats))
    assert a[0]["key"] != b[0]["key"] and b[0]["status"] == "computed"
    assert c[0]["status"] == "cached" and c[0]["key"] == a[0]["key"]


def test_cache_grid_is_the_grid_of_the_bundles_resampling_transform(cohort):
    """Cached maps must lie on the grid custom_transforms.ResampleToSpacingd (MONAI Spacingd)
    gives in the bundles: same size, same mask, CT equal up to float32 interpolation."""
    import SimpleITK as sitk

    ct = pytest.importorskip("custom_transforms")
    if not hasattr(ct, "ResampleToSpacingd"):
        pytest.skip("ResampleToSpacingd not available")
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from voxelmaps.cohort import resample_to_spacing

    rec = cohort[0][1]
    d = Compose([LoadImaged(["image", "mask"], image_only=True),
                 EnsureChannelFirstd(["image", "mask"]),
                 ct.ResampleToSpacingd(keys=("image", "mask"), pixdim=(1.0, 1.0, 5.0))])(
        {"image": rec["image"], "mask": rec["mask"]})
    image, mask = resample_to_spacing(sitk.ReadImage(rec["image"]), sitk.ReadImage(rec["mask"]),
                                      (1.0, 1.0, 5.0))
    monai_img = d["image"][0].numpy().transpose(2, 1, 0)
    assert monai_img.shape == sitk.GetArrayFromImage(image).shape
    np.testing.assert_array_equal(d["mask"][0].numpy().transpose(2, 1, 0) > 0,
                                  sitk.GetArrayFromImage(mask) > 0)
    np.testing.assert_allclose(monai_img, sitk.GetArrayFromImage(image), atol=0.05)
