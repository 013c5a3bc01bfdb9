"""Inference with the voxsurv bundle: risk score, risk tier, S(t), Grad-CAM on the input grid,
PNG overlay and report per patient (predictor), and packaging a finetune output into the bundle
(packaging). Heavy modules are imported where used."""

from voxsurv.inference.bundle_info import INFO_FILE, TIERS, InferenceInfo, load_info, risk_tier  # noqa: F401
