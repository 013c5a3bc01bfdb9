"""The real cross-cohort study (Lung1 -> Radiogenomics): split file, baselines, map screening,
Vision-Mamba transfer runs and the study runner. Library code for scripts/screen_maps.py and
scripts/run_real_study.py; it builds on voxsurv.training, voxsurv.maps and survival."""
