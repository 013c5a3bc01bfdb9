"""Neighbour structure and grouping inside per-voxel kernel patches (zone/dependence/NGTDM families).

PyRadiomics' C matrices (`cmatrices.c`) walk the kernel's bounding box and, for every ROI voxel
in it, look at the 8 in-plane neighbours at distance 1 (force2D) that are inside that box *and*
inside the ROI. With patches of levels (N, K, K), 0 = not in the kernel, that is: the neighbours
of a patch position are the positions one step away (infinity norm) inside the patch whose level
is > 0. This module gives that structure as shifted views of the patch and the grouping
primitives the families share (how many kernel voxels share a key, which one is the first of its
group), by pairwise comparison of kernel positions, so no per-voxel (Ng, Ns) matrix is built.

Layout: position-major, (K, K, n) or (M, n) with M = K * K, voxels last. Every operation then
runs over long contiguous rows of voxels; with voxels first, each op would loop over rows of 3 to
9 elements, which torch does several times slower on CPU.
"""

from __future__ import annotations

import functools

import torch

#: In-plane offsets at distance 1 (PyRadiomics' 2D angles, both directions).
OFFSETS_2D: tuple[tuple[int, int], ...] = tuple(
    (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
)


def check_levels(levels: torch.Tensor) -> int:
    """Validate a (N, K, K) integer patch tensor and return K."""
    if levels.dim() != 3 or levels.shape[1] != levels.shape[2] or levels.shape[1] % 2 != 1:
        raise ValueError(f"levels must be (N, K, K) with odd K, got shape {tuple(levels.shape)}")
    if levels.dtype.is_floating_point or levels.dtype == torch.bool:
        raise ValueError(f"levels must be an integer tensor (0 = outside kernel), got {levels.dtype}")
    return int(levels.shape[1])


def position_major(levels: torch.Tensor) -> torch.Tensor:
    """(n, K, K) int patches -> (K, K, n) int32, contiguous."""
    return levels.permute(1, 2, 0).to(torch.int32).contiguous()


def neighbour_shifts(grid: torch.Tensor, fill) -> list[torch.Tensor]:
    """(K, K, n) -> 8 views (K, K, n): the value at each position's neighbour in each direction.

    Positions whose neighbour falls outside the patch get `fill`. Views into one padded copy, so
    no gather and no 8-wide axis to reduce.
    """
    k, _, n = grid.shape
    padded = grid.new_full((k + 2, k + 2, n), fill)
    padded[1:-1, 1:-1] = grid
    return [padded[1 + dy:1 + dy + k, 1 + dx:1 + dx + k] for dy, dx in OFFSETS_2D]


def group_stats(key: torch.Tensor, member: torch.Tensor):
    """Group kernel voxels by an integer key (grey level, zone size, (level, size) cell, ...).

    Args:
        key: (M, n) integer keys.
        member: (M, n) bool, which positions take part (voxels in the kernel, zone roots).

    Returns:
        same: (M, M, n) bool, same[p, q] = q is a member with p's key.
        count: (M, n) int16, number of members sharing p's key (meaningful where member).
        first: (M, n) bool, p is the member with the smallest position among those sharing its
            key, so a sum over `first` is a sum over distinct keys, as PyRadiomics sums over the
            non-empty cells of its matrices.

    Pairwise comparisons with voxels on the contiguous axis: independent of how many keys exist,
    and faster on CPU than histograms over keys for K <= 5.
    """
    m = key.shape[0]
    same = (key[:, None, :] == key[None, :, :]) & member[None, :, :]
    same8 = same.view(torch.uint8)  # uint8 sums: several times faster than bool any/sum on CPU
    count = same8.sum(1, dtype=torch.int16)
    first = member.clone()
    for p in range(1, m):
        first[p] &= same8[p, :p].sum(0, dtype=torch.uint8) == 0
    return same, count, first


def distinct_key_sum(key: torch.Tensor, member: torch.Tensor, n_keys: int, fn) -> torch.Tensor:
    """Sum over the distinct keys of each kernel's members of fn(count of members with that key).

    That is PyRadiomics' sum over the non-empty cells of a matrix (non-uniformities: fn = c^2,
    entropy: fn = -p log2 p). Pairwise grouping costs M^2 per voxel, a histogram n_keys: take the
    cheaper (pairwise for (level, size) cells at K = 3, histograms for levels and at K = 5).
    """
    m, n = key.shape
    if n_keys > m * m:
        _, count, first = group_stats(key, member)
        return torch.where(first, fn(count), 0.0).sum(0)
    hist = torch.zeros(n_keys, n, dtype=torch.int16, device=key.device)
    hist.scatter_add_(0, key.long(), member.to(torch.int16))
    return torch.where(hist > 0, fn(hist), 0.0).sum(0)


@functools.lru_cache(maxsize=16)
def _pairs_cpu(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.triu_indices(m, m, offset=1))


def position_pairs(m: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (p, q), p < q, of all M(M-1)/2 pairs of patch positions."""
    p, q = _pairs_cpu(int(m))
    return p.to(device), q.to(device)


def in_chunks(levels: torch.Tensor, chunk_size: int, fn, names: list[str], dtype: torch.dtype):
    """Apply `fn(levels_chunk) -> dict` over voxel chunks, bounding memory to a few
    (K^4 x chunk) pairwise tensors (K = 3, 16384 voxels: ~1.3 MB each)."""
    n = levels.shape[0]
    chunk_size = max(1, int(chunk_size))
    out = {name: torch.empty(n, dtype=dtype, device=levels.device) for name in names}
    for start in range(0, n, chunk_size):
        part = fn(levels[start:start + chunk_size])
        for name in names:
            out[name][start:start + chunk_size] = part[name]
    return out
