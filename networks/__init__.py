"""Vision-Mamba survival network and its exact CPU selective scan.

Imports are lazy so that ``networks.selective_scan`` needs torch only (device checks on machines
without MONAI); ``networks.VisionMambaSurv`` (a MONAI bundle ``_target_``) loads the network.
"""

from __future__ import annotations

import importlib

__all__ = ["VisionMambaSurv", "selective_scan"]

_WHERE = {"VisionMambaSurv": "networks.vision_mamba", "selective_scan": "networks.selective_scan"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'networks' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_WHERE))
