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
0 (-> Busyness 0) and ~1e-16 (-> a huge Busyness), and float32 would decide differently.
"""

from __future__ import annotations

import torch

from voxelmaps.torch_engine.kernel_neighbours import (
    check_levels, earlier_mask, group_stats, in_chunks, neighbour_index, neighbour_levels,
    select_features,
)

#: PyRadiomics' 5 NGTDM features.
FEATURES: tuple[str, ...] = ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength")


def neighbourhood_difference(flat: torch.Tensor, nbr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, M) levels -> (n, M) |level - mean level of its neighbours in the kernel| (0 if none)."""
    nb = neighbour_levels(flat, nbr)
    count = (nb > 0).sum(-1).to(dtype)
    total = nb.sum(-1).to(dtype)
    mean = total / torch.where(count == 0, torch.ones_like(count), count)
    diff = (flat.to(dtype) - mean).abs()
    return torch.where((count > 0) & (flat > 0), diff, torch.zeros_like(diff))


def _compute_chunk(levels: torch.Tensor, names: list[str], dtype: torch.dtype) -> dict:
    n, k, _ = levels.shape
    m = k * k
    flat = levels.reshape(n, m)
    device = flat.device
    valid = flat > 0
    diff = neighbourhood_difference(flat, neighbour_index(k, device), dtype)
    eq_level = flat[:, :, None] == flat[:, None, :]
    count, first = group_stats(eq_level, valid, earlier_mask(m, device))

    nvp = valid.to(dtype).sum(1)  # >= 1: the centre voxel is in its kernel
    i = flat.to(dtype)
    # Per distinct level, carried by its first voxel: p_i and s_i.
    f = first.to(dtype)
    p = torch.where(first, count.to(dtype) / nvp[:, None], torch.zeros_like(i))
    s = torch.where(first, (eq_level & valid[:, None, :]).to(dtype).matmul(diff[:, :, None])[..., 0],
                    torch.zeros_like(i))
    pair = first[:, :, None] & first[:, None, :]
    di = i[:, :, None] - i[:, None, :]
    sum_ps = (p * s).sum(1)
    sum_s = (f * s).sum(1)

    out = {}
    want = set(names)
    if "Coarseness" in want:
        nonzero = sum_ps != 0
        out["Coarseness"] = torch.where(nonzero, 1.0 / torch.where(nonzero, sum_ps, 1.0),
                                        torch.full_like(sum_ps, 1e6))
    if "Contrast" in want:
        ngp = f.sum(1)
        div = ngp * (ngp - 1)
        num = (p[:, :, None] * p[:, None, :] * di ** 2).sum((1, 2)) * sum_s / nvp
        out["Contrast"] = torch.where(div != 0, num / torch.where(div != 0, div, 1.0),
                                      torch.zeros_like(num))
    if "Busyness" in want:
        p64 = count.double() / valid.double().sum(1)[:, None]
        a = flat.double() * p64
        den = torch.where(pair, (a[:, :, None] - a[:, None, :]).abs(), 0.0).sum((1, 2)).to(dtype)
        out["Busyness"] = torch.where(den != 0, sum_ps / torch.where(den != 0, den, 1.0),
                                      torch.zeros_like(sum_ps))
    if "Complexity" in want:
        ps = p * s
        numerator = torch.where(pair, ps[:, :, None] + ps[:, None, :], 0.0)
        divisor = p[:, :, None] + p[:, None, :]
        divisor = torch.where(divisor == 0, torch.ones_like(divisor), divisor)
        out["Complexity"] = (di.abs() * numerator / divisor).sum((1, 2)) / nvp
    if "Strength" in want:
        st = torch.where(pair, (p[:, :, None] + p[:, None, :]) * di ** 2, 0.0).sum((1, 2))
        out["Strength"] = torch.where(sum_s != 0, st / torch.where(sum_s != 0, sum_s, 1.0),
                                      torch.zeros_like(st))
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
