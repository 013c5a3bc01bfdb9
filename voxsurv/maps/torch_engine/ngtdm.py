"""Neighbouring Grey Tone Difference Matrix (NGTDM) features per voxel kernel, as PyRadiomics.

PyRadiomics (`cmatrices.c: calculate_ngtdm`, distance 1) takes every kernel voxel, averages the
levels of its 8 in-plane neighbours (force2D) that lie inside the kernel box and the ROI, and adds
|level - average| to s_i of its level. A kernel voxel with no such neighbour is still counted in
n_i (and Nvp) with a difference of 0 (the C code sets diff = 0, it does not skip the voxel).
Grey levels absent from the kernel have p_i = 0 and are left out of every sum, so Ngp is the
number of distinct levels in the kernel.

Edge cases kept as in `ngtdm.py`: Coarseness = 1e6 when sum p_i s_i = 0; Contrast = 0 when Ngp <= 1;
Busyness = 0 when its denominator is 0; Strength = 0 when sum s_i = 0. Busyness' denominator
sum |i p_i - j p_j| is computed in float64 with PyRadiomics' operation order (p = n / Nvp, then
i * p) in both precisions: when i n_i = j n_j for the only two levels, rounding decides between
0 (-> Busyness 0) and ~1e-16 (-> a huge Busyness, e.g. 2.7e15 for 3 voxels of level 2 and 2 of
level 3), and float32 would decide differently. Contrast and Strength use closed forms of their
double sums over level pairs (same values to ~1e-16 relative, O(K^2) instead of O(K^4)).
"""

from __future__ import annotations

import torch

from voxsurv.maps.features import FEATURE_CLASSES, family_features
from voxsurv.maps.torch_engine.kernel_neighbours import (
    check_levels, group_stats, in_chunks, neighbour_shifts, position_major, position_pairs,
)

#: PyRadiomics' 5 NGTDM features.
FEATURES: tuple[str, ...] = FEATURE_CLASSES["ngtdm"]


def neighbourhood_difference(grid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(K, K, n) levels -> (K*K, n) |level - mean level of its neighbours in the kernel| (0 if none)."""
    k, _, n = grid.shape
    count = torch.zeros_like(grid)
    total = torch.zeros_like(grid)
    for nb in neighbour_shifts(grid, 0):
        count += nb > 0
        total += nb
    count = count.reshape(k * k, n)
    level = grid.reshape(k * k, n)
    mean = total.reshape(k * k, n).to(dtype) / torch.where(count == 0, 1, count).to(dtype)
    diff = (level.to(dtype) - mean).abs()
    return torch.where((count > 0) & (level > 0), diff, 0.0)


def _compute_chunk(levels: torch.Tensor, names: list[str], dtype: torch.dtype, n_keys: int) -> dict:
    n, k, _ = levels.shape
    m = k * k
    device = levels.device
    grid = position_major(levels)
    flat = grid.reshape(m, n)
    valid = flat > 0
    diff = neighbourhood_difference(grid, dtype)
    key = flat.long()
    s_level = torch.zeros(n_keys, n, dtype=dtype, device=device).scatter_add_(0, key, diff)

    # One "slot" per distinct grey level of each kernel, holding n_i, p_i = n_i / Nvp and s_i.
    # Slots are either kernel positions (the first voxel of each level) or the grey levels
    # themselves, whichever gives fewer slot pairs for Busyness and Complexity (positions at
    # K = 3, levels at K = 5 with ~12 levels).
    if m <= n_keys:
        _, count, present = group_stats(flat, valid)
        level = flat
        s = torch.where(present, s_level.gather(0, key), 0.0)
    else:
        count = torch.zeros(n_keys, n, dtype=torch.int32, device=device)
        count.scatter_add_(0, key, valid.to(torch.int32))  # row 0 (outside) stays 0
        present = count > 0
        level = torch.arange(n_keys, device=device)[:, None]
        s = s_level
    nvp = valid.to(dtype).sum(0)  # >= 1: the centre voxel is in its kernel
    i = level.to(dtype)
    f = present.to(dtype)
    p = torch.where(present, count.to(dtype) / nvp, 0.0)
    sum_ps = (p * s).sum(0)
    sum_s = s.sum(0)
    ngp = f.sum(0)

    out = {}
    want = set(names)
    if "Coarseness" in want:
        nonzero = sum_ps != 0
        out["Coarseness"] = torch.where(nonzero, 1.0 / torch.where(nonzero, sum_ps, 1.0), 1e6)
    if "Contrast" in want:
        # sum_ij p_i p_j (i - j)^2 = 2 P (sum_i p_i (i - mu)^2), P = sum p, mu = sum p i / P.
        sum_p = p.sum(0)
        mu = (p * i).sum(0) / sum_p
        pair_sum = 2.0 * sum_p * (p * (i - mu) ** 2).sum(0)
        div = ngp * (ngp - 1)
        num = pair_sum * sum_s / nvp
        out["Contrast"] = torch.where(div != 0, num / torch.where(div != 0, div, 1.0), 0.0)
    if "Strength" in want:
        # sum_ij (p_i + p_j)(i - j)^2 over present levels = 2 sum_i p_i (Ngp (i - c)^2 + C2),
        # c = mean of the present levels, C2 = sum_j (j - c)^2.
        c = (f * i).sum(0) / ngp
        dc = torch.where(present, i - c, 0.0)
        c2 = (dc ** 2).sum(0)
        st = 2.0 * (p * (ngp * dc ** 2 + c2)).sum(0)
        out["Strength"] = torch.where(sum_s != 0, st / torch.where(sum_s != 0, sum_s, 1.0), 0.0)
    if want & {"Busyness", "Complexity"}:
        pa, pb = position_pairs(p.shape[0], device)

        def pair(x):
            return x.index_select(0, pa), x.index_select(0, pb)

        both = torch.logical_and(*pair(present))
        if "Busyness" in want:
            a_a, a_b = pair(level.double() * (count.double() / valid.double().sum(0)))
            den = (2.0 * torch.where(both, (a_a - a_b).abs(), 0.0).sum(0)).to(dtype)
            out["Busyness"] = torch.where(den != 0, sum_ps / torch.where(den != 0, den, 1.0), 0.0)
        if "Complexity" in want:
            (i_a, i_b), (ps_a, ps_b), (p_a, p_b) = pair(i), pair(p * s), pair(p)
            term = (i_a - i_b).abs() * (ps_a + ps_b) / (p_a + p_b)
            out["Complexity"] = 2.0 * torch.where(both, term, 0.0).sum(0) / nvp
    return out


def compute(levels: torch.Tensor, n_levels: int, features: list[str] | None = None,
            dtype: torch.dtype = torch.float64, chunk_size: int = 16384) -> dict[str, torch.Tensor]:
    """NGTDM feature values of every kernel.

    Args:
        levels: (N, K, K) integer grey levels of each voxel's kernel, 0 = not in the kernel.
        n_levels: number of grey levels of the ROI (common engine signature; the levels' own
            maximum is used, so a wrong value cannot index out of range).
        features: PyRadiomics NGTDM names; None = all 5.
        dtype: float64 (PyRadiomics' precision) or float32.
        chunk_size: voxels per chunk; memory is ~ chunk_size * K^4 bytes a few times.

    Returns:
        {name: (N,) tensor of `dtype` on levels' device}.
    """
    check_levels(levels)
    names = family_features("ngtdm", features)
    n_keys = int(levels.max()) + 1 if levels.numel() else 1
    return in_chunks(levels, chunk_size, lambda part: _compute_chunk(part, names, dtype, n_keys),
                     names, dtype)
