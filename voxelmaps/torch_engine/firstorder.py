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

from voxelmaps.torch_engine.common import kernel_order

FEATURES = (
    "10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis",
    "Maximum", "Mean", "MeanAbsoluteDeviation", "Median", "Minimum", "Range",
    "RobustMeanAbsoluteDeviation", "RootMeanSquared", "Skewness", "Uniformity", "Variance",
)


def _pairwise_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis in numpy's pairwise order (``pairwise_sum`` in numpy's loops)."""
    n = x.shape[-1]
    if n < 8:
        total = x[..., 0]
        for i in range(1, n):
            total = total + x[..., i]
        return total
    if n <= 128:
        acc = [x[..., j] for j in range(8)]
        i = 8
        while i < n - (n % 8):
            acc = [acc[j] + x[..., i + j] for j in range(8)]
            i += 8
        total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
        for k in range(i, n):
            total = total + x[..., k]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(x[..., :half]) + _pairwise_sum(x[..., half:])


def _nan_quantile(sorted_values: torch.Tensor, count: torch.Tensor, q: float) -> torch.Tensor:
    """numpy ``nanpercentile(..., method='linear')`` on rows sorted ascending, NaNs last."""
    position = (count - 1).to(sorted_values.dtype) * q
    below = torch.floor(position)
    gamma = position - below
    below_idx = below.long().clamp(min=0)
    above_idx = torch.minimum(below_idx + 1, count - 1)
    a = sorted_values.gather(1, below_idx[:, None])[:, 0]
    b = sorted_values.gather(1, above_idx[:, None])[:, 0]
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
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown first-order features: {sorted(unknown)}")
    n_vox, k, _ = values.shape
    radius = (k - 1) // 2
    order = torch.tensor(kernel_order(radius), device=values.device)
    x = values.reshape(n_vox, k * k).index_select(1, order)
    valid = ~torch.isnan(x)
    count = valid.sum(1)
    n = count.to(x.dtype)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    x0 = torch.where(valid, x, zero)

    out: dict[str, torch.Tensor] = {}
    want = set(features)
    mean = _pairwise_sum(x0) / n
    if want & {"Mean", "MeanAbsoluteDeviation", "Variance", "Skewness", "Kurtosis"}:
        dev = torch.where(valid, x - mean[:, None], zero)
        dev2 = dev * dev
        m2 = _pairwise_sum(dev2) / n
        if "Mean" in want:
            out["Mean"] = mean
        if "Variance" in want:
            out["Variance"] = m2
        if "MeanAbsoluteDeviation" in want:
            out["MeanAbsoluteDeviation"] = _pairwise_sum(dev.abs()) / n
        m2_safe = torch.where(m2 == 0, torch.ones_like(m2), m2)  # flat window -> 0, as PyRadiomics
        if "Skewness" in want:
            out["Skewness"] = (_pairwise_sum(dev2 * dev) / n) / m2_safe ** 1.5
        if "Kurtosis" in want:
            out["Kurtosis"] = (_pairwise_sum(dev2 * dev2) / n) / m2_safe ** 2
    if want & {"Energy", "RootMeanSquared"}:
        shifted = torch.where(valid, x + voxel_array_shift, zero)
        energy = _pairwise_sum(shifted * shifted)
        if "Energy" in want:
            out["Energy"] = energy
        if "RootMeanSquared" in want:
            out["RootMeanSquared"] = torch.sqrt(energy / n)
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    if want & {"Minimum", "Range"}:
        minimum = torch.where(valid, x, inf).amin(1)
        if "Minimum" in want:
            out["Minimum"] = minimum
    if want & {"Maximum", "Range"}:
        maximum = torch.where(valid, x, -inf).amax(1)
        if "Maximum" in want:
            out["Maximum"] = maximum
    if "Range" in want:
        out["Range"] = maximum - minimum
    quantiles = {"10Percentile", "90Percentile", "InterquartileRange", "Median",
                 "RobustMeanAbsoluteDeviation"}
    if want & quantiles:
        ordered = torch.sort(torch.where(valid, x, inf), dim=1).values
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
            inside = valid & (x - p10[:, None] >= 0) & (x - p90[:, None] <= 0)
            n_in = inside.sum(1).to(x.dtype)
            xin = torch.where(inside, x, zero)
            mean_in = _pairwise_sum(xin) / n_in
            out["RobustMeanAbsoluteDeviation"] = _pairwise_sum(
                torch.where(inside, (x - mean_in[:, None]).abs(), zero)) / n_in
    if want & {"Entropy", "Uniformity"}:
        flat = levels.reshape(n_vox, k * k)
        hist = torch.zeros((n_vox, n_levels + 1), dtype=x.dtype, device=x.device)
        hist.scatter_add_(1, flat, torch.ones_like(flat, dtype=x.dtype))
        p = hist[:, 1:] / n[:, None]  # level 0 = outside the kernel
        if "Entropy" in want:
            eps = torch.finfo(torch.float64).eps
            out["Entropy"] = -(p * torch.log2(p + eps)).sum(1)
        if "Uniformity" in want:
            out["Uniformity"] = (p * p).sum(1)
    return out
