"""Vectorised torch engine for voxel-level radiomics maps (PyRadiomics voxel-based, force2D).

`compute_torch_maps` is added once the feature families land; `common` holds the shared
discretisation and kernel-patch extraction that every family consumes.
"""
