"""Grey Level Size Zone Matrix (GLSZM) features per voxel kernel, as PyRadiomics voxel mode.

PyRadiomics (`cmatrices.c: calculate_glszm`) grows zones from every kernel voxel over the 8
in-plane neighbours (force2D) that lie inside the kernel box, inside the ROI and have the same
grey level; each zone adds one count at (its level, its size). Grey levels absent from the ROI are
dropped from the matrix but never change a value: `ivector` holds the actual level numbers.

Here zones are found for all kernels at once by min-label flooding (each position starts with its
own index, takes the smallest label of equal-level neighbours, plus pointer jumping, until nothing
changes), then every feature is a sum over zone roots (the smallest position of each zone) or
over distinct (level, size) keys, so no (N, Ng, Ns) matrix is built. Works for any odd K.
"""

from __future__ import annotations

import torch

from voxsurv.maps.features import FEATURE_CLASSES, family_features
from voxsurv.maps.torch_engine.kernel_neighbours import (
    check_levels, distinct_key_sum, in_chunks, neighbour_shifts, position_major, )

#: PyRadiomics' 16 default GLSZM features.
FEATURES: tuple[str, ...] = FEATURE_CLASSES["glszm"]

_EPS = 2.220446049250313e-16  # numpy.spacing(1), PyRadiomics' entropy epsilon


def zone_labels(grid: torch.Tensor) -> torch.Tensor:
    """(K, K, n) levels -> (K*K, n) int64 zone label = smallest flat position of the zone.

    Zones are 8-connected sets of equal level > 0 inside the patch. Positions outside the kernel
    (level 0) get label K*K.
    """
    k, _, n = grid.shape
    m = k * k
    valid = grid > 0
    # Per direction, 0 where the neighbour is in the same zone, 32767 (> any label) elsewhere:
    # OR-ing it onto the neighbour's label is a branch-free "label if linked, else +inf".
    unlinked = [((nb != grid) | ~valid).to(torch.int16) * 32767 for nb in neighbour_shifts(grid, 0)]
    pos = torch.arange(m, dtype=torch.int16, device=grid.device).view(k, k, 1)
    labels = torch.where(valid, pos, m).to(torch.int16)
    sentinel = torch.full((1, n), m, dtype=torch.long, device=grid.device)
    flat = labels.reshape(m, n).long()
    for _ in range(m):
        new = labels.clone()
        for off, nb in zip(unlinked, neighbour_shifts(labels, m)):
            torch.minimum(new, nb | off, out=new)
        # Pointer jumping: a label is a position of the same zone, whose own label is no larger.
        flat = new.reshape(m, n).long()
        flat = torch.minimum(flat, torch.cat([flat, sentinel]).gather(0, flat))
        new = flat.to(torch.int16).view(k, k, n)
        if torch.equal(new, labels):
            break
        labels = new
    return flat


def _compute_chunk(levels: torch.Tensor, names: list[str], dtype: torch.dtype,
                   n_levels: int) -> dict:
    n, k, _ = levels.shape
    m = k * k
    device = levels.device
    grid = position_major(levels)
    flat = grid.reshape(m, n)
    valid = flat > 0
    labels = zone_labels(grid)

    # Zone size, read at each zone's root (the position whose label is itself).
    sizes = torch.zeros(m + 1, n, dtype=torch.int32, device=device)
    sizes.scatter_add_(0, labels, torch.ones_like(flat))
    zone_size = sizes[:m]
    root = valid & (labels == torch.arange(m, device=device)[:, None])

    w = root.to(dtype)
    i = flat.to(dtype)
    j = zone_size.to(dtype)
    nz = w.sum(0)
    nz = torch.where(nz == 0, torch.ones_like(nz), nz)
    np_ = valid.to(dtype).sum(0)
    np_ = torch.where(np_ == 0, torch.ones_like(np_), np_)
    i2 = torch.where(root, i * i, 1.0)
    j2 = torch.where(root, j * j, 1.0)

    out = {}
    want = set(names)

    def wsum(x):
        return (w * x).sum(0)

    def non_uniformity(key, n_keys):
        return distinct_key_sum(key, root, n_keys, lambda c: c.to(dtype) ** 2)

    if want & {"SmallAreaEmphasis"}:
        out["SmallAreaEmphasis"] = wsum(1.0 / j2) / nz
    if want & {"LargeAreaEmphasis"}:
        out["LargeAreaEmphasis"] = wsum(j2) / nz
    if want & {"GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized"}:
        s = non_uniformity(flat, n_levels)
        out["GrayLevelNonUniformity"] = s / nz
        out["GrayLevelNonUniformityNormalized"] = s / nz ** 2
    if want & {"SizeZoneNonUniformity", "SizeZoneNonUniformityNormalized"}:
        s = non_uniformity(zone_size, m + 1)
        out["SizeZoneNonUniformity"] = s / nz
        out["SizeZoneNonUniformityNormalized"] = s / nz ** 2
    if want & {"ZonePercentage"}:
        out["ZonePercentage"] = nz / np_
    if want & {"GrayLevelVariance"}:
        mu = (wsum(i) / nz)
        out["GrayLevelVariance"] = wsum((i - mu) ** 2) / nz
    if want & {"ZoneVariance"}:
        mu = (wsum(j) / nz)
        out["ZoneVariance"] = wsum((j - mu) ** 2) / nz
    if want & {"ZoneEntropy"}:
        def plogp(c):
            p = c.to(dtype) / nz
            return p * torch.log2(p + _EPS)

        cell = flat * (m + 1) + zone_size
        out["ZoneEntropy"] = -distinct_key_sum(cell, root, n_levels * (m + 1), plogp)
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
        n_levels: number of grey levels of the ROI (common engine signature; the levels' own
            maximum is used, so a wrong value cannot index out of range).
        features: PyRadiomics GLSZM names without class prefix; None = all 16.
        dtype: float64 (PyRadiomics' precision) or float32.
        chunk_size: voxels per chunk; memory is ~ chunk_size * K^4 bytes a few times.

    Returns:
        {name: (N,) tensor of `dtype` on levels' device}.
    """
    check_levels(levels)
    names = family_features("glszm", features)
    n_levels = int(levels.max()) + 1 if levels.numel() else 1  # level numbers 0 .. max
    return in_chunks(levels, chunk_size, lambda part: _compute_chunk(part, names, dtype, n_levels),
                     names, dtype)
