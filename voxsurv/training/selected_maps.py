"""The maps a bundle trains on: the screening study's selection, read from its JSON (or from the
`features` recorded beside shipped weights), with a small fixed default when there is none."""

from __future__ import annotations

import json
from pathlib import Path

from voxsurv.core.errors import InputError

#: Default maps when no selection file exists: two or so per texture family, covering level (Mean),
#: spread (Variance, Entropy), asymmetry (Skewness), local contrast and disorder (GLCM Contrast,
#: JointEntropy, Idm) and run/zone disorder (RunEntropy, ZoneEntropy).
DEFAULT_MAPS = ["firstorder_Mean", "firstorder_Variance", "firstorder_Entropy", "firstorder_Skewness",
                "glcm_Contrast", "glcm_JointEntropy", "glcm_Idm", "glrlm_RunEntropy", "glszm_ZoneEntropy"]


def selected_maps(path: str | Path | None = None) -> list[str]:
    """Map names from a JSON list, or a dict with "selected"/"features"/"maps", or DEFAULT_MAPS
    when `path` is None or does not exist."""
    if path is None or not Path(path).exists():
        return list(DEFAULT_MAPS)
    with open(path) as f:
        d = json.load(f)
    names = d if isinstance(d, list) else d.get("selected") or d.get("features") or d.get("maps")
    if not names:
        raise InputError("no map names found", path=str(path),
                         fix='write a JSON list of feature names or {"selected": [...]}')
    return [str(n) for n in names]
