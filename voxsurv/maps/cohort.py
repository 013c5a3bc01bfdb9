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

"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from voxsurv.core.errors import input_error_in

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("patient_id", "status", "maps_cache_key", "n_maps", "n_computed", "log_volume_ml", "mean_hu",
                 "seconds", "cpu_seconds")


class RecordReader:
    """One cohort record -> the per-patient chain's output, with an optional file check first.

    ``RecordReader(volume_preprocessing(...), check=voxsurv.data.ingest.volumes.check_image_mask)``:
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
