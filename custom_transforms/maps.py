"""MONAI transforms for voxel-level radiomics maps: compute them from CT + mask, then normalise.

Inside MONAI pipelines images are channel-first MetaTensors with spatial axes (x, y, z) as
ITKReader/LoadImaged gives them, axial slices along the last axis. The voxsurv.maps engine works
on (z, y, x) numpy arrays (SimpleITK order, slices along axis 0), so these transforms transpose
on the way in and back on the way out, and carry spacing, affine and the channel names in meta.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from voxsurv.core.errors import InputError

#: meta keys written by VoxelRadiomicsMaps
CHANNEL_NAMES_KEY = "channel_names"
SETTINGS_KEY = "maps_settings"
CACHE_KEY_KEY = "maps_cache_key"  # the entry's address (None without a cache)
COMPUTED_KEY = "maps_computed"  # names the engine computed in this call (the rest came from the cache)


def _spacing_xyz(img, pixdim: Sequence[float] | None) -> tuple[float, float, float]:
    if isinstance(img, MetaTensor):
        return tuple(float(s) for s in img.pixdim[:3])
    if pixdim is None:
        raise InputError("no voxel spacing: the image is not a MetaTensor and no pixdim was given",
                         fix="load images with LoadImaged (MetaTensor) or pass pixdim=(x, y, z) mm")
    return tuple(float(s) for s in pixdim)


def _to_xyz(img) -> np.ndarray:
    """(1, x, y, z) channel-first -> (x, y, z) numpy."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise InputError(f"expected a channel-first (1, x, y, z) volume, got shape {arr.shape}",
                         fix="add EnsureChannelFirstd before this transform")
    return arr[0]


def _to_zyx(img) -> np.ndarray:
    """(1, x, y, z) channel-first -> (z, y, x) numpy."""
    return _to_xyz(img).transpose(2, 1, 0)


class VoxelRadiomicsMaps(Transform):
    """CT (1, x, y, z) + mask (1, x, y, z) -> radiomics maps (F, x, y, z), NaN outside the mask.

    The CT must be in HU (it is clipped to the settings' window, [-95, 155] HU by default); the
    output MetaTensor keeps the image's affine and meta and adds ``channel_names`` (F names),
    ``maps_settings``, ``maps_cache_key`` and ``maps_computed`` (names computed in this call).

    With ``cache_dir`` the maps go through a content-addressed cache (voxsurv.maps.cache): the
    entry of this resampled image + mask + grid + settings + backend is read, the names it lacks
    are computed and added. A cached map equals a freshly computed one bit for bit (both are
    stored in ``output_dtype``).

    Args:
        features: names ("glcm_Contrast"), classes ("glcm") or None for all 90.
        backend: "torch" (fast) or "pyradiomics" (reference).
        settings: voxsurv.maps.MapSettings; keyword overrides (radius, bin_width, bin_count, window,
            dtype, ...) replace its fields.
        device: torch device for the torch backend.
        pixdim: (x, y, z) mm spacing, used only when the input is not a MetaTensor.
        output_dtype: dtype of the returned (and cached) maps ("float32" default: 90 maps of a
            92 x 92 x 14 crop are 43 MB in float32; computing stays in the settings' dtype). None
            keeps the engine's dtype (not with a cache).
        cache_dir: folder of the maps cache; None computes every call.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, features=None, backend: str = "torch", settings=None, device=None,
                 pixdim: Sequence[float] | None = None, output_dtype: str | None = "float32",
                 cache_dir: str | Path | None = None, **setting_overrides):
        from voxsurv.maps.api import BACKENDS, make_settings
        from voxsurv.maps.cache import MapsCache
        from voxsurv.maps.features import resolve_features

        if backend not in BACKENDS:
            raise InputError(f"unknown maps backend {backend!r}", fix=f"use one of {', '.join(BACKENDS)}")
        if cache_dir is not None and output_dtype is None:
            raise ValueError("a maps cache stores one dtype: give output_dtype (e.g. 'float32')")
        self.features = resolve_features(features)
        self.engine = backend
        self.settings = make_settings(settings, **setting_overrides)
        self.device = device
        self.pixdim = pixdim
        self.output_dtype = output_dtype
        self.store_dtype = output_dtype
        self.cache = None if cache_dir is None else MapsCache(cache_dir)

    def __call__(self, img, mask) -> MetaTensor:
        sx, sy, sz = _spacing_xyz(img, self.pixdim)
        meta = dict(img.meta) if isinstance(img, MetaTensor) else {}  # affine travels in meta
        if self.cache is None:
            maps, key, computed = self._compute(img, mask, (sz, sy, sx), self.features), None, list(self.features)
        else:
            maps, key, computed = self._through_cache(img, mask, (sz, sy, sx))
        out = MetaTensor(torch.as_tensor(np.ascontiguousarray(maps)), meta=meta)
        out.meta[CHANNEL_NAMES_KEY] = list(self.features)
        out.meta[SETTINGS_KEY] = self.settings.to_dict()
        out.meta[CACHE_KEY_KEY] = key
        out.meta[COMPUTED_KEY] = computed
        return out

    def _compute(self, img, mask, spacing_zyx, names) -> np.ndarray:
        """(F, x, y, z) maps of ``names`` from the engine (NaN outside the mask)."""
        from voxsurv.maps.api import compute_maps

        maps, _ = compute_maps(_to_zyx(img), _to_zyx(mask), spacing_zyx, list(names), backend=self.engine,
                               settings=self.settings, device=self.device)
        if self.output_dtype is not None:
            maps = maps.astype(self.output_dtype, copy=False)
        return maps.transpose(0, 3, 2, 1)

    def _through_cache(self, img, mask, spacing_zyx):
        """Maps read from the cache entry of this image + mask; names it lacks are computed and
        added. Returns (maps, key, computed names)."""
        from voxsurv.maps.cache import cache_key

        image = _to_xyz(img)
        roi = _to_xyz(mask) > 0
        affine = np.asarray(img.affine if isinstance(img, MetaTensor) else np.diag([*spacing_zyx[::-1], 1.0]),
                            dtype=np.float64)
        key = cache_key(image, roi, affine, self.settings, self.engine, self.store_dtype)
        missing = [n for n in self.features if n not in self.cache.cached_names(key)]
        fresh = {}
        if missing:
            computed = self._compute(img, mask, spacing_zyx, missing)
            fresh = {n: computed[i][roi] for i, n in enumerate(missing)}
            self.cache.write_volume(key, image, roi, affine,
                                    {"settings": self.settings.to_dict(), "backend": self.engine,
                                     "store_dtype": self.store_dtype})
            self.cache.write_maps(key, fresh, store_dtype=self.store_dtype)
        stored = [n for n in self.features if n not in fresh]
        values = dict(zip(stored, self.cache.read_roi_values(key, stored))) if stored else {}
        values.update({n: np.asarray(v, dtype=self.store_dtype) for n, v in fresh.items()})
        maps = np.full((len(self.features),) + roi.shape, np.nan, dtype=self.store_dtype)
        for i, n in enumerate(self.features):
            maps[i][roi] = values[n]
        return maps, key, missing


class VoxelRadiomicsMapsd(MapTransform):
    """Dictionary twin of VoxelRadiomicsMaps: ``d[output_key] = maps(d[key], d[mask_key])``.
    InputError names ``d["patient_id"]`` when present.

    Args:
        keys: the CT key (one key; with several, outputs are named ``<output_key>_<key>``).
        mask_key: the tumour mask key.
        output_key: where the (F, x, y, z) maps go.
        other arguments (features, backend, settings, device, output_dtype, cache_dir, setting
            overrides): see VoxelRadiomicsMaps.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = "mask", output_key: str = "maps",
                 features=None, backend: str = "torch", settings=None, device=None,
                 output_dtype: str | None = "float32", cache_dir: str | Path | None = None,
                 allow_missing_keys: bool = False, **setting_overrides):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.output_key = output_key
        self.converter = VoxelRadiomicsMaps(features, backend, settings, device, output_dtype=output_dtype,
                                            cache_dir=cache_dir, **setting_overrides)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in list(self.key_iterator(d)):
            out_key = self.output_key if len(self.keys) == 1 else f"{self.output_key}_{key}"
            try:
                d[out_key] = self.converter(d[key], d[self.mask_key])
            except InputError as err:
                pid = d.get("patient_id")
                raise (err.with_patient(str(pid)) if pid is not None else err) from None
        return d


class NormaliseMaps(Transform):
    """Radiomics maps (F, ...) -> the training cohort's z-score, clipped to [-z_clip, z_clip], then
    scaled (``scale``); ``outside_value`` outside the ROI.

    Uses statistics fitted on the training cohort (voxsurv.maps.normalise.MapStatistics) so that
    validation, test and inference data get exactly the same mapping. When the input carries
    ``channel_names`` in its meta, the output's channels are the statistics' maps, picked from the
    input by name in the statistics' order (the input may hold more maps, e.g. a cache's 90).

    Args:
        statistics: a MapStatistics or the path of its JSON file.
        scale: ``"centred"``: bin / n_bins - 0.5, in (-0.47, 0.5], with 0 outside the ROI (the
            network input: no channel is "16.5 x mask" as with integer bins, issue 11);
            ``"zscore"``: the clipped z-scores.
        per_patient: z-score with the patient's own ROI statistics (not the default: it erases
            between-patient differences).
        outside_value: value written where a map is NaN (outside the ROI); None keeps NaN.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, statistics, scale: str = "centred", per_patient: bool = False,
                 outside_value: float | None = 0.0):
        from voxsurv.maps.normalise import SCALES, MapStatistics

        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        if isinstance(statistics, (str, Path)):
            statistics = MapStatistics.load(statistics)
        self.statistics = statistics
        self.scale = scale
        self.per_patient = per_patient
        self.outside_value = outside_value

    def __call__(self, maps, mask=None):
        stats = self.statistics
        arr = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
        if isinstance(maps, MetaTensor) and CHANNEL_NAMES_KEY in maps.meta:
            names = list(maps.meta[CHANNEL_NAMES_KEY])
            missing = [n for n in stats.names if n not in names]
            if missing:
                raise InputError(f"maps {missing} have statistics but were not computed",
                                 fix="compute the same features as the statistics were fitted on "
                                     "(or select the statistics: MapStatistics.select)")
            arr = arr[[names.index(n) for n in stats.names]]
        m = None
        if mask is not None:
            m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            m = m.reshape(arr.shape[1:])
        out = torch.as_tensor(stats.apply(arr, m, scale=self.scale, per_patient=self.per_patient,
                                          outside_value=self.outside_value))
        if isinstance(maps, MetaTensor):
            meta = dict(maps.meta)
            meta[CHANNEL_NAMES_KEY] = list(stats.names)
            return MetaTensor(out, meta=meta)
        return out


class NormaliseMapsd(MapTransform):
    """Dictionary twin of NormaliseMaps, applied in place to ``keys``; ``mask_key`` (optional)
    restricts the ROI, otherwise NaN voxels mark outside the ROI. InputError names
    ``d["patient_id"]`` when present.

    Args:
        keys: the maps keys.
        statistics: a MapStatistics or the path of its JSON file.
        mask_key: the tumour mask key, or None.
        scale, per_patient, outside_value: see NormaliseMaps.
        allow_missing_keys: skip absent keys.
    """

    def __init__(self, keys: KeysCollection, statistics=None, mask_key: str | None = None,
                 scale: str = "centred", per_patient: bool = False, outside_value: float | None = 0.0,
                 allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if statistics is None:
            raise InputError("NormaliseMapsd needs statistics",
                             fix="pass a MapStatistics or the JSON written by MapStatistics.save")
        self.mask_key = mask_key
        self.normaliser = NormaliseMaps(statistics, scale, per_patient, outside_value)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key else None
        for key in self.key_iterator(d):
            try:
                d[key] = self.normaliser(d[key], mask)
            except InputError as err:
                pid = d.get("patient_id")
                raise (err.with_patient(str(pid)) if pid is not None else err) from None
        return d


VoxelRadiomicsMapsD = VoxelRadiomicsMapsDict = VoxelRadiomicsMapsd
NormaliseMapsD = NormaliseMapsDict = NormaliseMapsd
