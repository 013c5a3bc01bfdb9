#!/usr/bin/env python
"""Benchmark the bundles' per-run data preparation (issue 11: the study runs the bundle workflow
75+ times over the same ~200 patients, so preparing already-cached patients must take seconds).

Builds the `data` module exactly as bundles/pretrain/configs/train.yaml does (MONAI ConfigParser,
same overrides a run would get) and times `samples()` for every role twice, each time with a NEW
data module in a NEW process:
- cold: empty cache_dir (maps computed or read from maps_cache_dir, statistics fitted, stacks cut);
- warm: the same cache_dir (what every later run of the study sees).
Default cohort: the 200 demo patients (source + target, all as the training pool: fold 0 -> 160
train + 40 val), generated in a temporary folder; pass --manifest/--cohort for a real one.

    OMP_NUM_THREADS=1 python scripts/bench_patient_preparation.py --json bench_preparation.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prepare_once(args) -> dict:
    """One process: parse the bundle's `data`, prepare every role, report seconds."""
    from monai.bundle import ConfigParser

    t0 = time.perf_counter()
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "pretrain" / "configs" / "train.yaml"))
    overrides = {"bundle_root": str(REPO / "bundles" / "pretrain"), "manifest": args.manifest,
                 "cohort": None if args.cohort in ("", "all", "None") else args.cohort,
                 "output_dir": args.output_dir, "cache_dir": args.cache_dir, "maps_cache_dir": args.maps_cache_dir,
                 "preprocess_workers": args.workers}
    if args.features is not None:
        overrides["features"] = json.loads(args.features)
    if args.map_statistics:
        overrides["map_statistics"] = args.map_statistics
    for k, v in overrides.items():
        parser[k] = v
    data = parser.get_parsed_content("data")
    t_parse = time.perf_counter() - t0
    out = {"parse_s": t_parse, "roles": {}}
    for role in sorted(data.roles):
        t = time.perf_counter()
        samples = data.samples(role)
        out["roles"][role] = {"patients": len(samples), "seconds": time.perf_counter() - t}
    out["total_s"] = time.perf_counter() - t0
    out["patients"] = sum(r["patients"] for r in out["roles"].values())
    out["excluded"] = len(data.excluded)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", help="manifest CSV (default: the demo cohort in a temporary folder)")
    p.add_argument("--cohort", default="all", help='manifest cohort ("all": every row)')
    p.add_argument("--features", help='JSON list of map names (default: the bundle\'s)')
    p.add_argument("--map_statistics", help="a statistics JSON (the study passes one; default: fit on train)")
    p.add_argument("--workers", type=int, default=1, help="processes for patients not yet cached")
    p.add_argument("--work_dir", help="folder for outputs and caches (default: temporary)")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--output_dir", help=argparse.SUPPRESS)
    p.add_argument("--cache_dir", help=argparse.SUPPRESS)
    p.add_argument("--maps_cache_dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        print(json.dumps(prepare_once(args)))
        return 0
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_prep_"))
    if args.manifest is None:
        from voxsurv.training.demo import generate_demo_cohort

        import pandas as pd

        t = time.perf_counter()
        demo = pd.read_csv(generate_demo_cohort(work / "demo"))
        print(f"demo cohort written in {time.perf_counter() - t:.1f} s", flush=True)
        args.manifest = str(work / "demo" / "all_train.csv")
        demo.assign(split="train").to_csv(args.manifest, index=False)
    result = {"manifest": args.manifest, "cohort": args.cohort, "features": args.features, "workers": args.workers,
              "torch_threads": os.environ.get("OMP_NUM_THREADS"), "runs": {}}
    for name in ("cold", "warm"):
        cmd = [sys.executable, __file__, "--_child", "--manifest", args.manifest, "--cohort", args.cohort,
               "--workers", str(args.workers), "--output_dir", str(work / f"out_{name}"),
               "--cache_dir", str(work / "cache"), "--maps_cache_dir", str(work / "cache" / "maps")]
        if args.features:
            cmd += ["--features", args.features]
        if args.map_statistics:
            cmd += ["--map_statistics", args.map_statistics]
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-3000:])
            return 1
        run = json.loads(res.stdout.strip().splitlines()[-1])
        run["process_wall_s"] = time.perf_counter() - t  # including interpreter + imports
        result["runs"][name] = run
        print(f"{name}: {run['patients']} patients ({run['excluded']} excluded) prepared in {run['total_s']:.1f} s "
              f"(process {run['process_wall_s']:.1f} s); per role " +
              ", ".join(f"{r} {v['patients']} in {v['seconds']:.2f} s" for r, v in run["roles"].items()), flush=True)
    result["load_average"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
