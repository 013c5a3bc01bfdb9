"""First-order maps over kernel patches, with PyRadiomics' formulas and edge cases.

What PyRadiomics does per window (``radiomics.firstorder``, voxel-based) and is reproduced here:

- statistics over the window's ROI voxels only (NaN elsewhere; ``numpy.nan*`` functions);
- percentiles and the median by ``numpy.nanpercentile``/``nanmedian`` (linear interpolation,
  numpy's two-sided lerp);
- RobustMeanAbsoluteDeviation over the values in [P10, P90] (inclusive);
- Skewness/Kurtosis are 0 in a flat window (second moment exactly 0), Kurtosis is not excess;
- Energy/RootMeanSquared add ``voxel_array_shift`` (PyRadiomics ``voxelArrayShift``, default 0);
- Entropy/Uniformity from the histogram of the ROI-wide discretised levels in the window
  (eps = machine epsilon in the log).

Window means use numpy's pairwise summation over PyRadiomics' kernel order, so that a flat window
gives exactly the same mean (and hence exactly zero variance) as PyRadiomics.
"""

from __future__ import annotations

import torch

from voxsurv.maps.features import FEATURE_CLASSES, family_features
from voxsurv.maps.torch_engine.common import kernel_order

FEATURES: tuple[str, ...] = FEATURE_CLASSES["firstorder"]


def _pairwise_sum(rows: list[torch.Tensor]) -> torch.Tensor:
    """Sum of the rows in numpy's pairwise order (``pairwise_sum`` in numpy's loops)."""
    n = len(rows)
    if n < 8:
        total = rows[0]
        for r in rows[1:]:
            total = total + r
        return total
    if n <= 128:
        acc = list(rows[:8])
        i = 8
        while i < n - (n % 8):
            acc = [acc[j] + rows[i + j] for j in range(8)]
            i += 8
        total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
        for r in rows[i:]:
            total = total + r
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(rows[:half]) + _pairwise_sum(rows[half:])


def _sorting_network(n: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort for n inputs (padded to a power of two)."""
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    # Padding inputs are +inf: comparators that touch them never move anything.
    return [(lo, hi) for lo, hi in pairs if hi < n]


def _sorted_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """Sort K*K rows elementwise per voxel (ascending), by a sorting network: (K*K, N)."""
    rows = list(rows)
    for lo, hi in _sorting_network(len(rows)):
        a, b = rows[lo], rows[hi]
        rows[lo] = torch.minimum(a, b)
        rows[hi] = torch.maximum(a, b)
    return torch.stack(rows)


def _nan_quantile(ordered: torch.Tensor, count: torch.Tensor, q: float) -> torch.Tensor:
    """numpy ``nanpercentile(..., method='linear')`` from rows sorted ascending, NaNs last."""
    position = (count - 1).to(ordered.dtype) * q
    below = torch.floor(position)
    gamma = position - below
    below_idx = below.long().clamp(min=0)
    above_idx = torch.minimum(below_idx + 1, count - 1)
    a = ordered.gather(0, below_idx[None])[0]
    b = ordered.gather(0, above_idx[None])[0]
    diff = b - a
    return torch.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)


def compute(values: torch.Tensor, levels: torch.Tensor, n_levels: int, features,
            voxel_array_shift: float = 0.0) -> dict[str, torch.Tensor]:
    """First-order features of every window.

    Args:
        values: (N, K, K) float intensities, NaN outside the kernel.
        levels: (N, K, K) int64 discretised levels, 0 outside the kernel.
        n_levels: highest level in the ROI (PyRadiomics ``Ng``).
        features: PyRadiomics first-order names (no class prefix).
        voxel_array_shift: added to intensities in Energy and RootMeanSquared.

    Returns:
        name -> (N,) tensor in ``values.dtype``.
    """
    features = family_features("firstorder", features)
    n_vox, k, _ = values.shape
    order = torch.tensor(kernel_order((k - 1) // 2), device=values.device)
    # Voxels last, positions in PyRadiomics' kernel order: (K*K, N).
    x = values.reshape(n_vox, k * k).t().index_select(0, order)
    valid = ~torch.isnan(x)
    count = valid.sum(0)
    n = count.to(x.dtype)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    x0 = torch.where(valid, x, zero)

    out: dict[str, torch.Tensor] = {}
    want = set(features)
    mean = _pairwise_sum(list(x0)) / n
    if want & {"Mean", "MeanAbsoluteDeviation", "Variance", "Skewness", "Kurtosis"}:
        dev = torch.where(valid, x - mean, zero)
        dev2 = dev * dev
        m2 = _pairwise_sum(list(dev2)) / n
        if "Mean" in want:
            out["Mean"] = mean
        if "Variance" in want:
            out["Variance"] = m2
        if "MeanAbsoluteDeviation" in want:
            out["MeanAbsoluteDeviation"] = _pairwise_sum(list(dev.abs())) / n
        m2_safe = torch.where(m2 == 0, torch.ones_like(m2), m2)  # flat window -> 0, as PyRadiomics
        if "Skewness" in want:
            out["Skewness"] = (_pairwise_sum(list(dev2 * dev)) / n) / m2_safe ** 1.5
        if "Kurtosis" in want:
            out["Kurtosis"] = (_pairwise_sum(list(dev2 * dev2)) / n) / m2_safe ** 2
    if want & {"Energy", "RootMeanSquared"}:
        shifted = torch.where(valid, x + voxel_array_shift, zero)
        energy = _pairwise_sum(list(shifted * shifted))
        if "Energy" in want:
            out["Energy"] = energy
        if "RootMeanSquared" in want:
            out["RootMeanSquared"] = torch.sqrt(energy / n)
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    quantiles = {"10Percentile", "90Percentile", "InterquartileRange", "Median",
                 "RobustMeanAbsoluteDeviation"}
    if want & (quantiles | {"Minimum", "Maximum", "Range"}):
        ordered = _sorted_rows(list(torch.where(valid, x, inf)))
        minimum = ordered[0]
        maximum = ordered.gather(0, (count - 1)[None])[0]
        if "Minimum" in want:
            out["Minimum"] = minimum
        if "Maximum" in want:
            out["Maximum"] = maximum
        if "Range" in want:
            out["Range"] = maximum - minimum
    if want & quantiles:
        p10 = _nan_quantile(ordered, count, 0.1)
        p90 = _nan_quantile(ordered, count, 0.9)
        if "10Percentile" in want:
            out["10Percentile"] = p10
        if "90Percentile" in want:
            out["90Percentile"] = p90
        if "InterquartileRange" in want:
            out["InterquartileRange"] = (_nan_quantile(ordered, count, 0.75)
                                         - _nan_quantile(ordered, count, 0.25))
        if "Median" in want:
            out["Median"] = _nan_quantile(ordered, count, 0.5)
        if "RobustMeanAbsoluteDeviation" in want:
            inside = valid & (x - p10 >= 0) & (x - p90 <= 0)
            n_in = inside.sum(0).to(x.dtype)
            mean_in = _pairwise_sum(list(torch.where(inside, x, zero))) / n_in
            out["RobustMeanAbsoluteDeviation"] = _pairwise_sum(
                list(torch.where(inside, (x - mean_in).abs(), zero))) / n_in
    if want & {"Entropy", "Uniformity"}:
        # p(level) over the window from, for each kernel voxel, how many share its level.
        lv = levels.reshape(n_vox, k * k).t().to(torch.int32)
        shared = torch.zeros(lv.shape, dtype=torch.uint8 if k * k < 256 else torch.int32,
                             device=lv.device)
        for q in range(k * k):
            shared += lv == lv[q:q + 1]
        p = shared.to(x.dtype) / n
        inside_k = lv > 0
        if "Entropy" in want:
            eps = torch.finfo(torch.float64).eps
            out["Entropy"] = -(torch.where(inside_k, torch.log2(p + eps), zero)).sum(0) / n
        if "Uniformity" in want:
            out["Uniformity"] = torch.where(inside_k, p, zero).sum(0) / n
    return out
