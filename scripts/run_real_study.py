#!/usr/bin/env python
"""The real cross-cohort study through the bundles: Lung1 (source) -> Radiogenomics (20% fine-tune / 80% test).

    python scripts/run_real_study.py --data ../shared/data/lung_crops --out runs/real_study [--plan] [--smoke]
        [--candidates bundles/pretrain/configs/study/candidates.yaml] [--maps-cache DIR] [--workers 2]

Every deep row runs `python -m monai.bundle run` with the bundles' train.yaml + the study's
override files (bundles/*/configs/study/) + per-run overrides (recorded in results.json).
Writes OUT/results.json and OUT/results.md. Resumable: each finished step leaves
OUT/steps/<step>.json and each finished bundle run OUT/runs/<variant>/<run>/study_run.json;
re-running the same command skips them. `--plan` prints the runs and a CPU estimate and exits.
See docs/results/real_study.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from voxsurv.study.runner import Study
    from voxsurv.study.settings import StudySettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="lung_crops folder (manifest.csv + images/)")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--split", default=str(REPO / "docs/results/real_split.csv"), help="split file [docs/results/real_split.csv]")
    p.add_argument("--candidates", default=None, help="protocol + candidates file "
                                                      "[bundles/pretrain/configs/study/candidates.yaml]")
    p.add_argument("--maps-cache", default=None, help="maps cache folder [OUT/maps_cache]")
    p.add_argument("--seed", type=int, default=0, help="folds, subsampling, bootstrap [0]")
    p.add_argument("--seeds", default=None, help="training seeds, comma-separated [0,1,2]")
    p.add_argument("--workers", type=int, default=None, help="processes side by side [2]")
    p.add_argument("--executor", choices=("pool", "subprocess", "inprocess"), default=None,
                   help="bundle runs: --workers worker processes [pool], one `python -m monai.bundle run` process "
                        "per run, or in this process (smoke default)")
    p.add_argument("--smoke", action="store_true", help="few patients, 4 maps, 2 folds x 1 seed, tiny network")
    p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples [1000; smoke 50]")
    p.add_argument("--plan", action="store_true", help="print the planned runs and a CPU estimate, then exit")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    for noisy in ("radiomics", "networks", "voxsurv.maps", "voxsurv.stats", "lifelines"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("voxsurv.maps.cohort").setLevel(logging.INFO)   # one line per patient of the maps step
    kw = {k: v for k, v in {"seed": a.seed, "workers": a.workers, "executor": a.executor,
                            "bootstrap": a.bootstrap}.items() if v is not None}
    if a.seeds:
        kw["seeds"] = tuple(int(s) for s in a.seeds.split(","))
    s = StudySettings.for_smoke(**kw) if a.smoke else StudySettings(**kw)
    study = Study(a.data, a.out, a.split, s, a.maps_cache, a.candidates)
    plan = study.plan()
    print(plan, flush=True)
    if a.plan:
        return 0
    res = study.run()
    print((Path(a.out) / "results.md").read_text())
    return 0 if res["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
