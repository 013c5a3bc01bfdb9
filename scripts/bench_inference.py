"""Inference time per patient and peak memory with the inference bundle on the IBSI CT phantom
(DICOM CT + RTSTRUCT, ROI GTV): conversion, resampling, descriptors, the bundle's radiomics maps
(torch engine), the (C, H, W, S) tumour stack, network, Grad-CAM per slice, NIfTI + PNG + report.
Prints one line per repeat, the median and the process's peak RSS.

    OMP_NUM_THREADS=1 python scripts/bench_inference.py [--bundle bundles/inference] [--repeats 3] [--threads 1]
    # timing-only bundle of the study's size (random weights, placeholder calibration; nothing committed):
    OMP_NUM_THREADS=1 python scripts/bench_inference.py --timing-bundle --members 15 --json bench.json

``--timing-bundle`` builds, in a temporary folder, a bundle with the shipped inference config and
random weights of the given size (default: the pretrain bundle's defaults, img 48, embed 64,
depth 4, the 16 maps of bundles/pretrain/models/map_statistics.json), so the new chain can be
timed before trained weights exist. Weight values do not change the time.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timing_bundle(folder: Path, members: int, img_size: int, embed_dim: int, depth: int, n_maps: int,
                  pooling: str, anchored: bool) -> Path:
    """A bundle folder with the repository's inference config and random weights (timing only)."""
    import torch

    from networks import SurvivalEnsemble, VisionMambaSurv
    from voxelmaps.normalise import MapStatistics
    from voxsurv.inference.bundle_info import InferenceInfo, sha256_file
    from voxsurv.inference.packaging import DEFAULT_PREPROCESSING

    stats = MapStatistics.load(REPO / "bundles" / "pretrain" / "models" / "map_statistics.json")
    features = list(stats.names)[:n_maps]
    stats = stats.select(features)
    bundle = folder / "bundle"
    shutil.copytree(REPO / "bundles" / "inference" / "configs", bundle / "configs")
    (bundle / "models").mkdir(parents=True)
    kwargs = {"in_channels": 2 + len(features), "img_size": img_size, "embed_dim": embed_dim, "depth": depth,
              "pooling": pooling, "n_descriptors": 2 if anchored else 0}
    torch.manual_seed(0)
    net = SurvivalEnsemble(VisionMambaSurv(**kwargs), members)
    if anchored:
        net.set_anchor([0.5, -0.3], [3.0, 20.0], [1.0, 30.0])
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    member_kwargs = VisionMambaSurv.kwargs_from_state_dict(
        {k[len("members.0."):]: v for k, v in net.state_dict().items() if k.startswith("members.0.")})
    info = InferenceInfo(
        features=features, map_statistics=stats.to_dict(),
        network={"pooling": "mean", "n_descriptors": 0, "attention_dim": None, **member_kwargs}, n_members=members,
        preprocessing={**DEFAULT_PREPROCESSING, "img_size": img_size},
        baseline={"event_times": [100.0, 500.0, 1000.0], "cumulative_hazard": [0.1, 0.4, 0.8], "last_follow_up": 2000.0},
        tier_cutoffs=[-0.1, 0.1], training_risk_range=[-1.0, 1.0], model_version="timing-only",
        weights_sha256=sha256_file(bundle / "models" / "model.pt"),
        provenance={"timing_only": "random weights and a placeholder calibration (scripts/bench_inference.py)"})
    info.save(bundle / "models" / "inference_info.json")
    return bundle


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(REPO / "bundles" / "inference"))
    p.add_argument("--timing-bundle", action="store_true", help="time a random-weight bundle of the given size")
    p.add_argument("--members", type=int, default=15, help="ensemble members of the timing bundle (study: 5 folds x 3 seeds)")
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--maps", type=int, default=16, help="maps of the timing bundle")
    p.add_argument("--pooling", default="mean", choices=("mean", "attention"))
    p.add_argument("--anchored", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ibsi" / "ct_phantom" / "dicom"))
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from voxsurv.inference.predictor import RiskPredictor

    with tempfile.TemporaryDirectory(prefix="voxsurv-bench-") as tmp:
        bundle = Path(args.bundle)
        if args.timing_bundle:
            bundle = timing_bundle(Path(tmp), args.members, args.img_size, args.embed_dim, args.depth, args.maps,
                                   args.pooling, args.anchored)
        t0 = time.perf_counter()
        predictor = RiskPredictor(bundle)
        load_s = time.perf_counter() - t0
        print(f"bundle load: {load_s:.2f} s ({predictor.info.n_members} member(s), {len(predictor.info.features)} maps)")
        dicom = Path(args.data)
        record = {"patient_id": "ibsi-phantom", "ct_dir": str(dicom / "image"),
                  "rtstruct": str(next((dicom / "mask").glob("*.dcm"))), "roi": "GTV"}
        times = []
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory(dir=tmp) as out:
                t = time.perf_counter()
                report = predictor.predict(record, out)
                times.append(time.perf_counter() - t)
            print(f"repeat {i + 1}: {times[-1]:.2f} s  {report['timing_s']}")
    result = {"per_patient_s_median": round(statistics.median(times), 3), "per_patient_s": [round(t, 3) for t in times],
              "bundle_load_s": round(load_s, 3), "peak_rss_mb": round(peak_rss_mb(), 1), "threads": args.threads,
              "n_slices": report["n_slices"], "field_of_view_mm": report["field_of_view_mm"],
              "n_members": predictor.info.n_members, "n_maps": len(predictor.info.features),
              "network": predictor.info.network, "timing_s_last": report["timing_s"],
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(f"median per patient: {result['per_patient_s_median']:.2f} s ({args.threads} thread(s), "
          f"{result['n_slices']} slices, {result['n_maps']} maps, {result['n_members']} member(s)); "
          f"peak RSS {result['peak_rss_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
