"""MONAI transforms for voxel-level radiomics maps: compute them from CT + mask, then normalise.

Inside MONAI pipelines images are channel-first MetaTensors with spatial axes (x, y, z) as
ITKReader/LoadImaged gives them, axial slices along the last axis. The voxelmaps engine works
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

from voxsurv.errors import InputError

#: meta keys written by VoxelRadiomicsMaps
CHANNEL_NAMES_KEY = "channel_names"
SETTINGS_KEY = "maps_settings"


def _spacing_xyz(img, pixdim: Sequence[float] | None) -> tuple[float, float, float]:
    if isinstance(img, MetaTensor):
        return tuple(float(s) for s in img.pixdim[:3])
    if pixdim is None:
        raise InputError("no voxel spacing: the image is not a MetaTensor and no pixdim was given",
                         fix="load images with LoadImaged (MetaTensor) or pass pixdim=(x, y, z) mm")
    return tuple(float(s) for s in pixdim)


def _to_zyx(img) -> np.ndarray:
    """(1, x, y, z) channel-first -> (z, y, x) numpy."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise InputError(f"expected a channel-first (1, x, y, z) volume, got shape {arr.shape}",
                         fix="add EnsureChannelFirstd before this transform")
    return arr[0].transpose(2, 1, 0)


class VoxelRadiomicsMaps(Transform):
    """CT (1, x, y, z) + mask (1, x, y, z) -> radiomics maps (F, x, y, z), NaN outside the mask.

    The CT must be in HU (it is clipped to the settings' window, [-95, 155] HU by default); the
    output MetaTensor keeps the image's affine and meta and adds `channel_names` (F names) and
    `maps_settings`.

    Args:
        features: names ("glcm_Contrast"), classes ("glcm") or None for all 90.
        backend: "torch" (fast) or "pyradiomics" (reference).
        settings: voxelmaps.MapSettings; keyword overrides (radius, bin_width, bin_count, window,
            dtype, ...) replace its fields.
        device: torch device for the torch backend.
        pixdim: (x, y, z) mm spacing, used only when the input is not a MetaTensor.
        output_dtype: dtype of the returned maps ("float32" default: 90 maps of a 92 x 92 x 14
            crop are 43 MB in float32, twice that in float64; computing stays in the settings'
            dtype). None keeps the engine's dtype.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, features=None, backend: str = "torch", settings=None, device=None,
                 pixdim: Sequence[float] | None = None, output_dtype: str | None = "float32",
                 **setting_overrides):
        from voxelmaps.api import make_settings
        from voxelmaps.features import resolve_features

        self.features = resolve_features(features)
        self.engine = backend
        self.settings = make_settings(settings, **setting_overrides)
        self.device = device
        self.pixdim = pixdim
        self.output_dtype = output_dtype

    def __call__(self, img, mask) -> MetaTensor:
        from voxelmaps.api import compute_maps

        sx, sy, sz = _spacing_xyz(img, self.pixdim)
        maps, names = compute_maps(_to_zyx(img), _to_zyx(mask), (sz, sy, sx), self.features,
                                   backend=self.engine, settings=self.settings, device=self.device)
        if self.output_dtype is not None:
            maps = maps.astype(self.output_dtype, copy=False)
        out = torch.as_tensor(np.ascontiguousarray(maps.transpose(0, 3, 2, 1)))
        meta = dict(img.meta) if isinstance(img, MetaTensor) else {}  # affine travels in meta
        meta[CHANNEL_NAMES_KEY] = list(names)
        meta[SETTINGS_KEY] = self.settings.to_dict()
        return MetaTensor(out, meta=meta)


class VoxelRadiomicsMapsd(MapTransform):
    """Dictionary twin of VoxelRadiomicsMaps: `d[output_key] = maps(d[key], d[mask_key])`.

    Args:
        keys: the CT key (one key; with several, outputs are named `<output_key>_<key>`).
        mask_key: the tumour mask key.
        output_key: where the (F, x, y, z) maps go.
        other arguments: see VoxelRadiomicsMaps.
    """

    def __init__(self, keys: KeysCollection = "image", mask_key: str = "mask",
                 output_key: str = "maps", features=None, backend: str = "torch", settings=None,
                 device=None, output_dtype: str | None = "float32", allow_missing_keys: bool = False,
                 **setting_overrides):
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key
        self.output_key = output_key
        self.converter = VoxelRadiomicsMaps(features, backend, settings, device,
                                            output_dtype=output_dtype, **setting_overrides)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        keys = list(self.key_iterator(d))
        for key in keys:
            out_key = self.output_key if len(self.keys) == 1 else f"{self.output_key}_{key}"
            d[out_key] = self.converter(d[key], d[self.mask_key])
        return d


class NormaliseMaps(Transform):
    """Radiomics maps (F, ...) -> cohort z-score, clipped and binned (1..n_bins; 0 outside the ROI).

    Uses statistics fitted on the training cohort (voxelmaps.normalise.MapStatistics) so that
    validation, test and inference data get exactly the same mapping. When the input carries
    `channel_names` in its meta, the statistics are matched by name (any order, any subset).

    Args:
        statistics: a MapStatistics or the path of its JSON file.
        discretise: bin the clipped z-scores (default) or return them as they are.
        per_patient: z-score with the patient's own ROI statistics (not the default: it erases
            between-patient differences).
        outside_value: value written where a map is NaN (outside the ROI); None keeps NaN.
    """

    backend = [torch.Tensor, np.ndarray]

    def __init__(self, statistics, discretise: bool = True, per_patient: bool = False,
                 outside_value: float | None = 0.0):
        from voxelmaps.normalise import MapStatistics

        if isinstance(statistics, (str, Path)):
            statistics = MapStatistics.load(statistics)
        self.statistics = statistics
        self.discretise = discretise
        self.per_patient = per_patient
        self.outside_value = outside_value

    def __call__(self, maps, mask=None):
        stats = self.statistics
        if isinstance(maps, MetaTensor) and CHANNEL_NAMES_KEY in maps.meta:
            stats = stats.select(list(maps.meta[CHANNEL_NAMES_KEY]))
        arr = maps.detach().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
        m = None
        if mask is not None:
            m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            m = m.reshape(arr.shape[1:])
        out = torch.as_tensor(stats.apply(arr, m, discretise=self.discretise,
                                          per_patient=self.per_patient,
                                          outside_value=self.outside_value))
        if isinstance(maps, MetaTensor):
            return MetaTensor(out, meta=dict(maps.meta))
        return out


class NormaliseMapsd(MapTransform):
    """Dictionary twin of NormaliseMaps, applied in place to `keys` (default "maps"); `mask_key`
    (optional) restricts the ROI, otherwise NaN voxels mark outside the ROI."""

    def __init__(self, keys: KeysCollection = "maps", statistics=None, mask_key: str | None = None,
                 discretise: bool = True, per_patient: bool = False,
                 outside_value: float | None = 0.0, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if statistics is None:
            raise InputError("NormaliseMapsd needs statistics",
                             fix="pass a MapStatistics or the JSON written by MapStatistics.save")
        self.mask_key = mask_key
        self.normaliser = NormaliseMaps(statistics, discretise, per_patient, outside_value)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        mask = d.get(self.mask_key) if self.mask_key else None
        for key in self.key_iterator(d):
            d[key] = self.normaliser(d[key], mask)
        return d


VoxelRadiomicsMapsD = VoxelRadiomicsMapsDict = VoxelRadiomicsMapsd
NormaliseMapsD = NormaliseMapsDict = NormaliseMapsd
