"""Measure the per-patient chain (custom_transforms.pipeline) on the real lung_crops cohort:

1. field of view over all usable patients: tumour slices cut by the per-patient FOV (must be 0),
   the same slices under the old fixed 64 mm crop (for contrast), fov_mm distribution, slices per
   patient; patients without a usable tumour are listed as exclusions;
2. time per patient of volume_preprocessing with a WARM maps cache (a training run's cost) plus
   stack_preprocessing, for the first --timed patients (the cache is filled first, not timed).

    OMP_NUM_THREADS=1 python scripts/measure_patient_inputs.py --out runs/patient_inputs [--timed 20]

Writes <out>/fov_per_patient.csv, <out>/exclusions.csv, <out>/timing.csv, <out>/summary.json and
prints the summary. Single-threaded torch (the numbers are per core).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the 16 maps beside the first shipped weights: a realistic training selection to time
TIMED_FEATURES = ("gldm_LargeDependenceHighGrayLevelEmphasis", "glrlm_LongRunHighGrayLevelEmphasis",
                  "gldm_HighGrayLevelEmphasis", "glszm_LargeAreaHighGrayLevelEmphasis", "firstorder_10Percentile",
                  "glcm_Autocorrelation", "glrlm_HighGrayLevelRunEmphasis", "firstorder_Minimum",
                  "glszm_HighGrayLevelZoneEmphasis", "glcm_JointAverage", "firstorder_Median",
                  "glrlm_ShortRunHighGrayLevelEmphasis", "firstorder_Mean", "firstorder_90Percentile",
                  "firstorder_Maximum", "glszm_SmallAreaHighGrayLevelEmphasis")


def old_crop_cuts(mask, roi_size_mm: float = 64.0, min_area_mm2: float = 10.0) -> tuple[int, int]:
    """(cut slices, kept slices) under the first bundles' slicing (the removed TumourSlices): a fixed
    64 x 64 voxel (1 mm) crop centred on each slice's tumour bounding box, slices with >= 10 mm2."""
    roi = (mask[0] > 0).numpy()
    size = int(round(roi_size_mm))
    cut = kept = 0
    for k in range(roi.shape[2]):
        if roi[:, :, k].sum() < max(min_area_mm2, 1):
            continue
        kept += 1
        xs, ys = np.nonzero(roi[:, :, k])
        x0 = int(np.floor((xs.min() + xs.max()) / 2.0 - (size - 1) / 2.0 + 0.5))
        y0 = int(np.floor((ys.min() + ys.max()) / 2.0 - (size - 1) / 2.0 + 0.5))
        inside = roi[max(x0, 0):x0 + size, max(y0, 0):y0 + size, k].sum()
        cut += int(inside < roi[:, :, k].sum())
    return cut, kept


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "lung_crops"))
    p.add_argument("--out", required=True)
    p.add_argument("--timed", type=int, default=20, help="patients timed with a warm maps cache [20]")
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--skip-fov", action="store_true", help="only the timing part (reads the FOV table of --out)")
    args = p.parse_args()

    import pandas as pd
    import torch

    torch.set_num_threads(1)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = pd.read_csv(data / "manifest.csv")
    records = [{"image": str(data / r.image), "mask": str(data / r.mask), "patient_id": r.patient_id,
                "cohort": r.cohort} for r in manifest.itertuples()]

    # ---- 1. field of view over every patient (no maps needed) ----
    if args.skip_fov:
        fov = pd.read_csv(out / "fov_per_patient.csv")
        summary = json.loads((out / "summary.json").read_text())
    else:
        fov, summary = measure_fov(records, out, args.img_size)
    timing_summary(records, fov, summary, out, args)


def measure_fov(records, out: Path, img_size: int):
    """Part 1: FOV, cut slices (new chain and the old 64 mm crop) of every patient."""
    import pandas as pd

    from custom_transforms.pipeline import stack_preprocessing, volume_preprocessing
    from voxsurv.core.errors import input_error_in

    volume = volume_preprocessing(features=[])
    stack = stack_preprocessing(features=[], img_size=img_size)
    rows, excluded = [], []
    for rec in records:
        try:
            d = volume(dict(rec))
            x = stack(dict(d))["image"]
        except Exception as exc:  # noqa: BLE001 - bad input is recorded, the run goes on
            err = input_error_in(exc)
            excluded.append({"patient_id": rec["patient_id"], "problem": str(err or exc)})
            continue
        old_cut, old_kept = old_crop_cuts(d["mask"])
        rows.append({"patient_id": rec["patient_id"], "cohort": rec["cohort"], "n_slices": int(x.shape[-1]),
                     "fov_mm": float(x.meta["fov_mm"]), "tumour_cut_slices": int(x.meta["tumour_cut_slices"]),
                     "old64_cut_slices": old_cut, "old64_slices": old_kept,
                     "log_volume_ml": float(d["descriptors"][0]), "mean_hu": float(d["descriptors"][1])})
    fov = pd.DataFrame(rows)
    fov.to_csv(out / "fov_per_patient.csv", index=False)
    pd.DataFrame(excluded, columns=["patient_id", "problem"]).to_csv(out / "exclusions.csv", index=False)
    q = np.percentile(fov["fov_mm"], [0, 5, 25, 50, 75, 95, 100]).round(1).tolist()
    src = fov[fov["cohort"] == "lung1"]
    summary = {
        "patients": len(records), "usable": len(fov), "excluded": len(excluded),
        "slices": int(fov["n_slices"].sum()),
        "cut_slices": int(fov["tumour_cut_slices"].sum()),
        "cut_fraction": float(fov["tumour_cut_slices"].sum() / fov["n_slices"].sum()),
        "old64_cut_fraction_all": float(fov["old64_cut_slices"].sum() / fov["old64_slices"].sum()),
        "old64_cut_fraction_lung1": float(src["old64_cut_slices"].sum() / src["old64_slices"].sum()),
        "fov_mm_quantiles_0_5_25_50_75_95_100": q,
        "fov_mm_at_min_20": int((fov["fov_mm"] <= 20.0 + 1e-9).sum()),
        "fov_mm_over_92": int((fov["fov_mm"] > 92.0).sum()),
        "slices_per_patient_median": float(fov["n_slices"].median()),
    }
    return fov, summary


def timing_summary(records, fov, summary: dict, out: Path, args) -> None:
    """Part 2: warm-cache volume stage + stack stage per patient, first --timed usable patients."""
    import pandas as pd

    from custom_transforms.pipeline import stack_preprocessing, volume_preprocessing
    from voxsurv.maps.normalise import MapStatistics

    # ---- 2. time per patient with a warm maps cache ----
    cache = out / "maps_cache"
    timed_ids = list(fov["patient_id"][: args.timed])
    timed = [r for r in records if r["patient_id"] in timed_ids]
    volume = volume_preprocessing(list(TIMED_FEATURES), maps_cache_dir=cache)
    t0 = time.perf_counter()
    warm = [volume(dict(r)) for r in timed]  # fills the cache (not part of the per-run cost)
    fill_s = time.perf_counter() - t0
    stats = MapStatistics.fit([(d["maps"].numpy(), d["mask"][0].numpy()) for d in warm], list(TIMED_FEATURES))
    stack = stack_preprocessing(stats, img_size=args.img_size)
    load_start = os.getloadavg()[0]
    timing = []
    for r in timed:
        t = time.perf_counter()
        d = volume(dict(r))
        t_vol = time.perf_counter() - t
        assert d["maps"].meta["maps_computed"] == [], "cache miss on the timed pass"
        t = time.perf_counter()
        stack(d)
        timing.append({"patient_id": r["patient_id"], "volume_cached_s": t_vol, "stack_s": time.perf_counter() - t})
    timing = pd.DataFrame(timing)
    timing.to_csv(out / "timing.csv", index=False)
    total = timing["volume_cached_s"] + timing["stack_s"]
    summary.update({
        "timed_patients": len(timing), "timed_features": len(TIMED_FEATURES),
        "cache_fill_s": round(fill_s, 2),
        "volume_cached_s_median": round(statistics.median(timing["volume_cached_s"]), 4),
        "stack_s_median": round(statistics.median(timing["stack_s"]), 4),
        "per_patient_s_median": round(statistics.median(total), 4),
        "per_patient_s_max": round(float(total.max()), 4),
        "all_timed_s": round(float(total.sum()), 3),
        "machine_load_1min_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
    })
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
