"""Time the torch engine's GLSZM, GLDM and NGTDM families alone on the IBSI CT phantom tumour.

The tumour is resampled to 1 x 1 x 5 mm and clipped to [-95, 155] HU as in the maps defaults,
discretised with bin width 25 and cut into radius-1 kernel patches once (not timed); then each
family computes all its maps for every ROI voxel, best of `--repeat` runs, wall-clock and process
CPU time (the latter is less disturbed by other jobs on a shared machine). Usage:

    .venv/bin/python scripts/bench_maps_zone_families.py --threads 1 [--radius 1] [--device cpu]

The full 90-map benchmark against PyRadiomics is scripts/bench_maps.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from custom_transforms.pipeline import volume_preprocessing
from voxsurv.maps.torch_engine import gldm, glszm, ngtdm
from voxsurv.maps.torch_engine.common import discretise_roi, kernel_patches

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ibsi" / "ct_phantom" / "nifti"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--radius", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # the bundles' grid: MONAI resampling to 1 x 1 x 5 mm; (x, y, z) -> the engine's (z, y, x)
    d = volume_preprocessing(features=[])({"image": str(args.data / "image" / "phantom.nii.gz"),
                                           "mask": str(args.data / "mask" / "mask.nii.gz")})
    image = np.clip(d["image"][0].numpy().transpose(2, 1, 0).astype(np.float64), -95, 155)
    roi = d["mask"][0].numpy().transpose(2, 1, 0) > 0
    disc = discretise_roi(image, roi, bin_width=25.0, device=args.device)
    _, levels = kernel_patches(disc, args.radius)
    result = {"voxels": int(levels.shape[0]), "n_levels": disc.n_levels, "radius": args.radius,
              "threads": args.threads, "device": args.device, "seconds": {},
              "cpu_seconds": {}}
    for dtype in (torch.float64, torch.float32):
        for name, mod in (("glszm", glszm), ("gldm", gldm), ("ngtdm", ngtdm)):
            mod.compute(levels[:2048], disc.n_levels, dtype=dtype)  # warm-up
            best = cpu_best = float("inf")
            for _ in range(args.repeat):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start, cpu_start = time.perf_counter(), time.process_time()
                mod.compute(levels, disc.n_levels, dtype=dtype)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
                cpu_best = min(cpu_best, time.process_time() - cpu_start)
            tag = str(dtype).split(".")[1]
            result["seconds"][f"{name}_{tag}"] = round(best, 4)
            result["cpu_seconds"][f"{name}_{tag}"] = round(cpu_best, 4)
        for key in ("seconds", "cpu_seconds"):
            result[key][f"total_{tag}"] = round(sum(v for k, v in result[key].items()
                                                    if k.endswith(tag) and k != f"total_{tag}"), 4)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
