"""The study's label-free data steps, all on the ONE per-patient chain the bundles use
(custom_transforms.pipeline.volume_preprocessing) and its content-addressed maps cache:

  maps        all 90 maps of every study patient into the cache (computed once; every bundle run
              of the study then reads the maps it needs from the same cache) + the tumour
              descriptors (log volume ml, mean HU on the resampled grid) of each patient;
  pyradiomics whole-tumour PyRadiomics features (row b) on the cached resampled CT + mask;
  roi values  per source patient: the 5 ROI summaries of every map (screening) and a seeded voxel
              subsample (the maps' voxel-level correlation);
  statistics  MapStatistics of all maps fitted once on all source patients (label-free), passed
              to every bundle run as `map_statistics`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

WINDOW_HU = (-95.0, 155.0)  # the maps' clip window (level 30, width 250)


def extract_maps(records: list[dict], cache_dir: str | Path, out_dir: str | Path, features=None,
                 workers: int = 2) -> pd.DataFrame:
    """volume_preprocessing(features, maps_cache_dir=cache_dir) over every record (A's cohort
    runner, `workers` processes x 1 torch thread); returns maps_index (patient_id,
    maps_cache_key, log_volume_ml, mean_hu, status, seconds). A study patient that fails is an
    error: the split file already excluded the unusable ones."""
    from custom_transforms.pipeline import volume_preprocessing
    from voxsurv.maps.cohort import RecordReader, run_cohort
    from voxsurv.data.ingest.volumes import check_image_mask

    reader = RecordReader(volume_preprocessing(features, maps_cache_dir=str(cache_dir)), check=check_image_mask)
    rows = run_cohort(records, reader, out_dir, workers=workers, threads=1, progress=True)
    bad = [r for r in rows if r["status"] == "excluded"]
    if bad:
        raise RuntimeError(f"maps failed for {len(bad)} study patients (the split file should have excluded "
                           f"them): {[r['problem'] for r in bad[:3]]}")
    return pd.DataFrame(rows)


def pyradiomics_whole_tumour(cache_dir: str, key: str, bin_width: float = 25.0, classes=None) -> dict[str, float]:
    """PyRadiomics whole-ROI features (all default classes incl. 3D shape, original image) of one
    cached patient: the resampled CT (1 x 1 x 5 mm, the maps' grid) clipped to the maps' HU window,
    bin width 25 HU, i.e. the maps' own preprocessing. `classes` limits the feature classes."""
    import SimpleITK as sitk
    from radiomics import featureextractor

    from voxsurv.maps.cache import MapsCache

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    v = MapsCache(cache_dir).read_volume(key)
    spacing = tuple(float(s) for s in v["spacing_xyz_mm"])
    img = sitk.GetImageFromArray(np.clip(np.transpose(v["image"], (2, 1, 0)).astype(np.float64), *WINDOW_HU))
    msk = sitk.GetImageFromArray(np.transpose(v["mask"], (2, 1, 0)).astype(np.uint8))
    for im in (img, msk):
        im.SetSpacing(spacing)
    ext = featureextractor.RadiomicsFeatureExtractor(binWidth=bin_width, label=1, additionalInfo=False)
    if classes is None:
        ext.enableAllFeatures()
    else:
        ext.disableAllFeatures()
        for c in classes:
            ext.enableFeatureClassByName(c)
    out = ext.execute(img, msk)
    return {k.replace("original_", ""): float(v) for k, v in out.items() if k.startswith("original_")}


def _pyradiomics_task(args):
    cache_dir, key, path, classes = args
    feats = pyradiomics_whole_tumour(cache_dir, key, classes=classes)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(feats))
    tmp.replace(path)
    return feats


def pyradiomics_table(keys: dict[str, str], cache_dir: str | Path, out_dir: str | Path, workers: int = 2,
                      classes=None) -> pd.DataFrame:
    """Whole-tumour features of every patient (`keys`: patient_id -> maps cache key), one JSON per
    patient in out_dir (a re-run skips finished patients), in `workers` processes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(str(cache_dir), k, folder / f"{pid}.json", classes) for pid, k in keys.items()
            if not (folder / f"{pid}.json").is_file()]
    log.info("PyRadiomics whole-tumour features: %d patients to do, %d done", len(todo), len(keys) - len(todo))
    if todo and workers > 1:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_pyradiomics_task, todo, chunksize=2))
    else:
        for t in todo:
            _pyradiomics_task(t)
    return pd.DataFrame([{"patient_id": pid, **json.loads((folder / f"{pid}.json").read_text())} for pid in keys])


def source_roi_pass(keys: dict[str, str], cache_dir: str | Path, names: list[str], voxels_per_patient: int,
                    seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """One read of every source patient's ROI values of `names`: (patients, F, 5) ROI summaries
    (screening) and per-patient (F, n) voxel subsamples (voxel-level correlation)."""
    from voxsurv.maps.cache import MapsCache
    from voxsurv.study.screening import roi_summaries, roi_voxel_sample

    cache = MapsCache(cache_dir)
    rng = np.random.default_rng(seed)
    summaries, samples = [], []
    for pid, key in keys.items():
        values = cache.read_roi_values(key, names)
        summaries.append(roi_summaries(values))
        samples.append(roi_voxel_sample(values, voxels_per_patient, rng))
    return np.stack(summaries), samples


def fit_source_statistics(keys: dict[str, str], cache_dir: str | Path, names: list[str], path: str | Path):
    """MapStatistics of `names` over the ROI voxels of the patients in `keys` (label-free), saved
    to `path`. The study fits it once on ALL source patients for every map: a bundle run picks
    its features from it by name."""
    from voxsurv.maps.cache import MapsCache
    from voxsurv.maps.normalise import MapStatistics

    cache = MapsCache(cache_dir)
    settings = cache.read_info(next(iter(keys.values()))).get("settings", {})
    stats = MapStatistics.fit((cache.read_roi_values(k, names) for k in keys.values()), names, settings=settings)
    stats.save(path)
    return stats
