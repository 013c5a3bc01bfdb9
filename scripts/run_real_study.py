#!/usr/bin/env python
"""The real cross-cohort study: Lung1 (source) -> Radiogenomics (20% fine-tune / 80% test).

    python scripts/run_real_study.py --data ../shared/data/lung_crops --out runs/real_study [--device cpu] [--smoke]

Writes OUT/results.json and OUT/results.md (rows a-g on the split of docs/results/real_split.csv).
Resumable: every finished step leaves OUT/steps/<step>.json; re-running the same command skips
them (training steps also resume at the last finished epoch). See docs/results/real_study.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from voxsurv.study.runner import Study, StudySettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="lung_crops folder (manifest.csv + images/)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--split", default=str(REPO / "docs/results/real_split.csv"), help="split file [docs/results/real_split.csv]")
    p.add_argument("--maps-cache", default=None, help="cohort maps cache folder [OUT/maps_cache]")
    p.add_argument("--device", default="cpu", help="torch device [cpu]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes for maps, PyRadiomics, screening [2]")
    p.add_argument("--smoke", action="store_true", help="few patients, 4 maps, 1 epoch (the test suite's run)")
    p.add_argument("--pretrain-epochs", type=int, default=None)
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples for the C CI [1000; smoke 100]")
    p.add_argument("--source-cv", action="store_true",
                   help="after rows a-g, the remaining 4 folds of a 5-fold CV of row d's pre-training on the source")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    for noisy in ("radiomics", "networks", "voxelmaps", "survival", "lifelines"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    s = StudySettings(seed=a.seed, device=a.device, workers=a.workers, smoke=a.smoke)
    if a.smoke:
        s.bootstrap = 50
    if a.bootstrap is not None:
        s.bootstrap = a.bootstrap
    if a.pretrain_epochs is not None:
        s.pretrain_epochs = a.pretrain_epochs
    study = Study(a.data, a.out, a.split, s, a.maps_cache)
    study.source_cv_folds = a.source_cv
    res = study.run()
    print((Path(a.out) / "results.md").read_text())
    return 0 if res["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
