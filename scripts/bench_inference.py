"""Inference time per patient with the committed inference bundle on the IBSI CT phantom (DICOM CT +
RTSTRUCT, ROI GTV): conversion, resampling, the bundle's radiomics maps (torch engine), network,
Grad-CAM, NIfTI + PNG + report. Prints one line per repeat and the median.

    OMP_NUM_THREADS=2 python scripts/bench_inference.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ibsi" / "ct_phantom" / "dicom"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from voxsurv.inference.predictor import RiskPredictor

    t0 = time.perf_counter()
    predictor = RiskPredictor(REPO / "bundles" / "inference")
    print(f"bundle load: {time.perf_counter() - t0:.2f} s")
    dicom = Path(args.data)
    record = {"patient_id": "ibsi-phantom", "ct_dir": str(dicom / "image"),
              "rtstruct": str(next((dicom / "mask").glob("*.dcm"))), "roi": "GTV"}
    times = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            report = predictor.predict(record, out)
            times.append(time.perf_counter() - t)
        print(f"repeat {i + 1}: {times[-1]:.2f} s  {report['timing_s']}")
    print(f"median per patient: {statistics.median(times):.2f} s ({args.threads} threads, {report['n_slices']} slices, "
          f"{len(predictor.info.features)} maps)")


if __name__ == "__main__":
    main()
