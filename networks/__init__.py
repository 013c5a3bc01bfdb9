"""Vision-Mamba survival network (per-patient slice stacks), its ensemble, and the exact CPU scan.

Imports are lazy so that ``networks.selective_scan`` needs torch only (device checks on machines
without MONAI); ``networks.VisionMambaSurv`` and ``networks.SurvivalEnsemble`` (MONAI bundle
``_target_`` names) load the network.
"""

from __future__ import annotations

import importlib

__all__ = ["VisionMambaSurv", "SurvivalEnsemble", "network_from_state_dict", "selective_scan"]

_WHERE = {"VisionMambaSurv": "networks.vision_mamba", "SurvivalEnsemble": "networks.ensemble",
          "network_from_state_dict": "networks.ensemble", "selective_scan": "networks.selective_scan"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'networks' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))
