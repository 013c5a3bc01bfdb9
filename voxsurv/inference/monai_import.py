"""Import MONAI for `voxsurv predict` without the optional packages prediction never uses.

Why: ``import monai`` imports every MONAI submodule (``monai/__init__.py``: ``load_submodules``)
and with them each optional dependency that is installed: Ignite (``monai.engines``/``handlers``;
it pulls ``torch.distributed`` and sympy), matplotlib (``monai.utils.jupyter_utils``,
``monai.visualize``) and scikit-learn (``monai.metrics``). Prediction uses none of them (config
parsing, transforms, the network; overlays are drawn with numpy + Pillow), yet they were about
half of MONAI's import time, the largest part of the cold start (scripts/bench_inference.py).

While MONAI imports, these packages are reported absent, exactly as in an installation without
them: MONAI keeps its own placeholders (OptionalImportError if one is ever used). Afterwards the
packages import normally, but MONAI's Ignite workflows stay unusable in that process, so only a
process that ends after predicting (the command line, see voxsurv.cli.main) does this.
"""

from __future__ import annotations

import sys

__all__ = ["UNUSED_BY_PREDICTION", "import_monai_for_prediction"]

#: optional MONAI dependencies that `import monai` loads but prediction never calls
UNUSED_BY_PREDICTION = ("ignite", "matplotlib", "sklearn")


class _ReportAbsent:
    """A meta-path finder that makes ``import <name>`` (and its submodules) fail as if not installed."""

    def __init__(self, names) -> None:
        self.names = tuple(names)
        self.refused: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in self.names:
            self.refused.add(top)
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def import_monai_for_prediction(skip=UNUSED_BY_PREDICTION) -> list[str]:
    """Import ``monai`` (and ``monai.bundle``) with ``skip`` reported absent; returns the packages
    MONAI asked for and did not get. Does nothing when MONAI is imported already (its optional
    parts are then whatever that import found) or a skipped package is (MONAI then uses it)."""
    if "monai" in sys.modules:
        return []
    finder = _ReportAbsent(name for name in skip if name not in sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        import monai  # noqa: F401
        import monai.bundle  # noqa: F401  (not loaded by monai/__init__; the predictor parses the bundle with it)
    finally:
        sys.meta_path.remove(finder)
    return sorted(finder.refused)
