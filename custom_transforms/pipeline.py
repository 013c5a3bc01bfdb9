"""THE per-patient preprocessing chain: one definition used by the pretrain/finetune/inference
bundles (``_target_: custom_transforms.pipeline.volume_preprocessing``), the training data module,
the study and ``voxsurv predict``, so a model never sees different inputs at training and at
inference (issue 14).

Two stages, because they cache differently:

- ``volume_preprocessing``: files -> CT (HU) + mask resampled to 1 x 1 x 5 mm -> tumour
  descriptors -> voxel radiomics maps (through the maps cache). Deterministic and label-free: its
  output may be cached on disk (PersistentDataset) and its maps are shared by every run.
- ``stack_preprocessing``: fixed HU scaling of the CT, the training cohort's map statistics
  (centred bins), a mask channel, one tumour-holding field of view per patient -> (C, H, W, S).
  Depends on the map statistics, so it runs per training setup (cheap: ~ms per patient).

``patient_preprocessing`` = both, one dict per patient in and out (inference, MONAI Deploy/Label).

What the network sees and why (issue 11): the CT through a fixed window (W 250 / L 30 -> [0, 1]),
not z-scored per patient (that removed absolute density); maps z-scored with the TRAINING cohort's
statistics, cut into 32 bins and centred (bin / 32 - 0.5; 0 outside the tumour), not bins 1..32
(every channel was 16.5 x mask); an explicit mask channel; 0 padding in every channel; a field of
view that never cuts the tumour; no zoom anywhere (size is information).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monai.transforms import (AsDiscreted, Compose, ConcatItemsd, DeleteItemsd, EnsureChannelFirstd, LoadImaged,
                              ScaleIntensityRanged)

from custom_transforms.descriptors import TumourDescriptorsd
from custom_transforms.maps import NormaliseMapsd, VoxelRadiomicsMapsd
from custom_transforms.patient import PatientIdd
from custom_transforms.spatial import PAPER_PIXDIM, ResampleToSpacingd
from custom_transforms.tumour_stack import TumourStackd

__all__ = ["CT_CHANNEL", "MASK_CHANNEL", "channel_names", "patient_preprocessing", "stack_preprocessing",
           "volume_preprocessing", "window_bounds"]

#: names of the first and last input channels (the maps' names sit between them).
CT_CHANNEL, MASK_CHANNEL = "ct", "mask"


def window_bounds(width: float, level: float) -> tuple[float, float]:
    """(lower, upper) HU of a CT window: level -/+ width / 2 ((250, 30) -> (-95, 155))."""
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    return level - width / 2.0, level + width / 2.0


def _feature_list(features) -> list[str]:
    """Resolved feature names; an empty list means "no maps" (the CT + mask control, row f)."""
    if features is not None and not isinstance(features, str) and len(list(features)) == 0:
        return []
    from voxsurv.maps.features import resolve_features

    return resolve_features(features)


def volume_preprocessing(features: str | Sequence[str] | None = None, pixdim: Sequence[float] | None = PAPER_PIXDIM,
                         maps_backend: str = "torch", maps_cache_dir: str | Path | None = None,
                         image_key: str = "image", mask_key: str = "mask", load: bool = True,
                         maps_settings=None, maps_device: str | None = None) -> Compose:
    """Files (or loaded volumes) of one patient -> resampled CT, mask, descriptors and maps.

    Chain: LoadImaged + EnsureChannelFirstd (``load=True``) -> PatientIdd (from the CT file name
    when the dict has no ``patient_id``) -> ResampleToSpacingd (CT bilinear, mask nearest) ->
    TumourDescriptorsd -> VoxelRadiomicsMapsd (through ``maps_cache_dir`` when given).

    Output keys: ``image`` (1, X, Y, Z) float32 MetaTensor in HU (not clipped), ``mask``
    (1, X, Y, Z), ``maps`` (F, X, Y, Z) float32 NaN outside the tumour (meta ``channel_names``;
    absent when ``features`` is an empty list), ``descriptors`` float32 (2,) = [log tumour volume
    in ml, mean tumour HU] on the resampled grid (custom_transforms.DESCRIPTOR_NAMES), and
    ``patient_id``; other input keys (labels) pass through. Deterministic and label-free.
    An empty or unreadable patient raises (InputError naming the patient where it can).

    Args:
        features: map names/classes (voxsurv.maps.features), None = all 90, [] = no maps.
        pixdim: voxel size after resampling, mm (x, y, z); the paper's 1 x 1 x 5. None keeps the
            image's own grid (the mask must lie on it).
        maps_backend: "torch" or "pyradiomics".
        maps_cache_dir: content-addressed maps cache (voxsurv.maps.cache); None computes every call.
        image_key, mask_key: keys of the CT and the tumour mask (file paths when ``load``).
        load: read files with LoadImaged + EnsureChannelFirstd; False = the keys already hold
            channel-first (1, x, y, z) MetaTensors in HU.
        maps_settings: voxsurv.maps.MapSettings (default: the paper's; it keys the cache).
        maps_device: torch device of the maps engine ("cpu", "cuda"). It is not part of the cache
            key: float64 CPU and CUDA maps are meant to agree to rounding, which is unmeasured
            here (no GPU; scripts/device_check_maps.sh checks it).
    """
    keys = [image_key, mask_key]
    transforms = []
    if load:
        transforms += [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys)]
    transforms.append(PatientIdd(image_key))
    if pixdim is not None:
        transforms.append(ResampleToSpacingd(keys, pixdim=tuple(pixdim), mode=("bilinear", "nearest")))
    transforms.append(TumourDescriptorsd(image_key, mask_key=mask_key))
    names = _feature_list(features)
    if names:
        transforms.append(VoxelRadiomicsMapsd(image_key, mask_key=mask_key, output_key="maps", features=names,
                                              backend=maps_backend, settings=maps_settings, device=maps_device,
                                              cache_dir=maps_cache_dir))
    return Compose(transforms)


def channel_names(features: Sequence[str]) -> list[str]:
    """Channel order of the network input: the CT, the maps, the mask."""
    return [CT_CHANNEL, *features, MASK_CHANNEL]


def stack_preprocessing(map_statistics=None, features: Sequence[str] | None = None, img_size: int = 48,
                        min_area_mm2: float = 10.0, fov_margin: float = 0.15, min_fov_mm: float = 20.0,
                        hu_window: Sequence[float] = (250.0, 30.0), image_key: str = "image",
                        mask_key: str = "mask", maps_key: str = "maps") -> Compose:
    """Output of :func:`volume_preprocessing` -> ``{"image": (C, H, W, S), "descriptors", "patient_id",
    ...}``: the network input of one patient, C = 2 + F channels (ct, maps..., mask).

    Chain: ScaleIntensityRanged (CT: HU window width/level -> [0, 1], clipped) -> NormaliseMapsd
    (training statistics, ``scale="centred"``: bin / n_bins - 0.5 inside the tumour, 0 outside)
    -> AsDiscreted (mask -> 1 inside, 0 outside) -> ConcatItemsd -> TumourStackd (one field of
    view per patient, 0 padding, anti-aliased resize to ``img_size``) -> DeleteItemsd (maps, mask).
    The stack's meta holds channel_names, slice_indices, crop_boxes, fov_mm, tumour_cut_slices and
    the resampled volume's affine and shape (see custom_transforms.tumour_stack.TumourStack).

    Args:
        map_statistics: voxsurv.maps.normalise.MapStatistics (or its JSON path) fitted on the
            training patients; None only without maps (``features=[]``).
        features: the maps to use, in channel order; None = all the statistics' maps. The maps
            from volume_preprocessing may hold more (picked by name).
        img_size: in-plane size of each slice, pixels.
        min_area_mm2: slices with less tumour are dropped.
        fov_margin: field-of-view margin per side, fraction of the largest tumour extent.
        min_fov_mm: smallest field of view, mm.
        hu_window: (width, level) HU of the CT scaling; (250, 30) -> [-95, 155] HU -> [0, 1].
        image_key, mask_key, maps_key: keys of the volume stage's output.
    """
    from voxsurv.maps.normalise import MapStatistics

    if map_statistics is not None and not isinstance(map_statistics, MapStatistics):
        map_statistics = MapStatistics.load(map_statistics)
    if features is not None and not isinstance(features, str) and len(list(features)) == 0:
        names: list[str] = []
    elif map_statistics is None:
        raise ValueError("stack_preprocessing needs map_statistics (fitted on the training patients) "
                         "unless features=[] (CT + mask only)")
    else:
        if features is not None:
            map_statistics = map_statistics.select(_feature_list(features))
        names = list(map_statistics.names)
    lower, upper = window_bounds(*hu_window)
    transforms = [ScaleIntensityRanged(image_key, a_min=lower, a_max=upper, b_min=0.0, b_max=1.0, clip=True)]
    if names:
        transforms.append(NormaliseMapsd(maps_key, statistics=map_statistics, mask_key=mask_key, scale="centred"))
    transforms += [AsDiscreted(mask_key, threshold=0.5),
                   ConcatItemsd([image_key, maps_key, mask_key] if names else [image_key, mask_key], name=image_key),
                   TumourStackd(image_key, mask_key=mask_key, img_size=img_size, min_area_mm2=min_area_mm2,
                                fov_margin=fov_margin, min_fov_mm=min_fov_mm, channel_names=channel_names(names)),
                   DeleteItemsd([maps_key, mask_key] if names else [mask_key])]
    return Compose(transforms)


def patient_preprocessing(map_statistics=None, features: str | Sequence[str] | None = None,
                          pixdim: Sequence[float] = PAPER_PIXDIM, maps_backend: str = "torch",
                          maps_cache_dir: str | Path | None = None, img_size: int = 48, min_area_mm2: float = 10.0,
                          fov_margin: float = 0.15, min_fov_mm: float = 20.0,
                          hu_window: Sequence[float] = (250.0, 30.0), image_key: str = "image",
                          mask_key: str = "mask", load: bool = True, maps_settings=None,
                          maps_device: str | None = None) -> Compose:
    """:func:`volume_preprocessing` then :func:`stack_preprocessing` in one Compose: one dict per
    patient in (image and mask files), one network input out. ``features`` None = the statistics'
    maps (all 90 without statistics); arguments as in the two stages."""
    from voxsurv.maps.normalise import MapStatistics

    if map_statistics is not None and not isinstance(map_statistics, MapStatistics):
        map_statistics = MapStatistics.load(map_statistics)
    if features is None and map_statistics is not None:
        features = list(map_statistics.names)
    return Compose([
        volume_preprocessing(features, pixdim=pixdim, maps_backend=maps_backend, maps_cache_dir=maps_cache_dir,
                             image_key=image_key, mask_key=mask_key, load=load, maps_settings=maps_settings,
                             maps_device=maps_device),
        stack_preprocessing(map_statistics, features=features, img_size=img_size, min_area_mm2=min_area_mm2,
                            fov_margin=fov_margin, min_fov_mm=min_fov_mm, hu_window=hu_window,
                            image_key=image_key, mask_key=mask_key),
    ])
