#!/usr/bin/env python
"""Map screening on the source cohort: which voxel maps to train on (the study's screening step alone).

    python scripts/screen_maps.py --data ../shared/data/lung_crops --out runs/screening \
        [--maps-cache DIR] [--threshold 0.6] [--max-abs-r 0.8] [--max-maps 16] [--horizon-days 730] [--workers 2]

Screening model ("map alone", deliberately small): per patient, five ROI summaries of the map
(mean, sd, p10, p50, p90) -> ridge Cox, 5-fold event-stratified CV inside the source cohort
(`source` of docs/results/real_split.csv); metric: cumulative AUC at --horizon-days averaged over
folds. Maps with AUC > --threshold are taken greedily by AUC, skipping a map whose voxel-level
|Spearman r| (ROI voxels pooled over source patients) with a kept map exceeds --max-abs-r; if none
passes, a top-k fallback (said so in the output). Maps come from the maps cache (computed first
when missing, through the bundles' preprocessing chain). Resumable: one result file per map.
Writes OUT/selected_maps.json, OUT/screening.csv, OUT/map_correlation.csv,
OUT/selection_decisions.csv and OUT/screening_auc.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from voxsurv.study.runner import Study
    from voxsurv.study.settings import StudySettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default=str(REPO / "docs/results/real_split.csv"))
    p.add_argument("--maps-cache", default=None, help="maps cache [OUT/maps_cache]")
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--max-abs-r", type=float, default=0.8)
    p.add_argument("--max-maps", type=int, default=16)
    p.add_argument("--horizon-days", type=float, default=730.0)
    p.add_argument("--fallback-k", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="few patients and 4 maps")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("lifelines").setLevel(logging.ERROR)
    kw = dict(seed=a.seed, workers=a.workers, screen_threshold=a.threshold, max_abs_r=a.max_abs_r, max_maps=a.max_maps,
              screen_horizon_days=a.horizon_days, screen_fallback_k=a.fallback_k)
    s = StudySettings.for_smoke(**kw) if a.smoke else StudySettings(**kw)
    study = Study(a.data, a.out, a.split, s, a.maps_cache)
    maps_info = study.steps("maps", study.step_maps)
    sel = study.steps("screening", study.step_screening)
    out = Path(a.out)
    for name in ("screening.csv", "map_correlation.csv", "selection_decisions.csv", "screening_auc.png"):
        shutil.copyfile(out / "screening" / name, out / name)
    sel["timing"] = {"maps_extraction": maps_info, "step_wall_s": study.steps.timings}
    (out / "selected_maps.json").write_text(json.dumps(sel, indent=1))
    print(f"{len(sel['selected'])} maps selected ({sel['rule']}): {', '.join(sel['selected'])}")
    print(f"median |r| among them {sel['selected_median_abs_r']}, max {sel['selected_max_abs_r']} -> "
          f"{out / 'selected_maps.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
