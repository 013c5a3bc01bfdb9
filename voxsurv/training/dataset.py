"""Manifest -> cached preprocessed volumes + maps -> normalised 2D tumour slices with labels.

The bundles' data flow, in order:
1. the manifest (voxsurv.manifest.load_manifest) is filtered to a cohort and split into
   train / validation (cross-validation fold) or fine-tune / test (`split` column; a target cohort
   without one gets a seeded event-stratified 20/80 split, written to `output_dir/splits.csv`);
2. each patient goes through the bundle's `volume_transform` (load, resample to 1 x 1 x 5 mm,
   voxel radiomics maps) once; the result is cached on disk with MONAI's `PersistentDataset`, keyed
   by the transform settings, so re-runs and other bundles skip the slow part. A patient whose
   preprocessing raises `InputError` (e.g. an empty mask) is excluded, logged and listed in
   `output_dir/excluded_patients.csv`; the others go on;
3. map normalisation statistics (cohort z-score + bins, voxelmaps.normalise.MapStatistics) are
   fitted on the TRAINING patients only and saved as JSON (or loaded from a given file);
4. per patient the CT is HU-windowed and z-scored, the maps normalised, then every tumour slice
   becomes one sample `{"input": (C, H, W), "label": [time, event, patient_number], ...}` with
   C = 1 + number of maps. The patient label is copied to each slice; the third label column
   lets the C-index handler aggregate slice risks per patient (the Cox loss uses the first two).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from voxsurv.errors import InputError, input_error_in

logger = logging.getLogger(__name__)

#: Default maps until the screening study writes selected_maps.json: two or so per texture family,
#: covering level (Mean), spread (Variance, Entropy), asymmetry (Skewness), local contrast and
#: disorder (GLCM Contrast, JointEntropy, Idm) and run/zone disorder (RunEntropy, ZoneEntropy).
DEFAULT_MAPS = ["firstorder_Mean", "firstorder_Variance", "firstorder_Entropy", "firstorder_Skewness",
                "glcm_Contrast", "glcm_JointEntropy", "glcm_Idm", "glrlm_RunEntropy", "glszm_ZoneEntropy"]


def selected_maps(path: str | Path | None = None) -> list[str]:
    """Map names from the screening study's JSON (a list, or a dict with "selected"/"features"),
    or DEFAULT_MAPS when `path` is None or does not exist."""
    if path is None or not Path(path).exists():
        return list(DEFAULT_MAPS)
    with open(path) as f:
        d = json.load(f)
    names = d if isinstance(d, list) else d.get("selected") or d.get("features") or d.get("maps")
    if not names:
        raise InputError("no map names found", path=str(path),
                         fix='write a JSON list of feature names or {"selected": [...]}')
    return [str(n) for n in names]


def describe_transform(transform) -> list:
    """A stable description (class names + simple settings) of a transform chain, for cache keys:
    a change of spacing, features or map settings gives a new cache folder."""
    simple = (int, float, str, bool, type(None))

    def plain(v, depth=0):
        if isinstance(v, simple):
            return v
        if isinstance(v, (list, tuple)) and depth < 3:
            return [plain(x, depth + 1) for x in v]
        if isinstance(v, dict) and depth < 3:
            return {str(k): plain(x, depth + 1) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
        if hasattr(v, "to_dict"):
            return plain(v.to_dict(), depth + 1)
        if hasattr(v, "__dict__") and depth < 3:
            return [type(v).__name__, {k: plain(x, depth + 1) for k, x in sorted(vars(v).items())
                                       if not k.startswith("_") and not callable(x)}]
        return type(v).__name__

    parts = getattr(transform, "transforms", [transform])
    return [plain(t) for t in parts]


def settings_hash(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _to_portable(x):
    """MetaTensor -> (numpy array, affine, meta subset): crosses process boundaries without
    shared-memory file handles (hundreds of patients would exhaust them)."""
    meta = getattr(x, "meta", {}) or {}
    keep = {k: meta[k] for k in ("channel_names", "maps_settings", "filename_or_obj") if k in meta}
    affine = getattr(x, "affine", None)
    return (np.asarray(x.detach().cpu() if hasattr(x, "detach") else x),
            None if affine is None else np.asarray(affine), keep)


def _from_portable(p):
    from monai.data import MetaTensor

    arr, affine, meta = p
    return MetaTensor(arr, affine=affine, meta=meta)


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


def _parallel_map(fn, n, workers: int, what: str):
    """Yield (i, fn(i) or InputError) for i < n, with `workers` processes (DataLoader), logging
    progress about every 20%."""
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


class SurvivalSlices:
    """Patients of one manifest as cached volumes and per-split lists of 2D slice samples.

    Args:
        manifest: manifest CSV (foundation format: patient_id, image, mask, time_days, event,
            optional cohort, split).
        volume_transform: per-patient MONAI transform (dict in, dict with "image", "mask" and
            "maps" out), deterministic, so its output can be cached.
        cache_dir: persistent cache root (a sub-folder per settings hash is used).
        output_dir: where splits.csv, excluded_patients.csv and map_statistics.json go.
        cohort: keep only rows of this cohort (None: all rows).
        train_split / val_split / test_split: values of the `split` column for each role; when
            `fold` is not None, training and validation are cross-validation folds of `train_split`.
        fold, n_folds, seed: cross-validation fold (stratified on event, by patient).
        finetune_fraction: used only when the manifest has no `split` column and `train_split`
            is "finetune": a seeded event-stratified fraction goes to fine-tuning, the rest to test.
        map_statistics: a MapStatistics JSON to use; None fits on the training patients and saves.
        slice_transform: callable turning one normalised patient dict into a list of slice dicts
            (the bundle passes TumourSlicesd + StackChannelsd + resize); see `patient_slices`.
        ct_key, maps_key, mask_key: dictionary keys.
        min_events: fewer events than this in the training split stops with InputError.
        workers: processes for preprocessing and slicing (0: in this process).
    """

    def __init__(self, manifest, volume_transform, slice_transform, ct_normalise, cache_dir, output_dir,
                 cohort: str | None = None, train_split: str = "train", val_split: str | None = None,
                 test_split: str | None = None, fold: int | None = 0, n_folds: int = 5, seed: int = 0,
                 finetune_fraction: float = 0.2, map_statistics: str | None = None,
                 features: list[str] | None = None, ct_key: str = "image", maps_key: str = "maps",
                 mask_key: str = "mask", min_events: int = 1, workers: int = 2) -> None:
        from voxsurv.manifest import load_manifest

        self.manifest_path = Path(manifest)
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        df = load_manifest(self.manifest_path)
        df["patient_number"] = np.arange(len(df))
        if cohort is not None:
            df = df[df["cohort"] == cohort].reset_index(drop=True)
            if df.empty:
                raise InputError(f"no patients of cohort {cohort!r}", path=str(manifest),
                                 fix="check the `cohort` column or the bundle's `cohort` setting")
        self.volume_transform, self.slice_transform, self.ct_normalise = volume_transform, slice_transform, ct_normalise
        self.ct_key, self.maps_key, self.mask_key = ct_key, maps_key, mask_key
        self.features = list(features) if features is not None else list(DEFAULT_MAPS)
        self.roles = self._assign_roles(df, train_split, val_split, test_split, fold, n_folds, seed,
                                        finetune_fraction)
        train = self.roles["train"]
        if int(train["event"].sum()) < min_events:
            err = InputError(f"the training split ({train_split!r}, {len(train)} patients) has "
                             f"{int(train['event'].sum())} events; a Cox model needs at least {min_events}",
                             path=str(manifest), fix="use a split with deaths (event = 1), or a larger "
                             "fine-tune fraction")
            print(f"[voxsurv] STOP before training: {err}", flush=True)
            raise err
        self.workers = int(workers)
        self.cache_dir = Path(cache_dir)
        self._volumes: dict[int, dict] = {}
        self.excluded: list[dict] = []
        self.map_statistics_path = map_statistics
        self.statistics = None

    # ---- splits ----
    def _assign_roles(self, df, train_split, val_split, test_split, fold, n_folds, seed, fraction):
        from voxsurv.training.folds import assign_target_split, split_fold

        if "split" not in df.columns or df["split"].isna().all():
            if train_split == "finetune":
                df = assign_target_split(df, fraction, seed)
            else:
                df = df.assign(split=train_split)
            df.drop(columns=["image", "mask"]).to_csv(self.output_dir / "splits.csv", index=False)
            logger.info("no split column: made one (seed %d), written to %s", seed, self.output_dir / "splits.csv")
        df["split"] = df["split"].astype(str)
        roles = {}
        pool = df[df["split"] == train_split].reset_index(drop=True)
        if pool.empty:
            raise InputError(f"no patients with split == {train_split!r}", path=str(self.manifest_path),
                             fix="check the manifest's `split` column")
        if fold is not None:
            roles["train"], roles["val"] = split_fold(pool, int(fold), n_folds, seed)
        else:
            roles["train"] = pool
            roles["val"] = df[df["split"] == (val_split or train_split)].reset_index(drop=True)
        if test_split is not None:
            roles["test"] = df[df["split"] == test_split].reset_index(drop=True)
        for name, part in roles.items():
            logger.info("%s: %d patients, %d events", name, len(part), int(part["event"].sum()))
        return roles

    def patients(self, role: str):
        return self.roles[role]

    # ---- cached volumes ----
    def _cache_folder(self) -> Path:
        return self.cache_dir / f"volumes-{settings_hash(describe_transform(self.volume_transform))}"

    def _load_volumes(self, role: str) -> None:
        from monai.data import PersistentDataset

        df = self.roles[role]
        excluded = {e["patient_id"] for e in self.excluded}
        todo = [r for r in df.itertuples() if r.patient_number not in self._volumes and r.patient_id not in excluded]
        if not todo:
            return
        folder = self._cache_folder()
        items = [{self.ct_key: r.image, self.mask_key: r.mask, "patient_id": r.patient_id} for r in todo]
        ds = PersistentDataset(items, transform=self.volume_transform, cache_dir=folder)
        keys = (self.ct_key, self.mask_key, self.maps_key)

        def load(i):
            d = ds[i]
            if float(d[self.mask_key].sum()) <= 0:
                raise InputError("mask is empty after resampling", patient_id=todo[i].patient_id,
                                 path=todo[i].mask, fix="check the contour (it must cover at least one voxel)")
            return {k: _to_portable(d[k]) for k in keys}

        logger.info("preprocessing %d %s patients (load, resample, %d maps; %d workers; cache %s)", len(todo),
                    role, len(self.features), self.workers, folder)
        for i, value in _parallel_map(load, len(todo), self.workers, f"{role} patients preprocessed"):
            r = todo[i]
            if isinstance(value, InputError):
                self._exclude(r.patient_id, role, value)
                continue
            self._volumes[r.patient_number] = {k: _from_portable(v) for k, v in value.items()}
        self._write_exclusions()

    def _exclude(self, patient_id: str, role: str, err: InputError) -> None:
        """Log a patient left out for bad input and keep it for excluded_patients.csv."""
        err = err.with_patient(patient_id)
        logger.warning("excluded: %s", err)
        self.excluded.append({"patient_id": patient_id, "role": role, "problem": str(err)})

    def _write_exclusions(self) -> None:
        if self.excluded:
            import pandas as pd

            pd.DataFrame(self.excluded).to_csv(self.output_dir / "excluded_patients.csv", index=False)

    # ---- normalisation statistics ----
    def fit_statistics(self):
        """Map statistics from the training patients (or the given JSON), saved to output_dir."""
        from voxelmaps.normalise import MapStatistics

        if self.statistics is not None:
            return self.statistics
        if self.map_statistics_path:
            self.statistics = MapStatistics.load(self.map_statistics_path)
            logger.info("map statistics loaded from %s", self.map_statistics_path)
            return self.statistics
        self._load_volumes("train")
        train = [n for n in self.roles["train"]["patient_number"] if n in self._volumes]
        if not train:
            raise InputError("no training patient survived preprocessing", path=str(self.manifest_path),
                             fix="see excluded_patients.csv in the output folder")

        def pairs():
            for n in train:
                v = self._volumes[n]
                yield np.asarray(v[self.maps_key]), np.asarray(v[self.mask_key])[0]

        names = list(getattr(self._volumes[train[0]][self.maps_key], "meta", {}).get("channel_names", self.features))
        self.statistics = MapStatistics.fit(pairs(), names)
        path = self.statistics.save(self.output_dir / "map_statistics.json")
        logger.info("map statistics fitted on %d training patients -> %s", len(train), path)
        return self.statistics

    # ---- slices ----
    def slices(self, role: str) -> list[dict]:
        """All tumour-slice samples of the patients in `role` ("train", "val", "test")."""
        import torch
        from custom_transforms.maps import NormaliseMapsd

        stats = self.fit_statistics()
        self._load_volumes(role)
        normalise = NormaliseMapsd(keys=self.maps_key, statistics=stats, mask_key=self.mask_key)
        rows = [r for r in self.roles[role].itertuples() if r.patient_number in self._volumes]

        def cut(i):
            r = rows[i]
            d = normalise(self.ct_normalise({**self._volumes[r.patient_number], "patient_id": r.patient_id}))
            return [(np.asarray(s["input"], dtype=np.float32), int(s.get("slice_index", -1)))
                    for s in self.slice_transform(d)]

        out = []
        for i, value in _parallel_map(cut, len(rows), self.workers, f"{role} patients sliced"):
            r = rows[i]
            if isinstance(value, InputError):
                self._exclude(r.patient_id, role, value)
                continue
            for arr, k in value:
                out.append({"image": torch.from_numpy(arr),
                            "label": torch.tensor([r.time_days, r.event, r.patient_number], dtype=torch.float32),
                            "patient_id": r.patient_id, "slice_index": k})
        self._write_exclusions()
        n_pat = len({s["patient_id"] for s in out})
        logger.info("%s: %d slices from %d patients", role, len(out), n_pat)
        if not out:
            raise InputError(f"no tumour slices for the {role} patients", path=str(self.manifest_path),
                             fix="see excluded_patients.csv; check masks and min_area_mm2")
        return out

    def slice_events(self, slices: list[dict]) -> list[int]:
        return [int(s["label"][1]) for s in slices]
