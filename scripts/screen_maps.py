#!/usr/bin/env python
"""Map screening on the source cohort: which of the 90 voxel maps to train on.

    python scripts/screen_maps.py --data ../shared/data/lung_crops --out runs/screening \
        [--maps-cache DIR] [--threshold 0.6] [--horizon-days 730] [--fallback-k 8] [--workers 2]

Screening model ("map alone", deliberately small): per patient, five ROI summaries of the map
(mean, sd, p10, p50, p90) -> ridge Cox, 5-fold event-stratified CV inside the source cohort
(`lung1` of docs/results/real_split.csv); metric: cumulative AUC at --horizon-days averaged over
folds. Maps with AUC > --threshold are kept; if none passes, the top --fallback-k (said so in
the output). Maps come from the cohort cache (`voxsurv maps`, torch backend), computed first
when missing (its wall time is reported). Resumable: one result file per map.
Writes OUT/selected_maps.json, OUT/screening.csv and OUT/screening_auc.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from voxsurv.study.runner import Study, StudySettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default=str(REPO / "docs/results/real_split.csv"))
    p.add_argument("--maps-cache", default=None, help="cohort maps cache [OUT/maps_cache]")
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--horizon-days", type=float, default=730.0)
    p.add_argument("--fallback-k", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="few patients and 4 maps")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("lifelines").setLevel(logging.ERROR)
    s = StudySettings(seed=a.seed, workers=a.workers, smoke=a.smoke, screen_threshold=a.threshold,
                      screen_horizon_days=a.horizon_days, screen_fallback_k=a.fallback_k, max_maps=10**6)
    study = Study(a.data, a.out, a.split, s, a.maps_cache)
    t0 = time.time()
    maps_info = study.step("maps", study.extract_maps)
    t1 = time.time()
    sel = study.screening()
    t2 = time.time()
    out = Path(a.out)
    for name in ("selected_maps.json", "screening.csv", "screening_auc.png"):
        (out / name).write_bytes((out / "screening" / name).read_bytes())
    sel["timing"] = {"maps_extraction": maps_info, "maps_step_wall_s": round(t1 - t0, 1),
                     "screening_wall_s": round(t2 - t1, 1)}
    (out / "selected_maps.json").write_text(json.dumps(sel, indent=1))
    print(f"{len(sel['selected'])} maps selected ({sel['rule']}): {', '.join(sel['selected'])}")
    print(f"maps: {maps_info}; screening {t2 - t1:.0f} s -> {out / 'selected_maps.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
