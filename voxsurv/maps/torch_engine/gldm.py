"""Grey Level Dependence Matrix (GLDM) features per voxel kernel, as PyRadiomics voxel mode.

PyRadiomics (`cmatrices.c: calculate_gldm`, defaults `gldm_a` = 0, distance 1) counts, for every
kernel voxel, its dependent neighbours: the 8 in-plane neighbours (force2D) inside the kernel box
and the ROI whose level differs by <= alpha (= equal levels for alpha 0). The voxel adds one count
at (its level, dependence + 1). Every kernel voxel is counted, so Nz = kernel voxel count. Grey
levels absent from the ROI are dropped from the matrix without changing any value.

Here each feature is a sum over kernel voxels (or over distinct keys, found by pairwise comparison, for
the non-uniformities and the entropy), computed for all kernels at once. Works for any odd K.
"""

from __future__ import annotations

import torch

from voxsurv.maps.features import FEATURE_CLASSES, family_features
from voxsurv.maps.torch_engine.kernel_neighbours import (
    OFFSETS_2D, check_levels, distinct_key_sum, in_chunks, neighbour_shifts, position_major,
)

#: PyRadiomics' 14 default GLDM features (GrayLevelNonUniformityNormalized and
#: DependencePercentage are deprecated there and not computed).
FEATURES: tuple[str, ...] = FEATURE_CLASSES["gldm"]

_EPS = 2.220446049250313e-16  # numpy.spacing(1), PyRadiomics' entropy epsilon


def dependence_counts(grid: torch.Tensor, alpha: int = 0) -> torch.Tensor:
    """(K, K, n) levels -> (K*K, n) number of neighbours in the kernel within `alpha` levels."""
    k, _, n = grid.shape
    dep = torch.zeros_like(grid)
    for nb in neighbour_shifts(grid, 0):
        if alpha == 0:
            dep += nb == grid  # grid > 0 wherever dep is used
        else:
            dep += (nb > 0) & ((nb - grid).abs() <= alpha)
    return dep.reshape(k * k, n)


def _compute_chunk(levels: torch.Tensor, names: list[str], dtype: torch.dtype, alpha: int,
                   n_levels: int) -> dict:
    n, k, _ = levels.shape
    m = k * k
    grid = position_major(levels)
    flat = grid.reshape(m, n)
    valid = flat > 0
    dep = dependence_counts(grid, alpha)
    n_dep = len(OFFSETS_2D) + 1

    w = valid.to(dtype)
    i = flat.to(dtype)
    j = (dep + 1).to(dtype)
    nz = w.sum(0)
    nz = torch.where(nz == 0, torch.ones_like(nz), nz)
    i2 = torch.where(valid, i * i, 1.0)
    j2 = j * j

    def wsum(x):
        return (w * x).sum(0)

    def non_uniformity(key, n_keys):
        return distinct_key_sum(key, valid, n_keys, lambda c: c.to(dtype) ** 2)

    out = {}
    want = set(names)
    if want & {"SmallDependenceEmphasis"}:
        out["SmallDependenceEmphasis"] = wsum(1.0 / j2) / nz
    if want & {"LargeDependenceEmphasis"}:
        out["LargeDependenceEmphasis"] = wsum(j2) / nz
    if want & {"GrayLevelNonUniformity"}:
        out["GrayLevelNonUniformity"] = non_uniformity(flat, n_levels) / nz
    if want & {"DependenceNonUniformity", "DependenceNonUniformityNormalized"}:
        s = non_uniformity(dep, n_dep)
        out["DependenceNonUniformity"] = s / nz
        out["DependenceNonUniformityNormalized"] = s / nz ** 2
    if want & {"GrayLevelVariance"}:
        mu = (wsum(i) / nz)
        out["GrayLevelVariance"] = wsum((i - mu) ** 2) / nz
    if want & {"DependenceVariance"}:
        mu = (wsum(j) / nz)
        out["DependenceVariance"] = wsum((j - mu) ** 2) / nz
    if want & {"DependenceEntropy"}:
        def plogp(c):
            p = c.to(dtype) / nz
            return p * torch.log2(p + _EPS)

        out["DependenceEntropy"] = -distinct_key_sum(flat * n_dep + dep, valid, n_levels * n_dep, plogp)
    if want & {"LowGrayLevelEmphasis"}:
        out["LowGrayLevelEmphasis"] = wsum(1.0 / i2) / nz
    if want & {"HighGrayLevelEmphasis"}:
        out["HighGrayLevelEmphasis"] = wsum(i2) / nz
    if want & {"SmallDependenceLowGrayLevelEmphasis"}:
        out["SmallDependenceLowGrayLevelEmphasis"] = wsum(1.0 / (i2 * j2)) / nz
    if want & {"SmallDependenceHighGrayLevelEmphasis"}:
        out["SmallDependenceHighGrayLevelEmphasis"] = wsum(i2 / j2) / nz
    if want & {"LargeDependenceLowGrayLevelEmphasis"}:
        out["LargeDependenceLowGrayLevelEmphasis"] = wsum(j2 / i2) / nz
    if want & {"LargeDependenceHighGrayLevelEmphasis"}:
        out["LargeDependenceHighGrayLevelEmphasis"] = wsum(i2 * j2) / nz
    return out


def compute(levels: torch.Tensor, n_levels: int, features: list[str] | None = None,
            dtype: torch.dtype = torch.float64, alpha: int = 0,
            chunk_size: int = 16384) -> dict[str, torch.Tensor]:
    """GLDM feature values of every kernel.

    Args:
        levels: (N, K, K) integer grey levels of each voxel's kernel, 0 = not in the kernel.
        n_levels: number of grey levels of the ROI (common engine signature; the levels' own
            maximum is used, so a wrong value cannot index out of range).
        features: PyRadiomics GLDM names without class prefix; None = all 14.
        dtype: float64 (PyRadiomics' precision) or float32.
        alpha: PyRadiomics `gldm_a`, the level difference that still counts as dependent.
        chunk_size: voxels per chunk; memory is ~ chunk_size * K^4 bytes a few times.

    Returns:
        {name: (N,) tensor of `dtype` on levels' device}.
    """
    check_levels(levels)
    names = family_features("gldm", features)
    n_levels = int(levels.max()) + 1 if levels.numel() else 1  # level numbers 0 .. max
    return in_chunks(levels, chunk_size,
                     lambda part: _compute_chunk(part, names, dtype, int(alpha), n_levels), names, dtype)
