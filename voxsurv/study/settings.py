"""What defines a study run besides the protocol file (saved in results.json). Fixed before the
run; nothing here is chosen on the target test split."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The smoke study's maps: cheap first-order and texture maps (the full study uses all 90).
SMOKE_FEATURES = ["firstorder_Mean", "firstorder_Entropy", "glcm_Contrast", "glrlm_RunEntropy"]


@dataclass
class StudySettings:
    """Study-level settings. Bundle settings (epochs, lr, network) live in the protocol's config
    files (bundles/*/configs/study/), so the bundle run records them."""
    seed: int = 0                    # source folds, voxel subsampling, bootstrap
    seeds: tuple = (0, 1, 2)         # training seeds of every candidate (members: folds x seeds)
    n_folds: int = 5
    workers: int = 2                 # processes side by side (maps, PyRadiomics, screening, bundle runs)
    executor: str = "pool"           # bundle runs: voxsurv.study.bundle_runs.EXECUTORS
    screen_horizon_days: float = 730.0
    screen_threshold: float = 0.6
    screen_fallback_k: int = 8
    max_maps: int = 16               # cap on map channels after decorrelation
    max_abs_r: float = 0.8           # decorrelation: skip a map with |r| above this to a kept one
    corr_voxels_per_patient: int = 400
    bootstrap: int = 1000
    finetune_modes: tuple = ("paper", "head")
    smoke: bool = False
    smoke_features: list = field(default_factory=lambda: list(SMOKE_FEATURES))

    @classmethod
    def for_smoke(cls, **kw) -> "StudySettings":
        """A few patients per role, 2 folds x 1 seed, 4 maps, in-process bundle runs, 50 resamples."""
        base = dict(smoke=True, seeds=(0,), n_folds=2, workers=1, executor="inprocess", bootstrap=50,
                    corr_voxels_per_patient=100)
        base.update(kw)
        return cls(**base)
