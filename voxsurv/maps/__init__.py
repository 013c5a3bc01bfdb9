"""Voxel-level radiomics maps: 90 IBSI features per voxel in a sliding window inside the tumour.

`compute_maps` (numpy in, (F, z, y, x) maps out) with a `torch` engine and the `pyradiomics`
reference; `FEATURE_NAMES` the 90 names; `MapSettings` the parameters; `MapStatistics` the
cohort z-score + binning applied before the network.
"""

from voxsurv.maps.api import BACKENDS, compute_maps
from voxsurv.maps.features import FEATURE_CLASSES, FEATURE_NAMES, resolve_features
from voxsurv.maps.settings import MapSettings

__all__ = ["BACKENDS", "FEATURE_CLASSES", "FEATURE_NAMES", "MapSettings", "MapStatistics",
           "compute_maps", "resolve_features"]


def __getattr__(name):  # MapStatistics lazily, so importing voxsurv.maps stays light
    if name == "MapStatistics":
        from voxsurv.maps.normalise import MapStatistics

        return MapStatistics
    raise AttributeError(f"module 'voxsurv.maps' has no attribute {name!r}")
