"""Import paths that moved when the project was cut into layers (issue 14; docs/architecture.md),
old -> new, in one table.

Why: configs and code written before the move still name the old paths: a run's
``config_resolved.json`` (written so the run can be repeated from its output folder), a bundle
config copied and edited by a user, a user's own script (``from survival.metrics import ...``).
They cannot keep working (the generic top-level names ``survival`` and ``voxelmaps`` are gone on
purpose, and no alias modules are kept), so they fail with a message that names the new path:

- ``import voxsurv`` appends :class:`MovedModuleFinder` to ``sys.meta_path``. Python asks it only
  after every other finder failed, so it never changes an import that works (another
  distribution's ``survival`` still wins); for an old path it raises ModuleNotFoundError naming the
  new one. Every bundle config imports ``voxsurv`` first, so ``$import voxsurv.training.runner`` or
  ``_target_: survival.handlers.ConcordanceIndex`` in an old config fails with that message.
- ``python -m voxsurv.core.upgrade_paths FILE...`` lists the old paths in text files (configs, scripts);
  ``--write`` rewrites them to the new paths.

Content-addressed keys are NOT affected by the move: the stack and maps caches hash transform
class names and map settings, never module paths; shipped weights are plain state dicts. What does
change is every key that hashes a config file's bytes (the study's finished-run check, the
``voxsurv predict`` resume key): docs/architecture.md, "Moved in issue 14".
"""

from __future__ import annotations

import importlib.abc
import re
import sys

#: old import path -> new one (a module, or a name in a module where a module was split up)
MOVED = {
    "survival": "voxsurv.stats",
    "survival.calibration": "voxsurv.stats.calibration",
    "survival.cox_loss": "voxsurv.stats.cox_loss",
    "survival.decision_curve": "voxsurv.stats.decision_curve",
    "survival.evaluation": "voxsurv.stats.evaluation",
    "survival.figures": "voxsurv.stats.figures",
    "survival.handlers": "voxsurv.training.concordance",
    "survival.kaplan_meier": "voxsurv.stats.kaplan_meier",
    "survival.metrics": "voxsurv.stats.metrics",
    "survival.paired_bootstrap": "voxsurv.stats.paired_bootstrap",
    "survival.report": "voxsurv.stats.report",
    "survival.risk_groups": "voxsurv.stats.risk_groups",
    "survival.risk_groups.risk_tier": "voxsurv.stats.risk_groups.high_risk_group",
    "survival.sample_checks": "voxsurv.stats.sample_checks",
    "survival.table1": "voxsurv.stats.table1",
    "survival.validation": "voxsurv.stats.validation",
    "voxelmaps": "voxsurv.maps",
    "voxsurv.errors": "voxsurv.core.errors",
    "voxsurv.jsonfile": "voxsurv.core.jsonfile",
    "voxsurv.tables": "voxsurv.core.tables",
    "voxsurv.privacy": "voxsurv.core.privacy",
    "voxsurv.console": "voxsurv.core.console",
    "voxsurv.output_paths": "voxsurv.core.output_paths",
    "voxsurv.patient_folders": "voxsurv.core.patient_folders",
    "voxsurv.manifest": "voxsurv.data.manifest",
    "voxsurv.ingest": "voxsurv.data.ingest",
    "voxsurv.training.paths": "voxsurv.core.bundle_paths",
    # the deprecated shim training/runner.py re-exported four names from three modules
    "voxsurv.training.runner": "voxsurv.core.bundle_paths",
    "voxsurv.training.runner.bundle_root": "voxsurv.core.bundle_paths.bundle_root",
    "voxsurv.training.runner.repo_root": "voxsurv.core.bundle_paths.repo_root",
    "voxsurv.training.runner.ensure_demo_cohort": "voxsurv.training.demo.ensure_demo_cohort",
    "voxsurv.training.runner.say": "voxsurv.training.distributed.say",
    "voxsurv.training.predictions.PREDICTION_COLUMNS": "voxsurv.training.predictions.RUN_PREDICTION_COLUMNS",
}
#: what the old runner shim held, for the error message (it was split, not renamed)
_SPLIT = {"voxsurv.training.runner": "bundle_root, repo_root -> voxsurv.core.bundle_paths; "
                                     "ensure_demo_cohort -> voxsurv.training.demo; say -> voxsurv.training.distributed"}
#: old top-level names: rewritten only as `name.something` (plain `survival` is an English word)
_TOP_LEVEL = {"survival", "voxelmaps"}


def new_path(old: str) -> str | None:
    """The new path of ``old`` (a module or ``module.name``), by its longest moved prefix; None if
    it did not move."""
    parts = old.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in MOVED:
            return ".".join([MOVED[prefix], *parts[n:]])
    return None


def moved_message(old: str) -> str:
    where = f"was split up ({_SPLIT[old]})" if old in _SPLIT else f"moved to {new_path(old)}"
    return (f"{old} {where} when voxsurv was cut into layers (issue 14; docs/architecture.md lists what "
            f"moved where); rewrite old configs and scripts with "
            f"`python -m voxsurv.core.upgrade_paths --write FILE`")


def missing_attribute(module: str, name: str) -> AttributeError:
    """For a package's ``__getattr__`` (PEP 562): ``module.name`` is an old path -> the moved
    message, else Python's own. MONAI's config imports ``$import voxsurv.training.runner`` through
    optional_import, which swallows the finder's error; the expression that uses the name then
    reaches here."""
    old = f"{module}.{name}"
    if old in MOVED:
        return AttributeError(moved_message(old))
    return AttributeError(f"module {module!r} has no attribute {name!r}")


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Last finder on ``sys.meta_path``: a clear error for an old module path, nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        # name=None on purpose: pydoc.locate (how MONAI's config resolves `_target_`) turns a
        # ModuleNotFoundError whose .name is the path it tried into a silent None ("Cannot locate
        # class or function path"); without a name it passes this message on.
        raise ModuleNotFoundError(moved_message(fullname), name=None)


def install() -> None:
    """Append the finder once (idempotent; a reload of voxsurv does not add a second)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())


_PATTERN = re.compile("|".join(
    rf"(?<![\w.]){re.escape(old)}(?=\.[A-Za-z_])" if old in _TOP_LEVEL else rf"(?<![\w.]){re.escape(old)}(?![\w])"
    for old in sorted(MOVED, key=len, reverse=True)))


def rewrite(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``text`` with every old path replaced by its new one, and the (old, new) pairs replaced."""
    found: list[tuple[str, str]] = []

    def replace(match: re.Match) -> str:
        new = MOVED[match.group(0)]
        found.append((match.group(0), new))
        return new

    return _PATTERN.sub(replace, text), found
