"""Benchmark voxel-level radiomics maps: PyRadiomics vs the torch engine on the IBSI CT phantom.

The IBSI CT phantom tumour is resampled to 1 x 1 x 5 mm (SimpleITK; image linear, mask nearest
neighbour: 73,684 voxels) and clipped to [-95, 155] HU; all 90 maps (or --features), radius 1,
bin width 25, force2D, masked kernel, on the ROI box + kernel radius (--full-grid: the whole
image grid, which mostly times writing ~1 GB of NaN). Every engine runs in its own spawned process so that its
peak memory is its own; seconds are the best of --repeats wall-clock runs (CPU seconds of the same
run are reported too, since a shared machine inflates wall time). Agreement: for every map,
max |torch - PyRadiomics| / (max - min of the PyRadiomics map over the ROI); NaN positions must
be identical.

    python scripts/bench_maps.py --json bench_maps.json
    python scripts/bench_maps.py --json out.json --features glcm,glrlm --repeats 5
    # for a machine without SimpleITK/PyRadiomics (scripts/device_check_maps.sh):
    python scripts/bench_maps.py --export-phantom .device_data/maps/phantom_1x1x5.npz
    python scripts/bench_maps.py --json out.json --phantom-npz .device_data/maps/phantom_1x1x5.npz \
        --no-pyradiomics --pyradiomics-seconds 33.1

Engines: pyradiomics (the reference, 1 run); torch on CPU with 1 thread and with all threads, in
float64 and float32; torch on CUDA (float64, float32) when a GPU is present; flash-radiomics is
only detected (no voxel-map call is wired for it here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHANTOM = REPO.parent / "shared" / "data" / "ibsi" / "ct_phantom" / "nifti"
WINDOW = (-95.0, 155.0)
SPACING_XYZ = (1.0, 1.0, 5.0)


def load_phantom(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """IBSI CT phantom image + tumour mask resampled to 1 x 1 x 5 mm, clipped; (z, y, x)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(root / "image" / "phantom.nii.gz"))
    mask = sitk.ReadImage(str(root / "mask" / "mask.nii.gz"))

    def resample(img, interpolator):
        size = [int(round(n * s / t)) for n, s, t in zip(img.GetSize(), img.GetSpacing(), SPACING_XYZ)]
        return sitk.Resample(img, size, sitk.Transform(), interpolator, img.GetOrigin(), SPACING_XYZ,
                             img.GetDirection(), 0, img.GetPixelID())

    arr = sitk.GetArrayFromImage(resample(image, sitk.sitkLinear)).astype(np.float64)
    roi = sitk.GetArrayFromImage(resample(mask, sitk.sitkNearestNeighbor)) > 0
    return np.clip(arr, *WINDOW), roi, SPACING_XYZ[::-1]


def export_phantom(root: Path, path: Path) -> None:
    """Save the resampled, clipped phantom (float32 values are exact: the resampler's output)."""
    image, mask, spacing = load_phantom(root)
    assert np.array_equal(image.astype(np.float32).astype(np.float64), image)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, image=image.astype(np.float32), mask=mask, spacing=np.array(spacing))


def crop_to_roi(image: np.ndarray, mask: np.ndarray, radius: int = 1):
    """The ROI's bounding box, widened in-plane by the kernel radius (clamped to the image)."""
    idx = np.nonzero(mask)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    for axis in (1, 2):
        lo[axis] = max(lo[axis] - radius, 0)
        hi[axis] = min(hi[axis] + radius, mask.shape[axis])
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    return image[box], mask[box]


def load_phantom_npz(path: Path):
    data = np.load(path)
    return data["image"].astype(np.float64), data["mask"].astype(bool), tuple(data["spacing"])


def _peak_rss_mb() -> float:
    """Peak resident memory of this process's address space.

    Linux's ru_maxrss survives exec, so a spawned child would report its parent's peak; VmHWM
    starts afresh with the child's own address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _run_engine(spec: dict, image, mask, spacing, names, out_path, queue) -> None:
    """Child process: time one engine configuration, save its maps, report seconds and memory."""
    try:
        if spec["engine"] == "pyradiomics":
            from voxsurv.maps.pyradiomics_backend import compute_pyradiomics_maps

            def call():
                return compute_pyradiomics_maps(image, mask, spacing, names)[0]
        else:
            import torch

            from voxsurv.maps.torch_engine import compute_torch_maps

            torch.set_num_threads(spec["threads"])
            dtype = getattr(torch, spec["dtype"])

            def call():
                maps = compute_torch_maps(image, mask, spacing, names, dtype=dtype,
                                          device=spec["device"])[0]
                if spec["device"] != "cpu":
                    torch.cuda.synchronize()
                return maps
        best_wall, best_cpu, maps = float("inf"), float("inf"), None
        for _ in range(spec["repeats"]):
            maps = None  # drop the previous run's ~1 GB of maps before the next one
            wall, cpu = time.perf_counter(), time.process_time()
            maps = call()
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        np.save(out_path, maps)  # no float64 copy: the maps are ~1 GB at 90 x full volume
        queue.put({"seconds": best_wall, "cpu_seconds": best_cpu, "peak_rss_mb": _peak_rss_mb()})
    except Exception as exc:  # reported, not fatal: the other engines still run
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def run_engine(spec, image, mask, spacing, names, workdir) -> tuple[dict, np.ndarray | None]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    out_path = Path(workdir) / f"{spec['name']}.npy"
    proc = ctx.Process(target=_run_engine, args=(spec, image, mask, spacing, names, out_path, queue))
    proc.start()
    result = queue.get()
    proc.join()
    maps = np.load(out_path) if out_path.exists() else None
    return result, maps


def agreement(maps: np.ndarray, ref: np.ndarray, names: list[str], mask: np.ndarray) -> dict:
    """Worst map by max |diff| / range over the ROI, and NaN-position mismatches."""
    worst, worst_name, nan_mismatch = 0.0, None, 0
    per_map = {}
    for idx, name in enumerate(names):
        a, b = maps[idx][mask], ref[idx][mask]
        nan_mismatch += int((np.isnan(a) != np.isnan(b)).sum())
        fin = ~np.isnan(a) & ~np.isnan(b)
        if not fin.any():
            continue
        spread = float(b[fin].max() - b[fin].min())
        diff = float(np.abs(a[fin] - b[fin]).max())
        rel = diff / spread if spread > 0 else diff
        per_map[name] = rel
        if rel >= worst:
            worst, worst_name = rel, name
    return {"max_diff_over_range": worst, "worst_map": worst_name, "nan_mismatch": nan_mismatch,
            "per_map": per_map}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="where to write the results (required unless --export-phantom)")
    parser.add_argument("--phantom", type=Path, default=DEFAULT_PHANTOM,
                        help="IBSI CT phantom NIfTI folder (image/phantom.nii.gz, mask/mask.nii.gz)")
    parser.add_argument("--features", default=None,
                        help="comma-separated classes or names (default: all 90)")
    parser.add_argument("--repeats", type=int, default=3, help="torch runs per configuration")
    parser.add_argument("--no-pyradiomics", action="store_true",
                        help="skip the reference (no speedup or agreement then)")
    parser.add_argument("--no-float32", action="store_true")
    parser.add_argument("--full-grid", action="store_true",
                        help="maps on the whole phantom grid (36 x 196 x 199: ~1 GB of float64 "
                             "output, mostly NaN) instead of the ROI box + kernel radius")
    parser.add_argument("--phantom-npz", type=Path, default=None,
                        help="read the resampled phantom from --export-phantom's file instead")
    parser.add_argument("--export-phantom", type=Path, default=None,
                        help="write the resampled, clipped phantom to this .npz and stop")
    parser.add_argument("--pyradiomics-seconds", type=float, default=None,
                        help="with --no-pyradiomics: PyRadiomics time measured elsewhere, for "
                             "speedups reported as 'speedup_vs_pyradiomics_elsewhere'")
    args = parser.parse_args(argv)
    if args.export_phantom:
        export_phantom(args.phantom, args.export_phantom)
        print(f"wrote {args.export_phantom}", file=sys.stderr)
        return 0
    if args.json is None:
        parser.error("--json is required")

    import torch

    from voxsurv.maps.features import resolve_features

    names = resolve_features(args.features)
    if args.phantom_npz:
        image, mask, spacing = load_phantom_npz(args.phantom_npz)
    else:
        image, mask, spacing = load_phantom(args.phantom)
    full_shape = image.shape
    if not args.full_grid:
        # Both engines get the ROI's bounding box plus the kernel radius in-plane (PyRadiomics
        # crops the same way inside): the maps inside the ROI are identical, and the output is
        # 16 x 99 x 99 instead of the whole field of view.
        image, mask = crop_to_roi(image, mask, radius=1)
    n_threads = os.cpu_count() or 1
    specs = []
    if not args.no_pyradiomics:
        specs.append({"name": "pyradiomics", "engine": "pyradiomics", "repeats": 1})
    dtypes = ["float64"] + ([] if args.no_float32 else ["float32"])
    for dtype in dtypes:
        specs.append({"name": f"torch_cpu_1thread_{dtype}", "engine": "torch", "device": "cpu",
                      "threads": 1, "dtype": dtype, "repeats": args.repeats})
        specs.append({"name": f"torch_cpu_{n_threads}threads_{dtype}", "engine": "torch",
                      "device": "cpu", "threads": n_threads, "dtype": dtype,
                      "repeats": args.repeats})
    if torch.cuda.is_available():
        for dtype in dtypes:
            specs.append({"name": f"torch_cuda_{dtype}", "engine": "torch", "device": "cuda",
                          "threads": 1, "dtype": dtype, "repeats": args.repeats})

    report = {
        "voxels": int(mask.sum()), "features": len(names), "feature_names": names,
        "image_shape_zyx": list(full_shape), "maps_shape_zyx": list(image.shape),
        "spacing_zyx_mm": list(spacing),
        "settings": {"radius": 1, "bin_width": 25.0, "window_hu": list(WINDOW), "force2D": True,
                     "masked_kernel": True},
        "machine": {"cpu_count": n_threads, "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "load_average_start": list(os.getloadavg())},
        "seconds": {}, "cpu_seconds": {}, "peak_rss_mb": {}, "errors": {},
        "speedup_vs_pyradiomics": {}, "agreement": {},
        "flash_radiomics": ("installed; not timed (no voxel-map call wired here)"
                            if importlib.util.find_spec("flash_radiomics") else "not installed"),
    }
    reference = torch_reference = None
    with tempfile.TemporaryDirectory() as workdir:
        for spec in specs:
            print(f"running {spec['name']} ...", file=sys.stderr, flush=True)
            result, maps = run_engine(spec, image, mask, spacing, names, workdir)
            if "error" in result:
                report["errors"][spec["name"]] = result["error"]
                print(f"  failed: {result['error']}", file=sys.stderr)
                continue
            report["seconds"][spec["name"]] = round(result["seconds"], 4)
            report["cpu_seconds"][spec["name"]] = round(result["cpu_seconds"], 4)
            report["peak_rss_mb"][spec["name"]] = round(result["peak_rss_mb"], 1)
            print(f"  {result['seconds']:.3f} s wall, {result['cpu_seconds']:.3f} s CPU, "
                  f"peak {result['peak_rss_mb']:.0f} MB", file=sys.stderr)
            if spec["engine"] == "pyradiomics":
                reference = maps
            elif reference is not None:
                report["agreement"][spec["name"]] = agreement(maps, reference, names, mask)
            elif spec["name"] == "torch_cpu_1thread_float64":
                # No PyRadiomics here: compare the other configurations (CUDA, float32) with this.
                torch_reference = maps
            if reference is None and spec["name"] != "torch_cpu_1thread_float64" and torch_reference is not None:
                report.setdefault("agreement_vs_torch_cpu_float64", {})[spec["name"]] = {
                    k: v for k, v in agreement(maps, torch_reference, names, mask).items()
                    if k != "per_map"}
    pyr = report["seconds"].get("pyradiomics")
    if pyr:
        report["speedup_vs_pyradiomics"] = {k: round(pyr / v, 1) for k, v in report["seconds"].items()
                                            if k != "pyradiomics"}
    if not pyr and args.pyradiomics_seconds:
        report["pyradiomics_seconds_elsewhere"] = args.pyradiomics_seconds
        report["speedup_vs_pyradiomics_elsewhere"] = {
            k: round(args.pyradiomics_seconds / v, 1) for k, v in report["seconds"].items()}
    for suffix, key in (("float64", "max_diff_over_range"), ("float32", "max_diff_over_range_float32")):
        runs = {k: a for k, a in report["agreement"].items() if k.endswith(suffix)}
        if runs:
            worst = max(runs.items(), key=lambda kv: kv[1]["max_diff_over_range"])
            report[key] = worst[1]["max_diff_over_range"]
            report["worst_map" if suffix == "float64" else "worst_map_float32"] = \
                f"{worst[0]}: {worst[1]['worst_map']}"
    if report["agreement"]:
        report["nan_mismatch"] = sum(a["nan_mismatch"] for a in report["agreement"].values())
    report["machine"]["load_average_end"] = list(os.getloadavg())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    summary = {k: report[k] for k in ("voxels", "features", "seconds", "cpu_seconds",
                                      "speedup_vs_pyradiomics", "speedup_vs_pyradiomics_elsewhere",
                                      "peak_rss_mb", "agreement_vs_torch_cpu_float64")
               if k in report}
    for key in ("max_diff_over_range", "worst_map", "max_diff_over_range_float32",
                "worst_map_float32", "nan_mismatch"):
        summary[key] = report.get(key)
    print(json.dumps(summary, indent=1))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
