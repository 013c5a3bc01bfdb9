"""Grey Level Size Zone Matrix (GLSZM) features per voxel kernel, as PyRadiomics voxel mode.

PyRadiomics (`cmatrices.c: calculate_glszm`) grows zones from every kernel voxel over the 8
in-plane neighbours (force2D) that lie inside the kernel box, inside the ROI and have the same
grey level; each zone adds one count at (its level, its size). Grey levels absent from the ROI are
dropped from the matrix but never change a value: `ivector` holds the actual level numbers.

Here zones are found for all kernels at once by min-label flooding (each position starts with its
own index, takes the smallest label of equal-level neighbours, plus pointer jumping, until nothing
changes), then every feature is a sum over zone roots (the smallest position of each zone), so no
(N, Ng, Ns) matrix is built. Works for any odd K.
"""

from __future__ import annotations

import torch

from voxelmaps.torch_engine.kernel_neighbours import (
    check_levels, earlier_mask, group_stats, in_chunks, neighbour_index, neighbour_levels,
    select_features,
)

#: PyRadiomics' 16 default GLSZM features.
FEATURES: tuple[str, ...] = (
    "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
    "HighGrayLevelZoneEmphasis", "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis",
    "LargeAreaLowGrayLevelEmphasis", "LowGrayLevelZoneEmphasis", "SizeZoneNonUniformity",
    "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis", "SmallAreaHighGrayLevelEmphasis",
    "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy", "ZonePercentage", "ZoneVariance",
)

_EPS = 2.220446049250313e-16  # numpy.spacing(1), PyRadiomics' entropy epsilon


def zone_labels(flat: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """(n, M) levels -> (n, M) zone label = smallest patch position of the 8-connected zone.

    Positions outside the kernel (level 0) get label M.
    """
    n, m = flat.shape
    valid = flat > 0
    same = (neighbour_levels(flat, nbr) == flat[:, :, None]) & valid[:, :, None]
    pos = torch.arange(m, device=flat.device)
    labels = torch.where(valid, pos.expand(n, m), torch.full_like(flat, m))
    sentinel = torch.full((n, 1), m, dtype=labels.dtype, device=flat.device)
    for _ in range(m):
        padded = torch.cat([labels, sentinel], dim=1)
        nb = torch.where(same, padded[:, nbr], m).amin(-1)
        new = torch.minimum(labels, nb)
        # Pointer jumping: a label is a position of the same zone, whose own label is no larger.
        new = torch.minimum(new, torch.cat([new, sentinel], dim=1).gather(1, new))
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def _compute_chunk(levels: torch.Tensor, names: list[str], dtype: torch.dtype) -> dict:
    n, k, _ = levels.shape
    m = k * k
    flat = levels.reshape(n, m)
    device = flat.device
    valid = flat > 0
    labels = zone_labels(flat, neighbour_index(k, device))
    earlier = earlier_mask(m, device)

    zone_size = ((labels[:, :, None] == labels[:, None, :]) & valid[:, None, :]).sum(-1)
    root = valid & (labels == torch.arange(m, device=device))
    eq_level = flat[:, :, None] == flat[:, None, :]
    eq_size = zone_size[:, :, None] == zone_size[:, None, :]

    w = root.to(dtype)
    i = flat.to(dtype)
    j = zone_size.to(dtype)
    nz = w.sum(1)
    nz = torch.where(nz == 0, torch.ones_like(nz), nz)
    np_ = (valid.to(dtype)).sum(1)
    np_ = torch.where(np_ == 0, torch.ones_like(np_), np_)
    i2 = torch.where(root, i * i, 1.0)
    j2 = torch.where(root, j * j, 1.0)

    out = {}
    want = set(names)

    def wsum(x):
        return (w * x).sum(1)

    if want & {"SmallAreaEmphasis"}:
        out["SmallAreaEmphasis"] = wsum(1.0 / j2) / nz
    if want & {"LargeAreaEmphasis"}:
        out["LargeAreaEmphasis"] = wsum(j2) / nz
    if want & {"GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized"}:
        count, first = group_stats(eq_level, root, earlier)
        s = (first.to(dtype) * count.to(dtype) ** 2).sum(1)
        out["GrayLevelNonUniformity"] = s / nz
        out["GrayLevelNonUniformityNormalized"] = s / nz ** 2
    if want & {"SizeZoneNonUniformity", "SizeZoneNonUniformityNormalized"}:
        count, first = group_stats(eq_size, root, earlier)
        s = (first.to(dtype) * count.to(dtype) ** 2).sum(1)
        out["SizeZoneNonUniformity"] = s / nz
        out["SizeZoneNonUniformityNormalized"] = s / nz ** 2
    if want & {"ZonePercentage"}:
        out["ZonePercentage"] = nz / np_
    if want & {"GrayLevelVariance"}:
        mu = (wsum(i) / nz)[:, None]
        out["GrayLevelVariance"] = wsum((i - mu) ** 2) / nz
    if want & {"ZoneVariance"}:
        mu = (wsum(j) / nz)[:, None]
        out["ZoneVariance"] = wsum((j - mu) ** 2) / nz
    if want & {"ZoneEntropy"}:
        count, first = group_stats(eq_level & eq_size, root, earlier)
        p = count.to(dtype) / nz[:, None]
        out["ZoneEntropy"] = -(first.to(dtype) * p * torch.log2(p + _EPS)).sum(1)
    if want & {"LowGrayLevelZoneEmphasis"}:
        out["LowGrayLevelZoneEmphasis"] = wsum(1.0 / i2) / nz
    if want & {"HighGrayLevelZoneEmphasis"}:
        out["HighGrayLevelZoneEmphasis"] = wsum(i2) / nz
    if want & {"SmallAreaLowGrayLevelEmphasis"}:
        out["SmallAreaLowGrayLevelEmphasis"] = wsum(1.0 / (i2 * j2)) / nz
    if want & {"SmallAreaHighGrayLevelEmphasis"}:
        out["SmallAreaHighGrayLevelEmphasis"] = wsum(i2 / j2) / nz
    if want & {"LargeAreaLowGrayLevelEmphasis"}:
        out["LargeAreaLowGrayLevelEmphasis"] = wsum(j2 / i2) / nz
    if want & {"LargeAreaHighGrayLevelEmphasis"}:
        out["LargeAreaHighGrayLevelEmphasis"] = wsum(i2 * j2) / nz
    return out


def compute(levels: torch.Tensor, n_levels: int, features: list[str] | None = None,
            dtype: torch.dtype = torch.float64, chunk_size: int = 16384) -> dict[str, torch.Tensor]:
    """GLSZM feature values of every kernel.

    Args:
        levels: (N, K, K) integer grey levels of each voxel's kernel, 0 = not in the kernel
            (outside the ROI or the image); the centre voxel is in its own kernel.
        n_levels: number of grey levels of the ROI (kept for the common engine signature; zone
            features only use the level numbers themselves).
        features: PyRadiomics GLSZM names without class prefix; None = all 16.
        dtype: float64 (PyRadiomics' precision) or float32.
        chunk_size: voxels per chunk; memory is ~ chunk_size * K^4 bytes a few times.

    Returns:
        {name: (N,) tensor of `dtype` on levels' device}.
    """
    check_levels(levels)
    names = select_features(features, FEATURES, "glszm")
    return in_chunks(levels, chunk_size, lambda part: _compute_chunk(part, names, dtype), names, dtype)
