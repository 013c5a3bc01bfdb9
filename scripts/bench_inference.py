"""How fast `voxsurv predict` answers, and where the time goes.

    OMP_NUM_THREADS=1 python scripts/bench_inference.py --json bench.json [--bundle DIR]
    # until trained patient-level weights ship: a bundle of the study's size with random weights
    OMP_NUM_THREADS=1 python scripts/bench_inference.py --timing-bundle --members 15 --json bench.json

Measures, each in a fresh process started by this script (what a user waits for):
- ``cold_start_s``: process start -> first risk (`voxsurv predict --ct-dir/--rtstruct/--roi GTV` on
  the IBSI CT phantom DICOM, one patient), and ``cold_start_to_report_s`` (-> report.json written);
- ``per_patient_s``: median wall time per patient of `voxsurv predict --manifest` over 20 lung_crops
  patients in ONE process (time between consecutive finished patients; the first patient, which
  also waits for the bundle, is excluded), with its min/max;
- ``phantom_warm_s``: the IBSI phantom predicted ``--repeats`` times in one process (bundle loaded),
  median and each;
- ``peak_rss_mb``: the largest resident set of the predict processes (incl. DataLoader workers);
- ``profile``: the cold start split into interpreter + imports (torch, MONAI, SimpleITK, voxsurv),
  bundle config parsing, network + weights, input check / DICOM conversion, preprocessing (of which
  radiomics maps), network, Grad-CAM, writing the outputs;
- the load average before and after (the machine is shared: numbers under load are inflated).

The committed inference bundle must be in the current format; ``--timing-bundle`` builds, in a
temporary folder, a bundle with the shipped inference config and RANDOM weights of the given size
(default: img 48, embed 64, depth 4, the 16 maps of bundles/pretrain/models/map_statistics.json,
``--members`` ensemble members) and a placeholder calibration: weight values do not change the
time (the JSON says which bundle was timed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# Runs inside the measured process: timestamps of each phase (absolute, time.time()) + peak RSS.
CHILD = r"""
import json, os, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
T = {"process_start": float(os.environ["VOXSURV_BENCH_T0"]), "interpreter_ready": time.time()}
C = {"interpreter_ready": cpu()}
import torch; T["import_torch"] = time.time(); C["import_torch"] = cpu()
if os.environ.get("VOXSURV_BENCH_FULL_MONAI"):
    import monai
else:  # as the voxsurv program imports it for predict (voxsurv.inference.batch -> monai_import)
    from voxsurv.inference.monai_import import import_monai_for_prediction; import_monai_for_prediction()
T["import_monai"] = time.time(); C["import_monai"] = cpu()
import SimpleITK; T["import_simpleitk"] = time.time(); C["import_simpleitk"] = cpu()
import voxsurv.cli, voxsurv.inference.batch as batch, voxsurv.inference.predictor as P
T["import_voxsurv"] = time.time(); C["import_voxsurv"] = cpu()
from monai.bundle import ConfigParser
EV = []
DEPTH = [0]
def timed(owner, name, label):
    real = getattr(owner, name)
    def wrapper(*a, **k):
        DEPTH[0] += 1
        t, c = time.time(), cpu()
        try:
            return real(*a, **k)
        finally:
            DEPTH[0] -= 1
            EV.append((label, t, time.time(), cpu() - c))
    setattr(owner, name, wrapper)
timed(ConfigParser, "get_parsed_content", "bundle_config_parse_and_instantiate")
timed(P.RiskPredictor, "_load_weights", "weights")
timed(batch, "check_patient", "input_check_and_conversion")
timed(P.RiskPredictor, "prepare", "preprocessing")
timed(P.RiskPredictor, "infer", "network_gradcam_outputs")
try:
    import custom_transforms.maps as M
    timed(M.VoxelRadiomicsMapsd, "__call__", "radiomics_maps")
except Exception:
    pass
timed(batch, "load_predictor", "bundle_load_total")
REPORTS = []
real_finish = batch._finish
def finish(predictor, prepared, planned, stage, folder):
    t = time.time(); report = real_finish(predictor, prepared, planned, stage, folder)
    REPORTS.append({"patient_id": planned.patient_id, "start": t, "done": time.time(), "timing_s": report["timing_s"]})
    return report
batch._finish = finish
rc = voxsurv.cli.main()  # no argv: the program itself (sys.argv[1:] are its arguments)
T["end"] = time.time()
json.dump({"rc": rc, "t": T, "cpu": C, "events": EV, "reports": REPORTS,
           "rss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
           "rss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss},
          open(os.environ["VOXSURV_BENCH_OUT"], "w"))
"""


def run_child(args: list[str], env_extra: dict, workdir: Path) -> dict:
    out = workdir / f"child_{time.time_ns()}.json"
    env = {**os.environ, **env_extra, "PYTHONPATH": str(REPO), "VOXSURV_BENCH_OUT": str(out)}
    t0 = time.time()
    env["VOXSURV_BENCH_T0"] = repr(t0)
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        raise SystemExit(f"predict failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(out.read_text())
    result["wall_s"] = time.time() - t0
    return result


def phase_seconds(result: dict) -> dict:
    """The cold start split into phases (seconds)."""
    t = result["t"]
    out = {"interpreter_startup": t["interpreter_ready"] - t["process_start"],
           "import_torch": t["import_torch"] - t["interpreter_ready"],
           "import_monai": t["import_monai"] - t["import_torch"],
           "import_simpleitk": t["import_simpleitk"] - t["import_monai"],
           "import_voxsurv": t["import_voxsurv"] - t["import_simpleitk"]}
    sums: dict[str, float] = {}
    for label, a, b, _ in result["events"]:
        sums[label] = sums.get(label, 0.0) + (b - a)
    out.update({k: v for k, v in sums.items()})
    if result["reports"]:
        timing = result["reports"][0]["timing_s"]
        out.update({f"infer_{k}": v for k, v in timing.items() if k != "total"})
    return {k: round(v, 3) for k, v in out.items()}


def phase_cpu_seconds(result: dict) -> dict:
    """The same phases in CPU seconds of the predict process (user + system): on a shared machine
    closer to what a quiet one would take than the wall times."""
    c = result["cpu"]
    out = {"interpreter_startup": c["interpreter_ready"], "import_torch": c["import_torch"] - c["interpreter_ready"],
           "import_monai": c["import_monai"] - c["import_torch"],
           "import_simpleitk": c["import_simpleitk"] - c["import_monai"],
           "import_voxsurv": c["import_voxsurv"] - c["import_simpleitk"]}
    for label, _, _, cpu in result["events"]:
        out[label] = out.get(label, 0.0) + cpu
    return {k: round(v, 3) for k, v in out.items()}


def timing_bundle(folder: Path, members: int, img_size: int, embed_dim: int, depth: int, n_maps: int,
                  pooling: str, anchored: bool) -> Path:
    """A bundle folder with the repository's inference config and random weights (timing only)."""
    import torch

    from networks import SurvivalEnsemble, VisionMambaSurv
    from voxsurv.maps.normalise import MapStatistics
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


def phantom_manifest(path: Path, repeats: int) -> Path:
    """The IBSI phantom DICOM ``repeats`` times under different ids (predicted one after the other)."""
    import pandas as pd

    dicom = DATA / "ibsi" / "ct_phantom" / "dicom"
    rtstruct = next((dicom / "mask").glob("*.dcm"))
    pd.DataFrame([{"patient_id": f"phantom-{i + 1}", "ct_dir": str(dicom / "image"), "rtstruct": str(rtstruct),
                   "roi": "GTV"} for i in range(repeats)]).to_csv(path, index=False)
    return path


def cohort_manifest(path: Path, n: int) -> Path:
    import pandas as pd

    full = pd.read_csv(DATA / "lung_crops" / "manifest.csv")
    rows = full[full.cohort == "lung1"].head(n).copy()
    for col in ("image", "mask"):
        rows[col] = [str(DATA / "lung_crops" / p) for p in rows[col]]
    rows[["patient_id", "image", "mask", "time_days", "event"]].to_csv(path, index=False)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", required=True, help="write the results here")
    p.add_argument("--bundle", default=str(REPO / "bundles" / "inference"), help="inference bundle folder")
    p.add_argument("--timing-bundle", action="store_true", help="time a random-weight bundle of the given size")
    p.add_argument("--members", type=int, default=15, help="ensemble members of the timing bundle (study: 5 folds x 3 seeds)")
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--maps", type=int, default=16, help="maps of the timing bundle")
    p.add_argument("--pooling", default="mean", choices=("mean", "attention"))
    p.add_argument("--anchored", action="store_true")
    p.add_argument("--patients", type=int, default=20, help="lung_crops patients for per_patient_s [20]")
    p.add_argument("--repeats", type=int, default=3, help="warm phantom predictions in one process [3]")
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads of the predict processes [1]")
    p.add_argument("--workers", type=int, default=2, help="predict --workers for the cohort [2]")
    p.add_argument("--full-monai-import", action="store_true",
                   help="import MONAI with every optional package it finds (before voxsurv.inference.monai_import), "
                        "for before/after comparisons")
    args = p.parse_args()
    load_before = os.getloadavg()
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           **({"VOXSURV_BENCH_FULL_MONAI": "1"} if args.full_monai_import else {})}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        tmp = Path(tmp)
        bundle = (timing_bundle(tmp, args.members, args.img_size, args.embed_dim, args.depth, args.maps, args.pooling,
                                args.anchored) if args.timing_bundle else Path(args.bundle))
        dicom = DATA / "ibsi" / "ct_phantom" / "dicom"
        rtstruct = next((dicom / "mask").glob("*.dcm"))
        cold = run_child(["predict", "--bundle", str(bundle), "--ct-dir", str(dicom / "image"), "--rtstruct",
                          str(rtstruct), "--roi", "GTV", "--out", str(tmp / "cold")], env, tmp)
        phases = phase_seconds(cold)
        rep = cold["reports"][0]
        # the risk is known after the network (+ Grad-CAM, computed in the same pass)
        t_risk = rep["start"] + rep["timing_s"].get("network", rep["timing_s"].get("network_and_gradcam", 0.0))
        cohort = run_child(["predict", "--bundle", str(bundle), "--manifest",
                            str(cohort_manifest(tmp / "cohort.csv", args.patients)), "--out", str(tmp / "cohort"),
                            "--workers", str(args.workers)], env, tmp)
        done = sorted(r["done"] for r in cohort["reports"])
        gaps = [b - a for a, b in zip(done, done[1:])]
        warm = run_child(["predict", "--bundle", str(bundle), "--manifest",
                          str(phantom_manifest(tmp / "phantom.csv", args.repeats + 1)), "--out", str(tmp / "warm"),
                          "--workers", "0"], env, tmp)
        warm_done = sorted(r["done"] for r in warm["reports"])
        warm_s = [round(b - a, 3) for a, b in zip(warm_done, warm_done[1:])]  # the first waits for the bundle
        result = {
            "cold_start_s": round(t_risk - cold["t"]["process_start"], 3),
            "cold_start_to_report_s": round(rep["done"] - cold["t"]["process_start"], 3),
            "cold_start_process_wall_s": round(cold["wall_s"], 3),
            "per_patient_s": round(statistics.median(gaps), 3) if gaps else None,
            "per_patient_min_max_s": [round(min(gaps), 3), round(max(gaps), 3)] if gaps else None,
            "cohort_patients_predicted": len(cohort["reports"]), "cohort_wall_s": round(cohort["wall_s"], 3),
            "phantom_warm_s": {"median": round(statistics.median(warm_s), 3) if warm_s else None, "each": warm_s,
                               "timing_s_last": warm["reports"][-1]["timing_s"] if warm["reports"] else None},
            "peak_rss_mb": round(max(cold["rss_self_kb"], cold["rss_children_kb"], cohort["rss_self_kb"],
                                     cohort["rss_children_kb"], warm["rss_self_kb"], warm["rss_children_kb"]) / 1024.0,
                                 1),
            "peak_rss_mb_cold_start": round(max(cold["rss_self_kb"], cold["rss_children_kb"]) / 1024.0, 1),
            "profile_cold_start_s": phases,
            "profile_cold_start_cpu_s": phase_cpu_seconds(cold),
            "settings": {"threads": args.threads, "workers": args.workers, "patients": args.patients,
                     "monai_import": "full (every optional package)" if args.full_monai_import else
                     "as voxsurv predict imports it (voxsurv.inference.monai_import)",
                         "repeats": args.repeats,
                         "bundle": (f"random-weight timing bundle: {args.members} member(s), img {args.img_size}, embed "
                                    f"{args.embed_dim}, depth {args.depth}, {args.maps} maps, {args.pooling} pooling"
                                    + (", anchored" if args.anchored else "")) if args.timing_bundle else str(bundle),
                         "cold_start_input": "IBSI CT phantom DICOM (60 slices) + RTSTRUCT, ROI GTV",
                         "cohort_input": f"first {args.patients} lung1 patients of lung_crops"},
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
            "cpu_count": os.cpu_count(),
            "measured_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
