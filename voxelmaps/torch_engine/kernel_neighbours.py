"""Neighbour structure and grouping inside per-voxel kernel patches (zone/dependence/NGTDM families).

PyRadiomics' C matrices (`cmatrices.c`) walk the kernel's bounding box and, for every ROI voxel
in it, look at the 8 in-plane neighbours at distance 1 (force2D) that are inside that box *and*
inside the ROI. With patches of levels (N, K, K), 0 = not in the kernel, that is: the neighbours
of a patch position are the positions one step away (infinity norm) inside the patch whose level
is > 0. This module precomputes that structure once per K and gives the grouping primitives the
families share (how many kernel voxels share a key, which is the first of its group), done with
(N, M, M) comparisons, M = K * K, so no per-voxel matrix of grey levels is ever built and the cost
does not grow with the number of grey levels.
"""

from __future__ import annotations

import functools

import torch

#: In-plane offsets at distance 1 (PyRadiomics' 2D angles, both directions).
OFFSETS_2D: tuple[tuple[int, int], ...] = tuple(
    (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)
)


@functools.lru_cache(maxsize=16)
def _neighbour_index_cpu(k: int) -> torch.Tensor:
    m = k * k
    idx = torch.full((m, len(OFFSETS_2D)), m, dtype=torch.long)  # m = "outside the patch"
    for y in range(k):
        for x in range(k):
            for a, (dy, dx) in enumerate(OFFSETS_2D):
                yy, xx = y + dy, x + dx
                if 0 <= yy < k and 0 <= xx < k:
                    idx[y * k + x, a] = yy * k + xx
    return idx


def neighbour_index(k: int, device: torch.device | str) -> torch.Tensor:
    """(K*K, 8) flat indices of each patch position's 8 neighbours; K*K where outside the patch."""
    return _neighbour_index_cpu(int(k)).to(device)


def check_levels(levels: torch.Tensor) -> int:
    """Validate a (N, K, K) integer patch tensor and return K."""
    if levels.dim() != 3 or levels.shape[1] != levels.shape[2] or levels.shape[1] % 2 != 1:
        raise ValueError(f"levels must be (N, K, K) with odd K, got shape {tuple(levels.shape)}")
    if levels.dtype.is_floating_point or levels.dtype == torch.bool:
        raise ValueError(f"levels must be an integer tensor (0 = outside kernel), got {levels.dtype}")
    return int(levels.shape[1])


def neighbour_levels(flat: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """(n, M) levels -> (n, M, 8) levels of each position's neighbours, 0 where none."""
    padded = torch.cat([flat, flat.new_zeros(flat.shape[0], 1)], dim=1)
    return padded[:, nbr]


def earlier_mask(m: int, device: torch.device | str) -> torch.Tensor:
    """(M, M) bool, True where column q comes before row p (q < p)."""
    return torch.ones(m, m, dtype=torch.bool, device=device).tril(-1)


def group_stats(equal: torch.Tensor, member: torch.Tensor, earlier: torch.Tensor):
    """Group kernel voxels by a key, given the pairwise key equality.

    Args:
        equal: (n, M, M) bool, key of p equals key of q.
        member: (n, M) bool, which positions take part (e.g. voxels in the kernel, zone roots).
        earlier: (M, M) from `earlier_mask`.

    Returns:
        count: (n, M) int64, number of members sharing p's key (meaningful where member).
        first: (n, M) bool, p is the first member of its group (one True per distinct key), so
            a sum over `first` is a sum over distinct keys, as PyRadiomics sums over matrix cells.
    """
    same = equal & member[:, None, :]
    count = same.sum(-1)
    first = member & ~(same & earlier).any(-1)
    return count, first


def select_features(features, available: tuple[str, ...], family: str) -> list[str]:
    """Requested feature names (None = all), checked against the family's list."""
    if features is None:
        return list(available)
    unknown = [f for f in features if f not in available]
    if unknown:
        raise ValueError(f"unknown {family} feature(s) {unknown}; available: {list(available)}")
    return list(features)


def in_chunks(levels: torch.Tensor, chunk_size: int, fn, names: list[str], dtype: torch.dtype):
    """Apply `fn(levels_chunk) -> dict` over voxel chunks so memory stays O(chunk * K^4)."""
    n = levels.shape[0]
    out = {name: torch.empty(n, dtype=dtype, device=levels.device) for name in names}
    for start in range(0, n, max(1, int(chunk_size))):
        part = fn(levels[start:start + chunk_size])
        for name in names:
            out[name][start:start + chunk_size] = part[name]
    return out
