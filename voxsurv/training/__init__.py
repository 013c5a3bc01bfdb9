"""Data-pipeline pieces for the training bundles: the demo cohort, patient folds and splits, the
per-slice dataset with its persistent cache, the event-guaranteeing batch sampler, and the
helpers the bundle configs call (`ensure_demo_cohort`, `ensure_pretrained`, predictions).

Modules import torch/MONAI lazily where they can, so `voxsurv --help` stays fast.
"""
