"""Manifest -> one training sample per PATIENT: the tumour-slice stack, descriptors and label.

The bundles' data flow, in order:
1. roles: the manifest (voxsurv.data.manifest.load_manifest), filtered to a cohort, gives the patients
   of each role from its `split` column: "train" = rows with split == `train_split`; "val" = a
   cross-validation fold of those (`fold` = 0..n_folds-1, stratified on event, seeded) or, with
   `fold` = None, the rows with split == `val_split`; "test" = rows with split == `test_split`.
   A manifest without a `split` column gets a seeded event-stratified draw (`finetune_fraction`
   to `train_split`, the rest to `test_split`), written to `output_dir/splits.csv`;
2. map statistics (cohort z-score of each map): loaded from `map_statistics` (the study passes one
   file fitted label-free on the whole source cohort) or fitted on the TRAINING patients only;
3. per patient, `volume_preprocessing` (load, resample, descriptors, voxel maps; deterministic,
   cached with MONAI's PersistentDataset keyed by its settings) then `stack_preprocessing(map_statistics)`
   (fixed HU window, centred map bins, mask channel, one field of view, (C, H, W, S) stack). The
   stack is cached per patient (voxsurv.training.stack_cache), so a run over prepared patients
   only reads files;
4. a patient whose preprocessing raises InputError (empty mask, no slice above min_area_mm2) is
   excluded, logged and listed in `output_dir/excluded_patients.csv`; the others go on.

A sample is `{"image": (C, H, W, S) float32, "descriptors": (2,) [log_volume_ml, mean_hu],
"label": [time_days, event, patient_number], "patient_id": str}`; `patient_number` (the manifest
row) lets metrics and prediction writers match risks to patients under DDP.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from custom_transforms.descriptors import DESCRIPTOR_NAMES
from voxsurv.core.errors import InputError, input_error_in
from voxsurv.training.distributed import barrier, distributed_ready, is_rank0, say
from voxsurv.training.stack_cache import PatientStackCache, describe_transform, settings_hash, source_stamp

logger = logging.getLogger(__name__)

ROLES = ("train", "val", "test")


class _Guarded:
    """Map-style dataset calling fn(i); an InputError (also wrapped by MONAI) is returned, not
    raised, so one bad patient does not stop a worker pool; anything else is re-raised."""

    def __init__(self, fn, n):
        self.fn, self.n = fn, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        try:
            return i, self.fn(i)
        except Exception as exc:  # noqa: BLE001
            err = input_error_in(exc)
            if err is None:
                raise
            return i, InputError(err.problem, err.patient_id, err.path, err.fix)


def _first(x):
    return x


def _parallel_map(fn, n: int, workers: int, what: str):
    """Yield (i, fn(i) or InputError) for i < n with `workers` processes, logging progress."""
    import torch

    guarded = _Guarded(fn, n)
    if workers > 0 and n > 1:
        it = iter(torch.utils.data.DataLoader(guarded, batch_size=None, shuffle=False, num_workers=min(workers, n),
                                              collate_fn=_first))
    else:
        it = (guarded[i] for i in range(n))
    start = time.time()
    for done, item in enumerate(it, 1):
        if done % max(1, n // 5) == 0 or done == n:
            logger.info("  %d/%d %s (%.0f s)", done, n, what, time.time() - start)
        yield item


def _plain(x):
    """MetaTensor/tensor -> numpy (crosses process boundaries without shared-memory handles)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        return x.numpy()
    return np.asarray(x)


def _stack_meta(image) -> dict:
    meta = getattr(image, "meta", None) or {}
    out = {}
    for key in ("slice_indices", "fov_mm", "tumour_cut_slices", "channel_names"):
        if key in meta:
            v = meta[key]
            out[key] = v.tolist() if hasattr(v, "tolist") else v
    return out


class SurvivalPatients:
    """The patients of one manifest, per role, as cached per-patient samples.

    Args:
        manifest: manifest CSV (patient_id, image, mask, time_days, event, optional cohort, split).
        volume_preprocessing: per-patient transform (dict with image/mask paths in; "image",
            "mask", "maps", "descriptors" out), deterministic: custom_transforms.pipeline.volume_preprocessing.
        stack_preprocessing: callable `stack_preprocessing(map_statistics=...) -> transform`
            (the factory custom_transforms.pipeline.stack_preprocessing with its settings bound;
            `_mode_: callable` in a bundle config), turning the volume dict into the sample.
        cache_dir: cache root (volumes-<hash>/ and stacks-<hash>/ sub-folders).
        output_dir: where splits.csv, excluded_patients.csv and map_statistics.json go.
        cohort: keep only rows of this cohort (None: all rows).
        train_split, val_split, test_split: `split` values of the roles (see the module docstring);
            None drops the role (val_split is ignored when `fold` is an int).
        fold, n_folds, seed: cross-validation fold of the train_split rows (None: use val_split).
        finetune_fraction: share of a split-less manifest drawn for `train_split` when `test_split` is set.
        map_statistics: a MapStatistics JSON to use (its maps are selected by `features`);
            None or "" fits on the training patients.
        features: map names (channel order); [] = CT + mask only (no statistics needed).
        min_events: fewer events among the training patients stops with InputError before training.
        workers: processes for patients not yet cached (0: in this process).
        cache_volumes: keep the resampled volumes + maps on disk too (PersistentDataset); the
            stack cache alone already makes re-runs fast, the volume cache makes new stack
            settings fast.
        statistics_dirs: folders that get a copy of the map statistics in use (default:
            output_dir); a pretrain run also puts one beside its weights (models/), where
            fine-tuning looks for it.
    """

    def __init__(self, manifest, volume_preprocessing, stack_preprocessing, cache_dir, output_dir,
                 cohort: str | None = None, train_split: str = "train", val_split: str | None = "val",
                 test_split: str | None = None, fold: int | None = 0, n_folds: int = 5, seed: int = 0,
                 finetune_fraction: float = 0.2, map_statistics: str | None = None,
                 features: list[str] | None = None, min_events: int = 1, workers: int = 2,
                 cache_volumes: bool = False, statistics_dirs: list[str] | None = None) -> None:
        from voxsurv.data.manifest import load_manifest

        self.manifest_path = Path(manifest)
        self.output_dir = Path(output_dir)
        self.cache_dir = Path(cache_dir)
        if is_rank0():
            self.output_dir.mkdir(parents=True, exist_ok=True)
        df = load_manifest(self.manifest_path)
        df["patient_number"] = np.arange(len(df))
        if cohort is not None:
            df = df[df["cohort"] == cohort].reset_index(drop=True)
            if df.empty:
                raise InputError(f"no patients of cohort {cohort!r}", path=str(manifest),
                                 fix="check the `cohort` column or the bundle's `cohort` setting")
        self.volume_preprocessing = volume_preprocessing
        self.stack_preprocessing = stack_preprocessing
        self.features = None if features is None else [str(f) for f in features]
        self.map_statistics_path = map_statistics or None
        self.workers, self.cache_volumes = int(workers), bool(cache_volumes)
        self.statistics_dirs = [Path(d) for d in (statistics_dirs or [self.output_dir])]
        self.split_names: dict[str, str] = {}
        self.roles = self._assign_roles(df, train_split, val_split, test_split, fold, n_folds, seed, finetune_fraction)
        train = self.roles["train"]
        if int(train["event"].sum()) < min_events:
            err = InputError(f"the training split ({train_split!r}, {len(train)} patients) has "
                             f"{int(train['event'].sum())} events; a Cox model needs at least {min_events}",
                             path=str(manifest), fix="use a split with deaths (event = 1), or a larger "
                             "fine-tune fraction")
            say(f"STOP before training: {err}")
            raise err
        self.excluded: list[dict] = []
        self._statistics = None
        self._statistics_ready = False
        self._samples: dict[str, list[dict]] = {}
        self._table: dict[tuple[str, int], dict] = {}

    # ---- roles ---------------------------------------------------------------------------
    def _assign_roles(self, df, train_split, val_split, test_split, fold, n_folds, seed, fraction):
        from voxsurv.training.folds import assign_target_split, split_fold

        if "split" not in df.columns or df["split"].isna().all():
            if test_split is not None:
                df = assign_target_split(df, fraction, seed).replace({"split": {"finetune": train_split, "test": test_split}})
            else:
                df = df.assign(split=train_split)
            if is_rank0():
                df.drop(columns=["image", "mask"]).to_csv(self.output_dir / "splits.csv", index=False)
            logger.info("no split column: made one (seed %d), written to %s", seed, self.output_dir / "splits.csv")
        df = df.assign(split=df["split"].fillna("").astype(str).str.strip())
        pool = df[df["split"] == train_split].reset_index(drop=True)
        if pool.empty:
            raise InputError(f"no patients with split == {train_split!r}", path=str(self.manifest_path),
                             fix="check the manifest's `split` column and the bundle's train_split")
        roles = {}
        if fold is not None:
            roles["train"], roles["val"] = split_fold(pool, int(fold), n_folds, seed)
            self.split_names = {"train": str(train_split), "val": "val"}
        else:
            roles["train"] = pool
            self.split_names = {"train": str(train_split)}
            if val_split is not None:
                roles["val"] = df[df["split"] == val_split].reset_index(drop=True)
                self.split_names["val"] = str(val_split)
        if test_split is not None:
            roles["test"] = df[df["split"] == test_split].reset_index(drop=True)
            self.split_names["test"] = str(test_split)
        for name, part in roles.items():
            logger.info("%s: %d patients, %d events", name, len(part), int(part["event"].sum()))
        return roles

    def patients(self, role: str):
        """Manifest rows of `role` (before exclusions)."""
        if role not in self.roles:
            raise KeyError(f"no {role!r} patients in this run (roles: {sorted(self.roles)})")
        return self.roles[role]

    # ---- map statistics ------------------------------------------------------------------
    def _volume_key(self) -> str:
        return settings_hash(describe_transform(self.volume_preprocessing))

    def _volume_items(self, rows) -> list[dict]:
        return [{"image": r.image, "mask": r.mask, "patient_id": r.patient_id,
                 "source": source_stamp(r.patient_id, r.image, r.mask)} for r in rows]

    def _volume_dataset(self, rows):
        from monai.data import Dataset, PersistentDataset

        items = self._volume_items(rows)
        if self.cache_volumes:  # MetaTensors kept (geometry is needed downstream): our own files, unpickled
            return PersistentDataset(items, transform=self.volume_preprocessing, track_meta=True, weights_only=False,
                                     cache_dir=self.cache_dir / f"volumes-{self._volume_key()}")
        return Dataset(items, transform=self.volume_preprocessing)

    def map_statistics(self):
        """The MapStatistics in use (None when there are no maps): loaded or fitted on the
        training patients (cached by the training patients' files), saved to output_dir."""
        from voxsurv.maps.normalise import MapStatistics

        if self._statistics_ready:
            return self._statistics
        if self.features == []:
            self._statistics_ready = True
            return None
        if self.map_statistics_path:
            if not Path(self.map_statistics_path).is_file():
                raise InputError("map statistics file not found", path=str(self.map_statistics_path),
                                 fix="pass map_statistics=<the map_statistics.json the network was trained with> "
                                     "(fine-tuning: the one beside the pre-trained weights), or null to fit them "
                                     "on the training patients")
            stats = MapStatistics.load(self.map_statistics_path)
            if self.features is not None and list(stats.names) != self.features:
                stats = stats.select(self.features)
            logger.info("map statistics loaded from %s", self.map_statistics_path)
        else:
            rows = list(self.roles["train"].itertuples())
            key = settings_hash(self._volume_key(), self.features,
                                sorted(source_stamp(r.patient_id, r.image, r.mask) for r in rows))
            cached = self.cache_dir / f"statistics-{key}.json"
            if cached.is_file():
                stats = MapStatistics.load(cached)
                logger.info("map statistics of these training patients read from %s", cached)
            else:
                stats = self._fit_statistics(rows)
                if is_rank0():
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    stats.save(cached)
        if is_rank0():
            for folder in self.statistics_dirs:
                folder.mkdir(parents=True, exist_ok=True)
                stats.save(folder / "map_statistics.json")
        self._statistics, self._statistics_ready = stats, True
        return stats

    def _fit_statistics(self, rows):
        from voxsurv.maps.normalise import MapStatistics

        ds = self._volume_dataset(rows)

        def load(i):
            d = ds[i]
            return _plain(d["maps"]).astype(np.float32), _plain(d["mask"])[0], list(getattr(d["maps"], "meta", {}).get("channel_names", []) or [])

        pairs, names = [], None
        say(f"fitting map statistics on {len(rows)} training patients ...")
        for i, value in _parallel_map(load, len(rows), self.workers, "training patients read for map statistics"):
            if isinstance(value, InputError):
                continue  # excluded later, with its reason, when its stack is prepared
            maps, mask, channel_names = value
            names = names or channel_names or self.features
            pairs.append((maps, mask))
        if not pairs:
            raise InputError("no training patient survived preprocessing", path=str(self.manifest_path),
                             fix="see excluded_patients.csv in the output folder")
        stats = MapStatistics.fit(iter(pairs), names)
        logger.info("map statistics fitted on %d training patients", len(pairs))
        return stats

    # ---- samples -------------------------------------------------------------------------
    def _stack_transform(self):
        return self.stack_preprocessing(map_statistics=self.map_statistics())

    def samples(self, role: str) -> list[dict]:
        """One sample per included patient of `role` ("train", "val", "test"), cached in memory.
        Under DDP rank 0 prepares (and caches) first; the other ranks then read its cache."""
        if role in self._samples:
            return self._samples[role]
        if distributed_ready() and not is_rank0():
            barrier()
        out = self._prepare(role)
        if distributed_ready() and is_rank0():
            barrier()
        return out

    def _prepare(self, role: str) -> list[dict]:
        import torch

        rows = list(self.patients(role).itertuples())
        start = time.time()
        stack = self._stack_transform()
        cache = PatientStackCache(self.cache_dir / f"stacks-{settings_hash(self._volume_key(), describe_transform(stack))}")
        stamps = [source_stamp(r.patient_id, r.image, r.mask) for r in rows]
        entries: dict[int, dict] = {}
        todo = []
        for i, stamp in enumerate(stamps):
            entry = cache.get(stamp)
            if entry is None:
                todo.append(i)
            else:
                entries[i] = entry
        if todo:
            say(f"preparing {len(todo)} {role} patients (of {len(rows)}; the rest are cached) ...")
            ds = self._volume_dataset([rows[i] for i in todo])

            def prepare(j):
                s = stack(ds[j])
                return {"image": _plain(s["image"]).astype(np.float32), "descriptors": _plain(s["descriptors"]).astype(np.float32),
                        "meta": _stack_meta(s["image"])}

            for j, value in _parallel_map(prepare, len(todo), self.workers, f"{role} patients prepared"):
                i = todo[j]
                if isinstance(value, InputError):
                    value = {"excluded": str(value.with_patient(rows[i].patient_id)), "problem": value.problem}
                entry = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in value.items()}
                if is_rank0():
                    cache.put(stamps[i], entry)
                entries[i] = entry
        out = []
        for i, r in enumerate(rows):
            entry = entries[i]
            if "excluded" in entry:
                self._exclude(r.patient_id, role, entry["excluded"])
                continue
            image = torch.as_tensor(entry["image"], dtype=torch.float32)
            descriptors = torch.as_tensor(entry["descriptors"], dtype=torch.float32).reshape(-1)
            out.append({"image": image, "descriptors": descriptors, "patient_id": r.patient_id,
                        "label": torch.tensor([r.time_days, r.event, r.patient_number], dtype=torch.float32)})
            self._table[(role, int(r.patient_number))] = {
                "patient_number": int(r.patient_number), "patient_id": r.patient_id, "role": role,
                "split": self.split_names.get(role, role), "time_days": float(r.time_days), "event": int(r.event),
                **{name: float(v) for name, v in zip(DESCRIPTOR_NAMES, descriptors.tolist())},
                "n_slices": int(image.shape[-1]), "fov_mm": entry.get("meta", {}).get("fov_mm")}
        self._write_exclusions()
        logger.info("%s: %d patients ready (%d excluded) in %.1f s", role, len(out), len(rows) - len(out), time.time() - start)
        say(f"{role}: {len(out)} patients ({sum(int(s['label'][1]) for s in out)} events), "
            f"{len(rows) - len(out)} excluded, ready in {time.time() - start:.1f} s")
        if not out:
            raise InputError(f"no {role} patient could be prepared", path=str(self.manifest_path),
                             fix="see excluded_patients.csv; check masks and min_area_mm2")
        self._samples[role] = out
        return out

    def events(self, samples: list[dict]) -> list[int]:
        """Event indicator per sample (for the event-guaranteeing batch sampler)."""
        return [int(s["label"][1]) for s in samples]

    def table(self):
        """One row per prepared patient and role: patient_number, patient_id, role, split,
        time_days, event, log_volume_ml, mean_hu, n_slices, fov_mm (a fine-tune patient that is
        also evaluated in-sample has a "train" and a "val" row)."""
        import pandas as pd

        return pd.DataFrame(list(self._table.values()))

    # ---- exclusions ----------------------------------------------------------------------
    def _exclude(self, patient_id: str, role: str, message: str) -> None:
        if any(e["patient_id"] == patient_id for e in self.excluded):
            return
        say(f"excluded: {message}")
        self.excluded.append({"patient_id": patient_id, "role": role, "problem": message})

    def _write_exclusions(self) -> None:
        if self.excluded and is_rank0():
            import pandas as pd

            pd.DataFrame(self.excluded).to_csv(self.output_dir / "excluded_patients.csv", index=False)
