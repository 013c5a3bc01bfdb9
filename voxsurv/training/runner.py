"""Deprecated: the bundle helpers that lived here moved to one module per responsibility
(voxsurv.core.bundle_paths, .distributed, .demo, .pretraining, .freezing, .checkpoints,
.predictions, .report). These names remain only until the last importers (inference packaging,
study publishing, `voxsurv cv`, the inference bundle's config) switch; do not add to them."""

from voxsurv.training.demo import ensure_demo_cohort  # noqa: F401
from voxsurv.training.distributed import say  # noqa: F401
from voxsurv.core.bundle_paths import bundle_root, repo_root  # noqa: F401
