"""Cohort extraction of voxel maps: every patient once through the preprocessing chain with the
maps cache, resumable, in parallel, bad patients recorded and skipped.

``run_cohort(records, reader, out_dir)`` calls ``reader(record)`` for every record, where the
reader is the per-patient chain (``custom_transforms.pipeline.volume_preprocessing(...,
maps_cache_dir=...)``, optionally behind a file check: ``RecordReader``). So the cached maps lie
on exactly the grid the bundles use (MONAI Spacingd), and a bundle run with the same cache reads
them instead of computing them. The runner imports neither the chain nor the manifest reader: it
gets records and a reader (the layers point down: voxsurv.commands builds both).

A killed run resumes: finished maps are in the cache (each file written atomically), so the next
run reads them and computes only what is missing. Output in ``out_dir``:
    maps_index.csv     patient_id, status (computed | cached), maps_cache_key, n_maps, n_computed,
                       log_volume_ml, mean_hu, seconds, cpu_seconds
    exclusions.csv     patient_id, problem (every patient that could not be processed)

(The old SimpleITK-resampling extractor below, ``CohortJob``/``extract_cohort``/
``load_patient_maps``, stays only until the study has moved to the cache; do not use it in new
code.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voxelmaps.features import resolve_features
from voxelmaps.settings import MapSettings
from voxsurv.errors import InputError, input_error_in

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("patient_id", "status", "maps_cache_key", "n_maps", "n_computed", "log_volume_ml", "mean_hu",
                 "seconds", "cpu_seconds")


class RecordReader:
    """One cohort record -> the per-patient chain's output, with an optional file check first.

    ``RecordReader(volume_preprocessing(...), check=voxsurv.ingest.volumes.check_image_mask)``:
    the check (called as ``check(image_path, mask_path, patient_id)``) turns a missing, truncated
    or mis-registered file into an InputError naming patient and file before MONAI reads it.
    Picklable when ``preprocess`` and ``check`` are (MONAI Compose and module functions are).

    Args:
        preprocess: callable on ``{"image": path, "mask": path, "patient_id": id}``.
        check: optional file check, see above.
        keys: record keys copied into the sample (besides patient_id).
    """

    def __init__(self, preprocess: Callable[[dict], dict], check: Callable | None = None,
                 keys: Sequence[str] = ("image", "mask")) -> None:
        self.preprocess = preprocess
        self.check = check
        self.keys = tuple(keys)

    def __call__(self, record: Mapping) -> dict:
        pid = str(record["patient_id"])
        if self.check is not None:
            self.check(str(record[self.keys[0]]), str(record[self.keys[1]]), pid)
        return self.preprocess({**{k: str(record[k]) for k in self.keys}, "patient_id": pid})


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_record(record: Mapping, reader: Callable[[Mapping], Mapping], threads: int | None = 1) -> dict:
    """One index row: the reader's output summarised (status computed/cached, cache key, descriptors)
    or, for bad input or a crash, an exclusion row (status excluded, problem)."""
    pid = str(record["patient_id"])
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        with _torch_threads(threads):
            out = reader(record)
    except Exception as exc:  # bad input or a crash in one patient must not stop the cohort
        err = input_error_in(exc)
        if err is not None:
            return {"patient_id": pid, "status": "excluded", "problem": str(err.with_patient(pid))}
        log.exception("patient %s failed", pid)
        return {"patient_id": pid, "status": "excluded", "problem": f"patient {pid}: {type(exc).__name__}: {exc}"}
    maps = out.get("maps")
    meta = getattr(maps, "meta", {}) or {}
    computed = list(meta.get("maps_computed") or [])
    desc = out.get("descriptors")
    desc = [float(v) for v in desc] if desc is not None else [float("nan")] * 2
    return {"patient_id": pid, "status": "computed" if computed else "cached",
            "maps_cache_key": meta.get("maps_cache_key"), "n_maps": 0 if maps is None else int(maps.shape[0]),
            "n_computed": len(computed), "log_volume_ml": desc[0], "mean_hu": desc[1],
            "seconds": round(time.perf_counter() - t0, 3), "cpu_seconds": round(time.process_time() - c0, 3)}


def _future_row(future, record: Mapping) -> dict:
    """A finished future's row; a worker that died (killed, out of memory) excludes its patient."""
    try:
        return future.result()
    except Exception as exc:
        pid = str(record["patient_id"])
        log.error("patient %s: worker failed: %s", pid, exc)
        return {"patient_id": pid, "status": "excluded",
                "problem": f"patient {pid}: worker failed ({type(exc).__name__}: {exc})"}


def run_cohort(records: Iterable[Mapping], reader: Callable[[Mapping], Mapping], out_dir: str | os.PathLike,
               workers: int = 1, threads: int | None = 1, dask_scheduler: str | None = None,
               progress: bool = True) -> list[dict]:
    """Run ``reader`` over every record; returns one row per patient (input order) and writes
    maps_index.csv and exclusions.csv in ``out_dir``.

    Args:
        records: dicts with ``patient_id`` and whatever the reader needs (image, mask paths).
        reader: per-patient callable, e.g. ``RecordReader(volume_preprocessing(features,
            maps_cache_dir=...))``; its output's ``maps`` meta gives the cache key and what was
            computed, ``descriptors`` the tumour descriptors.
        out_dir: folder of the two tables (the maps cache is wherever the reader puts it).
        workers: processes (spawned); 1 = in this process.
        threads: torch intra-op threads per patient (1: a cohort parallelises over patients; on a
            shared 2-core machine 2 threads made one patient 4x slower, docs/maps.md).
        dask_scheduler: address of an existing Dask scheduler ("tcp://host:8786"): patients go to
            that cluster instead of local processes.
        progress: log one line per patient.
    """
    records = list(records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(records)
    rows: list[dict] = []

    def done(row: dict) -> None:
        rows.append(row)
        if progress:
            extra = row.get("problem") or f"{row['status']} in {row.get('seconds', 0):.1f} s"
            log.info("maps %d/%d: %s %s", len(rows), n, row["patient_id"], extra)

    if dask_scheduler:
        from distributed import Client, as_completed as dask_completed

        with Client(dask_scheduler) as client:
            futures = {client.submit(read_record, r, reader, threads, key=f"maps-{r['patient_id']}-{i}",
                                     pure=False): r for i, r in enumerate(records)}
            for fut in dask_completed(list(futures)):
                done(_future_row(fut, futures[fut]))
    elif workers <= 1:
        for r in records:
            done(read_record(r, reader, threads))
    else:
        import multiprocessing as mp

        # spawn, not fork: forking a process whose torch/OpenMP threads are running can hang.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(read_record, r, reader, threads): r for r in records}
            for fut in as_completed(futures):
                done(_future_row(fut, futures[fut]))
    order = {str(r["patient_id"]): i for i, r in enumerate(records)}
    rows.sort(key=lambda r: order.get(r["patient_id"], n))
    write_cohort_tables(out, rows)
    return rows


def write_cohort_tables(out: Path, rows: Sequence[dict]) -> None:
    """maps_index.csv (patients with maps) and exclusions.csv (the others), each written atomically."""
    import pandas as pd

    ok = [r for r in rows if r["status"] != "excluded"]
    bad = [{"patient_id": r["patient_id"], "problem": r["problem"]} for r in rows if r["status"] == "excluded"]
    for name, df in (("maps_index.csv", pd.DataFrame(ok, columns=list(INDEX_COLUMNS))),
                     ("exclusions.csv", pd.DataFrame(bad, columns=["patient_id", "problem"]))):
        _atomic_write(out / name, lambda f, df=df: f.write(df.to_csv(index=False).encode()))


# ---------------------------------------------------------------------------------------------
# LEGACY (SimpleITK resampling, one .npz per feature list): kept until voxsurv.study moves to the
# maps cache above; nothing new may use it.
# ---------------------------------------------------------------------------------------------

#: The paper's map grid, (x, y, z) mm.
DEFAULT_SPACING_XYZ = (1.0, 1.0, 5.0)


@dataclass
class CohortJob:
    """What to compute for every patient (picklable: it travels to worker processes)."""

    out_dir: str
    backend: str = "torch"
    features: list[str] = field(default_factory=lambda: resolve_features(None))
    settings: MapSettings = field(default_factory=MapSettings)
    spacing_xyz: tuple[float, float, float] | None = DEFAULT_SPACING_XYZ
    store_dtype: str = "float32"
    device: str | None = None
    #: torch intra-op threads per patient. 1 by default: a cohort parallelises over patients
    #: (--workers); on a shared 2-core machine 2 threads made one patient 4x slower (docs/maps.md).
    threads: int | None = 1

    def fingerprint(self) -> dict:
        return {"backend": self.backend, "features": list(self.features),
                "settings": self.settings.stable_hash(),
                "spacing_xyz": None if self.spacing_xyz is None else list(self.spacing_xyz),
                "store_dtype": self.store_dtype}


# ---------------------------------------------------------------------------------------------
# one patient
# ---------------------------------------------------------------------------------------------
def resample_to_spacing(image, mask, spacing_xyz):
    """Resample SimpleITK image (linear) and mask (nearest) to `spacing_xyz` mm: same origin and
    direction, size = round((n - 1) x spacing / new spacing + 1) and edge values repeated beyond
    the last voxel, i.e. the grid of MONAI's Spacing(d) (custom_transforms.ResampleToSpacingd), so
    cached maps lie on the grid the bundles' transforms produce."""
    import SimpleITK as sitk

    old_sp = np.array(image.GetSpacing())
    new_sp = np.array(spacing_xyz, dtype=float)
    if np.allclose(old_sp, new_sp, rtol=1e-6):
        return image, mask
    size = [max(1, int(np.round((n - 1) * o / w + 1.0)))
            for n, o, w in zip(image.GetSize(), old_sp, new_sp)]

    def go(img, interp, pixel_type):
        f = sitk.ResampleImageFilter()
        f.SetOutputSpacing(tuple(new_sp))
        f.SetSize(size)
        f.SetOutputOrigin(img.GetOrigin())
        f.SetOutputDirection(img.GetDirection())
        f.SetInterpolator(interp)
        f.SetDefaultPixelValue(0)
        f.SetUseNearestNeighborExtrapolator(True)  # MONAI's padding_mode='border'
        f.SetOutputPixelType(pixel_type)
        return f.Execute(img)

    return (go(image, sitk.sitkLinear, sitk.sitkFloat32),
            go(mask, sitk.sitkNearestNeighbor, sitk.sitkUInt8))


def _hash_volume(h, img) -> None:
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(img)
    h.update(str((arr.dtype.str, arr.shape, img.GetSpacing(), img.GetOrigin(),
                  img.GetDirection())).encode())
    h.update(np.ascontiguousarray(arr).tobytes())


def cache_key(image, mask, job: CohortJob) -> str:
    """Content address: sha256 of image + mask voxels and geometry and the job's fingerprint."""
    h = hashlib.sha256()
    _hash_volume(h, image)
    mask_bin = (mask > 0)  # label values other than "inside" do not change the maps
    _hash_volume(h, mask_bin)
    h.update(json.dumps(job.fingerprint(), sort_keys=True).encode())
    return h.hexdigest()


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def roi_bbox(roi: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop), ...] per axis of the voxels > 0."""
    idx = np.nonzero(roi)
    return [(int(i.min()), int(i.max()) + 1) for i in idx]


def patient_files(out_dir: str | Path, key: str) -> tuple[Path, Path]:
    d = Path(out_dir) / "maps"
    return d / f"{key}.npz", d / f"{key}.json"


def compute_patient(patient_id: str, image_path: str, mask_path: str, job: CohortJob) -> dict:
    """Maps of one patient into the cache; returns a row for the index. Raises InputError for
    bad input (the caller records it as an exclusion)."""
    import SimpleITK as sitk

    from voxelmaps.api import compute_maps
    from voxsurv.ingest.volumes import check_image_mask

    t0, c0 = time.perf_counter(), time.process_time()
    image, mask = check_image_mask(image_path, mask_path, patient_id)
    key = cache_key(image, mask, job)
    npz_path, json_path = patient_files(job.out_dir, key)
    row = {"patient_id": patient_id, "key": key, "maps_file": str(npz_path),
           "sidecar": str(json_path)}
    if json_path.is_file() and npz_path.is_file():
        return {**row, "status": "cached", "seconds": 0.0, "cpu_seconds": 0.0}

    if job.spacing_xyz is not None:
        image, mask = resample_to_spacing(image, mask, job.spacing_xyz)
    img = sitk.GetArrayFromImage(image).astype(np.float32)
    roi = sitk.GetArrayFromImage(mask) > 0
    if not roi.any():
        raise InputError(f"mask is empty after resampling to {job.spacing_xyz} mm "
                         "(tumour smaller than one voxel of the map grid)", patient_id, mask_path,
                         "check the contour; this patient cannot have maps at this spacing")
    spacing_zyx = tuple(float(s) for s in image.GetSpacing()[::-1])
    try:
        maps, names = compute_maps(img, roi, spacing_zyx, job.features, backend=job.backend,
                                   settings=job.settings, device=job.device)
    except InputError as exc:
        raise exc.with_patient(patient_id)
    bbox = roi_bbox(roi)
    crop = tuple(slice(a, b) for a, b in bbox)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(npz_path, lambda f: np.savez_compressed(
        f, maps=maps[(slice(None),) + crop].astype(job.store_dtype),
        image=img[crop], mask=roi[crop].astype(np.uint8)))
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0  # all threads of this process; robust to a busy machine
    sidecar = {
        "patient_id": patient_id, "key": key, "names": list(names), "axes": "F,z,y,x",
        "backend": job.backend, "settings": job.settings.to_dict(),
        "spacing_zyx_mm": list(spacing_zyx), "grid_shape_zyx": list(roi.shape),
        "bbox_zyx": [list(b) for b in bbox], "origin_xyz_mm": list(image.GetOrigin()),
        "direction": list(image.GetDirection()), "roi_voxels": int(roi.sum()),
        "source": {"image": str(image_path), "mask": str(mask_path)},
        "store_dtype": job.store_dtype, "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
    }
    _atomic_write(json_path, lambda f: f.write(json.dumps(sidecar, indent=1).encode()))
    return {**row, "status": "computed", "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu_seconds, 3)}


def load_patient_maps(path: str | Path, full_grid: bool = False) -> dict:
    """Read one cached patient (the .npz or .json path). Returns the sidecar dict plus `maps`,
    `image`, `mask` arrays: cropped to the ROI box, or embedded in the whole resampled grid
    (`full_grid=True`; maps NaN, image 0, mask 0 outside the box)."""
    path = Path(path)
    npz_path, json_path = path.with_suffix(".npz"), path.with_suffix(".json")
    with open(json_path) as f:
        out = json.load(f)
    with np.load(npz_path) as z:
        arrays = {k: z[k] for k in ("maps", "image", "mask")}
    if full_grid:
        shape = tuple(out["grid_shape_zyx"])
        crop = tuple(slice(a, b) for a, b in out["bbox_zyx"])
        maps = np.full((arrays["maps"].shape[0],) + shape, np.nan, arrays["maps"].dtype)
        maps[(slice(None),) + crop] = arrays["maps"]
        image = np.zeros(shape, arrays["image"].dtype)
        image[crop] = arrays["image"]
        mask = np.zeros(shape, np.uint8)
        mask[crop] = arrays["mask"]
        arrays = {"maps": maps, "image": image, "mask": mask}
    out.update(arrays)
    return out


def _job_threads(job: CohortJob):
    return _torch_threads(job.threads if job.backend == "torch" else None)


def _process(record: dict, job: CohortJob) -> dict:
    """compute_patient that turns bad input into a row instead of an exception."""
    pid = str(record["patient_id"])
    try:
        with _job_threads(job):
            return compute_patient(pid, str(record["image"]), str(record["mask"]), job)
    except InputError as exc:
        exc = exc.with_patient(pid)
        return {"patient_id": pid, "status": "excluded", "problem": str(exc)}
    except Exception as exc:  # a crash in one patient must not stop the cohort
        log.exception("patient %s failed", pid)
        return {"patient_id": pid, "status": "excluded",
                "problem": f"patient {pid}: {type(exc).__name__}: {exc}"}


def _result(future, record: dict) -> dict:
    """A finished future's row; a worker that died (killed, out of memory) excludes its patient
    instead of stopping the cohort."""
    try:
        return future.result()
    except Exception as exc:
        pid = str(record["patient_id"])
        log.error("patient %s: worker failed: %s", pid, exc)
        return {"patient_id": pid, "status": "excluded",
                "problem": f"patient {pid}: worker failed ({type(exc).__name__}: {exc})"}


# ---------------------------------------------------------------------------------------------
# a cohort
# ---------------------------------------------------------------------------------------------
def read_cohort(manifest: str | Path) -> list[dict]:
    """Manifest rows (patient_id, image, mask as absolute paths). Uses voxsurv.manifest's loader
    without the file-existence check: a missing file becomes that patient's exclusion."""
    from voxsurv.manifest import load_manifest

    df = load_manifest(manifest, check_files=False)
    return df[["patient_id", "image", "mask"]].to_dict("records")


def extract_cohort(records: Iterable[dict], job: CohortJob, workers: int = 1,
                   dask_scheduler: str | None = None, progress: bool = True) -> list[dict]:
    """Maps for every record; returns one row per patient and writes maps_index.csv and
    exclusions.csv in `job.out_dir`.

    Args:
        records: dicts with patient_id, image, mask (paths).
        workers: processes (concurrent.futures); 1 = in this process.
        dask_scheduler: address of an existing Dask scheduler ("tcp://host:8786"); patients are
            then submitted to that cluster instead of local processes.
    """
    records = list(records)
    out = Path(job.out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    n = len(records)
    rows: list[dict] = []

    def done(row: dict) -> None:
        rows.append(row)
        if progress:
            extra = row.get("problem") or f"{row['status']} in {row.get('seconds', 0):.1f} s"
            log.info("maps %d/%d: %s %s", len(rows), n, row["patient_id"], extra)

    if dask_scheduler:
        from distributed import Client, as_completed as dask_completed

        with Client(dask_scheduler) as client:
            futures = {client.submit(_process, r, job, key=f"maps-{r['patient_id']}-{i}",
                                     pure=False): r for i, r in enumerate(records)}
            for fut in dask_completed(list(futures)):
                done(_result(fut, futures[fut]))
    elif workers <= 1:
        for r in records:
            done(_process(r, job))
    else:
        import multiprocessing as mp

        # spawn, not fork: forking a process whose torch/OpenMP threads are running can hang.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_process, r, job): r for r in records}
            for fut in as_completed(futures):
                done(_result(fut, futures[fut]))

    order = {r["patient_id"]: i for i, r in enumerate(records)}
    rows.sort(key=lambda r: order.get(r["patient_id"], n))
    write_tables(out, rows)
    return rows


def write_tables(out: Path, rows: Sequence[dict]) -> None:
    import pandas as pd

    ok = [r for r in rows if r["status"] != "excluded"]
    bad = [{"patient_id": r["patient_id"], "problem": r["problem"]} for r in rows
           if r["status"] == "excluded"]
    index = pd.DataFrame(ok, columns=["patient_id", "status", "key", "maps_file", "sidecar",
                                      "seconds", "cpu_seconds"])
    excl = pd.DataFrame(bad, columns=["patient_id", "problem"])
    for name, df in (("maps_index.csv", index), ("exclusions.csv", excl)):
        _atomic_write(out / name, lambda f, df=df: f.write(df.to_csv(index=False).encode()))
