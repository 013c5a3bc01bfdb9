"""GLRLM maps over kernel patches, from the runs themselves (no dense matrix per voxel).

PyRadiomics (``radiomics.glrlm``, voxel-based, force2D, no weighting) counts runs of equal grey
level along each of the 4 in-plane angles inside the window (runs stop at the window edge and at
non-ROI voxels), computes every feature per angle with Nr = number of runs, and averages with
``nanmean``. Its C code zeroes an angle for a window when no line of the window along that angle
holds two or more ROI voxels (``multiElement``); such an angle has Nr = 0, is NaN and is skipped.

Here every window position that starts a run is an "entry" with its grey level and run length.
Features linear in the matrix are sums over runs; the non-uniformities and RunEntropy need the
number of runs sharing a grey level / length / (level, length) cell: a small scatter-add per
window/angle and a gather back.
"""

from __future__ import annotations

import torch

FEATURES = (
    "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
    "HighGrayLevelRunEmphasis", "LongRunEmphasis", "LongRunHighGrayLevelEmphasis",
    "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis", "RunEntropy",
    "RunLengthNonUniformity", "RunLengthNonUniformityNormalized", "RunPercentage",
    "RunVariance", "ShortRunEmphasis", "ShortRunHighGrayLevelEmphasis",
    "ShortRunLowGrayLevelEmphasis",
)

#: In-plane (dy, dx) run directions, PyRadiomics' 2D angles.
ANGLES = ((1, 1), (1, 0), (1, -1), (0, 1))

_EPS = 2.220446049250313e-16  # numpy.spacing(1)


def _shift(levels: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[:, y, x] = levels[:, y + dy, x + dx], 0 where that falls outside the patch."""
    k = levels.shape[-1]
    out = torch.zeros_like(levels)
    if abs(dy) >= k or abs(dx) >= k:
        return out
    out[:, max(0, -dy):k - max(0, dy), max(0, -dx):k - max(0, dx)] = \
        levels[:, max(0, dy):k + min(0, dy), max(0, dx):k + min(0, dx)]
    return out


def _runs(levels: torch.Tensor):
    """Per angle: run-start flags, run lengths and whether the angle counts (multiElement).

    Returns start (N, A, K*K) bool, length (N, A, K*K) int64, counted (N, A) bool.
    """
    n, k, _ = levels.shape
    inside = levels > 0
    starts, lengths, counted = [], [], []
    for dy, dx in ANGLES:
        before = _shift(levels, -dy, -dx)
        start = inside & (before != levels)
        length = torch.ones_like(levels)
        going = inside.clone()
        multi = torch.zeros(n, dtype=torch.bool, device=levels.device)
        for step in range(1, k):
            ahead = _shift(levels, step * dy, step * dx)
            going = going & (ahead == levels)
            length = length + going.long()
            multi = multi | (inside & (ahead > 0)).flatten(1).any(1)
        starts.append(start.reshape(n, -1))
        lengths.append(length.reshape(n, -1))
        counted.append(multi)
    return torch.stack(starts, 1), torch.stack(lengths, 1), torch.stack(counted, 1)


def _nanmean(x: torch.Tensor, dim: int) -> torch.Tensor:
    ok = ~torch.isnan(x)
    return torch.where(ok, x, torch.zeros_like(x)).sum(dim) / ok.sum(dim)


def compute(levels: torch.Tensor, n_levels: int, features,
            dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """GLRLM features of every window.

    Args:
        levels: (N, K, K) int64, 0 outside the kernel.
        n_levels: PyRadiomics ``Ng`` (highest level in the ROI).
        features: PyRadiomics GLRLM names (no class prefix).
        dtype: float dtype of the results.

    Returns:
        name -> (N,) tensor.
    """
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown GLRLM features: {sorted(unknown)}")
    want = set(features)
    device = levels.device
    n, k, _ = levels.shape
    start, length, counted = _runs(levels)
    start = start & counted[..., None]
    w = start.to(dtype)
    nr_count = start.sum(-1)  # (N, A) runs per window/angle
    empty = nr_count == 0
    nr = torch.where(empty, torch.ones_like(nr_count), nr_count).to(dtype)
    gl_idx = levels.reshape(n, 1, k * k).expand(-1, len(ANGLES), -1)
    i = gl_idx.to(dtype)
    j = length.to(dtype)

    def per_run(f: torch.Tensor) -> torch.Tensor:
        return (w * f).sum(-1)

    out: dict[str, torch.Tensor] = {}
    nan = torch.tensor(float("nan"), dtype=dtype, device=device)

    def per_angle(name: str, value: torch.Tensor) -> None:
        out[name] = _nanmean(torch.where(empty, nan, value), 1)

    i2 = i * i
    j2 = j * j
    if "ShortRunEmphasis" in want:
        per_angle("ShortRunEmphasis", per_run(1.0 / j2) / nr)
    if "LongRunEmphasis" in want:
        per_angle("LongRunEmphasis", per_run(j2) / nr)
    safe_i2 = torch.where(i2 == 0, torch.ones_like(i2), i2)
    if "LowGrayLevelRunEmphasis" in want:
        per_angle("LowGrayLevelRunEmphasis", per_run(1.0 / safe_i2) / nr)
    if "HighGrayLevelRunEmphasis" in want:
        per_angle("HighGrayLevelRunEmphasis", per_run(i2) / nr)
    if "ShortRunLowGrayLevelEmphasis" in want:
        per_angle("ShortRunLowGrayLevelEmphasis", per_run(1.0 / (safe_i2 * j2)) / nr)
    if "ShortRunHighGrayLevelEmphasis" in want:
        per_angle("ShortRunHighGrayLevelEmphasis", per_run(i2 / j2) / nr)
    if "LongRunLowGrayLevelEmphasis" in want:
        per_angle("LongRunLowGrayLevelEmphasis", per_run(j2 / safe_i2) / nr)
    if "LongRunHighGrayLevelEmphasis" in want:
        per_angle("LongRunHighGrayLevelEmphasis", per_run(j2 * i2) / nr)
    if "RunPercentage" in want:
        n_p = per_run(j)
        per_angle("RunPercentage", nr / torch.where(n_p == 0, torch.ones_like(n_p), n_p))
    if "GrayLevelVariance" in want:
        u = per_run(i) / nr
        d = i - u[..., None]
        per_angle("GrayLevelVariance", per_run(d * d) / nr)
    if "RunVariance" in want:
        u = per_run(j) / nr
        d = j - u[..., None]
        per_angle("RunVariance", per_run(d * d) / nr)

    counted_names = {"GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized",
                     "RunLengthNonUniformity", "RunLengthNonUniformityNormalized", "RunEntropy"}
    if not want & counted_names:
        return out
    ng = int(n_levels)
    g = (gl_idx - 1).clamp(min=0)
    r = length - 1
    keys = torch.cat([g * k + r, ng * k + g, ng * k + ng + r], -1)
    keys = torch.where(start.repeat(1, 1, 3), keys, 0)
    slots = ng * k + ng + k
    m = n * len(ANGLES)
    hist = torch.zeros((m, slots), dtype=torch.int32, device=device)
    hist.scatter_add_(1, keys.reshape(m, -1), start.repeat(1, 1, 3).to(torch.int32).reshape(m, -1))
    counts = hist.gather(1, keys.reshape(m, -1)).reshape(n, len(ANGLES), 3, k * k)
    c_cell, c_gl, c_rl = counts.unbind(2)
    if "GrayLevelNonUniformity" in want:
        per_angle("GrayLevelNonUniformity", per_run(c_gl.to(dtype)) / nr)
    if "GrayLevelNonUniformityNormalized" in want:
        per_angle("GrayLevelNonUniformityNormalized", per_run(c_gl.to(dtype)) / (nr * nr))
    if "RunLengthNonUniformity" in want:
        per_angle("RunLengthNonUniformity", per_run(c_rl.to(dtype)) / nr)
    if "RunLengthNonUniformityNormalized" in want:
        per_angle("RunLengthNonUniformityNormalized", per_run(c_rl.to(dtype)) / (nr * nr))
    if "RunEntropy" in want:
        p = c_cell.to(dtype) / nr[..., None]
        per_angle("RunEntropy", -per_run(torch.log2(p + _EPS)) / nr)
    return out
