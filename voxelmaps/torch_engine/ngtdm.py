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

from voxelmaps.torch_engine.kernel_neighbours import (
    check_levels, group_stats, in_chunks, neighbour_shifts, position_major, position_pairs,
    select_features,
)

#: PyRadiomics' 5 NGTDM features.
FEATURES: tuple[str, ...] = ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength")


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


def _compute_chunk(levels: torch.Tensor, names: list[str], dtype: torch.dtype) -> dict:
    n, k, _ = levels.shape
    m = k * k
    device = levels.device
    grid = position_major(levels)
    flat = grid.reshape(m, n)
    valid = flat > 0
    diff = neighbourhood_difference(grid, dtype)
    same, count, first = group_stats(flat, valid)

    # Per distinct grey level, carried by its first voxel: n_i, p_i = n_i / Nvp and s_i.
    nvp = valid.to(dtype).sum(0)  # >= 1: the centre voxel is in its kernel
    i = flat.to(dtype)
    f = first.to(dtype)
    p = torch.where(first, count.to(dtype) / nvp, 0.0)
    s = torch.where(first, (same.to(dtype) * diff).sum(1), 0.0)
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
        dc = torch.where(first, i - c, 0.0)
        c2 = (dc ** 2).sum(0)
        st = 2.0 * (p * (ngp * dc ** 2 + c2)).sum(0)
        out["Strength"] = torch.where(sum_s != 0, st / torch.where(sum_s != 0, sum_s, 1.0), 0.0)
    if want & {"Busyness", "Complexity"}:
        pa, pb = position_pairs(m, device)
        both = first[pa] & first[pb]
        if "Busyness" in want:
            a = flat.double() * (count.double() / valid.double().sum(0))
            den = (2.0 * torch.where(both, (a[pa] - a[pb]).abs(), 0.0).sum(0)).to(dtype)
            out["Busyness"] = torch.where(den != 0, sum_ps / torch.where(den != 0, den, 1.0), 0.0)
        if "Complexity" in want:
            ps = p * s
            term = (i[pa] - i[pb]).abs() * (ps[pa] + ps[pb]) / (p[pa] + p[pb])
            out["Complexity"] = 2.0 * torch.where(both, term, 0.0).sum(0) / nvp
    return out


def compute(levels: torch.Tensor, n_levels: int, features: list[str] | None = None,
            dtype: torch.dtype = torch.float64, chunk_size: int = 16384) -> dict[str, torch.Tensor]:
    """NGTDM feature values of every kernel.

    Args:
        levels: (N, K, K) integer grey levels of each voxel's kernel, 0 = not in the kernel.
        n_levels: number of grey levels of the ROI (common engine signature; unused here).
        features: PyRadiomics NGTDM names; None = all 5.
        dtype: float64 (PyRadiomics' precision) or float32.
        chunk_size: voxels per chunk; memory is ~ chunk_size * K^4 bytes a few times.

    Returns:
        {name: (N,) tensor of `dtype` on levels' device}.
    """
    check_levels(levels)
    names = select_features(features, FEATURES, "ngtdm")
    return in_chunks(levels, chunk_size, lambda part: _compute_chunk(part, names, dtype), names, dtype)
