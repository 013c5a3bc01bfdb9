"""Cohort extraction: every patient once through the bundles' own chain (volume_preprocessing)
into the content-addressed maps cache; a killed run resumes without recomputing finished maps and
ends identical to an uninterrupted run; bad patients are recorded and skipped; a Dask cluster gives
the same entries; a bundle given the cohort's cache computes nothing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from custom_transforms.pipeline import volume_preprocessing
from maps_pipeline_helpers import crop_patient, write_manifest
from voxsurv.maps.cache import MapsCache
from voxsurv.maps.cohort import RecordReader, run_cohort
from voxsurv.maps.features import resolve_features
from voxsurv.data.ingest.volumes import check_image_mask

REPO = Path(__file__).resolve().parents[1]
FEATURES = "glcm_Contrast,glszm_ZoneEntropy,ngtdm"  # no first-order: its per-voxel percentiles are slow


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


def _complete_entries(out_dir, n_maps):
    """Cache entries holding all n_maps maps -> {key: {file: mtime}}."""
    done = {}
    for entry in (Path(out_dir) / "maps").glob("*"):
        files = list((entry / "maps").glob("*.npy"))
        if len(files) == n_maps:
            done[entry.name] = {p: p.stat().st_mtime_ns for p in files}
    return done


def _reader(cache_dir, features, backend="pyradiomics", **kw):
    return RecordReader(volume_preprocessing(features, maps_backend=backend, maps_cache_dir=cache_dir, **kw),
                        check=check_image_mask)


def test_killed_extraction_resumes_without_recomputing(cohort, tmp_path):
    records, manifest = cohort
    n_maps = len(resolve_features(FEATURES))
    out = tmp_path / "resumed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cli(manifest, out), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not _complete_entries(out, n_maps) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    finished = _complete_entries(out, n_maps)
    assert 1 <= len(finished) < 3, "the kill must land after the first patient and before the last"
    assert not (out / "maps_index.csv").exists()  # the run really died midway

    subprocess.run(_cli(manifest, out), cwd=REPO, env=env, check=True, capture_output=True)
    index = pd.read_csv(out / "maps_index.csv")
    assert list(index["patient_id"]) == [r["patient_id"] for r in records]
    status = dict(zip(index["maps_cache_key"], zip(index["status"], index["n_computed"])))
    for key, mtimes in finished.items():  # finished patients: read, not recomputed, not rewritten
        assert status[key] == ("cached", 0)
        assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert (index["n_maps"] == n_maps).all() and pd.read_csv(out / "exclusions.csv").empty
    assert index["log_volume_ml"].notna().all() and index["mean_hu"].notna().all()

    # an uninterrupted run (here with 2 worker processes) writes the same keys and arrays
    ref = tmp_path / "uninterrupted"
    features = resolve_features(FEATURES)
    rows = run_cohort(records, _reader(ref / "maps", features), ref, workers=2)
    assert [r["maps_cache_key"] for r in rows] == list(index["maps_cache_key"])
    assert all(r["status"] == "computed" and r["n_computed"] == n_maps for r in rows)
    for key in index["maps_cache_key"]:
        a, b = MapsCache(out / "maps"), MapsCache(ref / "maps")
        np.testing.assert_array_equal(a.read_maps(key, features), b.read_maps(key, features))
        vol = a.read_volume(key)
        np.testing.assert_array_equal(vol["image"], b.read_volume(key)["image"])
        assert np.isnan(a.read_maps(key, features)[:, vol["mask"] == 0]).all()
        np.testing.assert_allclose(vol["spacing_xyz_mm"], [1.0, 1.0, 5.0])  # resampled to 1 x 1 x 5 mm


def test_dask_cluster_and_bad_patients_are_recorded(cohort, lung_crops, tmp_path):
    distributed = pytest.importorskip("distributed")
    records, _ = cohort
    empty = crop_patient(lung_crops, "radiogenomics-202", tmp_path / "bad", slices=10, half=10,
                         empty_mask=True)
    empty["patient_id"] = "empty-1"
    missing = {"patient_id": "missing-1", "image": str(tmp_path / "nope.nii.gz"),
               "mask": str(tmp_path / "nope_gtv.nii.gz")}
    features = ["firstorder_Mean", "glcm_Contrast"]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        rows = run_cohort([records[0], empty, missing], _reader(tmp_path / "dask" / "maps", features),
                          tmp_path / "dask", dask_scheduler=cluster.scheduler_address)
    assert [r["status"] for r in rows] == ["computed", "excluded", "excluded"]
    excl = pd.read_csv(tmp_path / "dask" / "exclusions.csv")
    problems = dict(zip(excl["patient_id"], excl["problem"]))
    assert problems["empty-1"].startswith("patient empty-1: mask is empty")
    assert "file not found" in problems["missing-1"]
    # without the file check the chain's own errors still name the patient
    unchecked = run_cohort([empty], RecordReader(volume_preprocessing(features)), tmp_path / "unchecked")
    assert unchecked[0]["problem"].startswith("patient empty-1: mask is empty after resampling")
    # same content address and values as the serial path
    serial = run_cohort([records[0]], _reader(tmp_path / "serial" / "maps", features), tmp_path / "serial")
    key = serial[0]["maps_cache_key"]
    assert key == rows[0]["maps_cache_key"]
    np.testing.assert_array_equal(MapsCache(tmp_path / "dask" / "maps").read_maps(key, features),
                                  MapsCache(tmp_path / "serial" / "maps").read_maps(key, features))


def test_changed_settings_get_a_new_cache_entry(cohort, tmp_path):
    from voxsurv.maps.settings import MapSettings

    records, _ = cohort
    cache, feats = tmp_path / "c", ["firstorder_Mean"]
    a = run_cohort(records[:1], _reader(cache, feats), tmp_path / "a")
    b = run_cohort(records[:1], _reader(cache, feats, maps_settings=MapSettings(bin_width=10)), tmp_path / "b")
    c = run_cohort(records[:1], _reader(cache, feats), tmp_path / "c2")
    assert a[0]["maps_cache_key"] != b[0]["maps_cache_key"] and b[0]["status"] == "computed"
    assert c[0]["status"] == "cached" and c[0]["maps_cache_key"] == a[0]["maps_cache_key"]


def test_a_bundle_given_the_cohort_cache_computes_nothing(cohort, tmp_path):
    """The cohort runs the bundles' own chain, so a training run's volume_preprocessing with the
    same cache (fewer maps, no file check) lands on the same entries and only reads."""
    records, _ = cohort
    features = resolve_features("firstorder_Mean,firstorder_Entropy,glcm_Contrast")
    rows = run_cohort(records[:2], _reader(tmp_path / "maps", features, backend="torch"), tmp_path)
    bundle_chain = volume_preprocessing(features[:2][::-1], maps_cache_dir=tmp_path / "maps")
    for rec, row in zip(records, rows):
        out = bundle_chain({"image": rec["image"], "mask": rec["mask"]})
        assert out["maps"].meta["maps_computed"] == []
        assert out["maps"].meta["maps_cache_key"] == row["maps_cache_key"]
        assert out["descriptors"].tolist() == pytest.approx([row["log_volume_ml"], row["mean_hu"]], rel=1e-6)
