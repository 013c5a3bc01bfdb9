"""GLRLM maps over kernel patches, from the runs themselves (no dense matrix per voxel).

PyRadiomics (``radiomics.glrlm``, voxel-based, force2D, no weighting) counts runs of equal grey
level along each of the 4 in-plane angles inside the window (runs stop at the window edge and at
non-ROI voxels), computes every feature per angle with Nr = number of runs, and averages with
``nanmean``. Its C code zeroes an angle for a window when no line of the window along that angle
holds two or more ROI voxels (``multiElement``); such an angle has Nr = 0, is NaN and is skipped.

Here every window position that starts a run stands for that run, with its grey level and
length. Features linear in the matrix are sums over runs; the non-uniformities and RunEntropy
need the number of runs sharing a grey level / length / (level, length) cell, counted by comparing
the run starts of a window with each other. Layout is voxels last, (angle, position, voxel), so
each step runs over long contiguous rows.
"""

from __future__ import annotations

import torch

from voxsurv.maps.features import FEATURE_CLASSES, family_features

FEATURES: tuple[str, ...] = FEATURE_CLASSES["glrlm"]

#: In-plane (dy, dx) run directions, PyRadiomics' 2D angles.
ANGLES = ((1, 1), (1, 0), (1, -1), (0, 1))

_EPS = 2.220446049250313e-16  # numpy.spacing(1)


def _run_index(k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions before p and ahead of p (steps 1..K-1) along each angle; K*K = outside.

    Returns before (A, K*K) and ahead (A, K*K, K-1).
    """
    before, ahead = [], []
    outside = k * k
    for dy, dx in ANGLES:
        b_rows, a_rows = [], []
        for y in range(k):
            for x in range(k):
                yb, xb = y - dy, x - dx
                b_rows.append(yb * k + xb if 0 <= yb < k and 0 <= xb < k else outside)
                steps = []
                for step in range(1, k):
                    ya, xa = y + step * dy, x + step * dx
                    steps.append(ya * k + xa if 0 <= ya < k and 0 <= xa < k else outside)
                a_rows.append(steps)
        before.append(b_rows)
        ahead.append(a_rows)
    return torch.tensor(before, device=device), torch.tensor(ahead, device=device)


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
    features = family_features("glrlm", features)
    want = set(features)
    device = levels.device
    n, k, _ = levels.shape
    ng = int(n_levels)
    n_ang = len(ANGLES)
    before_idx, ahead_idx = _run_index(k, device)
    # Voxels last: (positions, N) so every step runs over long contiguous rows.
    flat = torch.cat([levels.reshape(n, k * k).t().to(torch.int32),
                      torch.zeros((1, n), dtype=torch.int32, device=device)])  # row K*K: outside
    here = flat[: k * k]  # (K*K, N)
    inside = here > 0
    before = flat.index_select(0, before_idx.reshape(-1)).view(n_ang, k * k, n)  # (A, K*K, N)
    start = inside & (before != here)
    length = torch.ones(start.shape, dtype=torch.int32, device=device)
    going = inside.expand(n_ang, k * k, n)
    counted = torch.zeros((n_ang, n), dtype=torch.bool, device=device)
    for step in range(k - 1):
        ahead = flat.index_select(0, ahead_idx[..., step].reshape(-1)).view(n_ang, k * k, n)
        going = going & (ahead == here)
        length += going
        # PyRadiomics' multiElement: an angle counts only if some line holds >= 2 kernel voxels.
        counted |= (inside & (ahead > 0)).any(1)
    start = start & counted[:, None]
    w = start.to(dtype)
    i = here.to(dtype)
    i2 = i * i
    j = length.to(dtype)
    j2 = j * j
    inv_i2 = 1.0 / torch.where(inside, i2, torch.ones_like(i2))
    inv_j2 = 1.0 / j2

    def over_runs(f: torch.Tensor) -> torch.Tensor:
        return f.sum(1)  # (A, N): f already carries the run weight w

    nr = w.sum(1)
    empty = nr == 0
    inv_nr = 1.0 / torch.where(empty, torch.ones_like(nr), nr)

    per: dict[str, torch.Tensor] = {}  # per-angle values, averaged once at the end

    def per_angle(name: str, value: torch.Tensor) -> None:
        per[name] = value

    # Terms g(level) h(length) summed over runs, with the run weight folded into g once.
    w_i2 = w * i2
    w_inv_i2 = w * inv_i2
    terms = {"ShortRunEmphasis": lambda: w * inv_j2, "LongRunEmphasis": lambda: w * j2,
             "LowGrayLevelRunEmphasis": lambda: w_inv_i2, "HighGrayLevelRunEmphasis": lambda: w_i2,
             "ShortRunLowGrayLevelEmphasis": lambda: w_inv_i2 * inv_j2,
             "ShortRunHighGrayLevelEmphasis": lambda: w_i2 * inv_j2,
             "LongRunLowGrayLevelEmphasis": lambda: w_inv_i2 * j2,
             "LongRunHighGrayLevelEmphasis": lambda: w_i2 * j2}
    for name, term in terms.items():
        if name in want:
            per_angle(name, over_runs(term()) * inv_nr)
    if "RunPercentage" in want or "RunVariance" in want:
        n_p = over_runs(w * j)
    if "RunPercentage" in want:
        per_angle("RunPercentage", nr / torch.where(n_p == 0, torch.ones_like(n_p), n_p))
    if "GrayLevelVariance" in want:
        u = over_runs(w * i) * inv_nr
        per_angle("GrayLevelVariance", (over_runs(w_i2) * inv_nr - u * u).clamp(min=0))
    if "RunVariance" in want:
        u = n_p * inv_nr
        per_angle("RunVariance", (over_runs(w * j2) * inv_nr - u * u).clamp(min=0))

    def shared(key: torch.Tensor) -> torch.Tensor:
        """For every run start: the number of runs (of its angle) with the same key; (A, K*K, N)."""
        acc = torch.uint8 if k * k < 256 else torch.int32
        count = torch.zeros(key.shape, dtype=acc, device=device)
        for q in range(k * k):
            count += (key == key[:, q:q + 1]) & start[:, q:q + 1]
        return count.to(dtype)

    if want & {"GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized"}:
        gln = over_runs(shared(here.expand(n_ang, k * k, n)) * w) * inv_nr  # sum_g pg^2 / Nr
        if "GrayLevelNonUniformity" in want:
            per_angle("GrayLevelNonUniformity", gln)
        if "GrayLevelNonUniformityNormalized" in want:
            per_angle("GrayLevelNonUniformityNormalized", gln * inv_nr)
    if want & {"RunLengthNonUniformity", "RunLengthNonUniformityNormalized"}:
        rln = over_runs(shared(length) * w) * inv_nr
        if "RunLengthNonUniformity" in want:
            per_angle("RunLengthNonUniformity", rln)
        if "RunLengthNonUniformityNormalized" in want:
            per_angle("RunLengthNonUniformityNormalized", rln * inv_nr)
    if "RunEntropy" in want:
        # Sum over runs of (1/Nr) log2(p + eps), p = share of runs in the run's own cell.
        p = shared(here * (k + 1) + length) * inv_nr[:, None]
        per_angle("RunEntropy", -over_runs(torch.log2(p + _EPS) * w) * inv_nr)
    # nanmean over angles (an angle without runs is NaN and skipped), all features at once.
    names = list(per)
    stacked = torch.stack([per[name] for name in names])  # (F, A, N)
    stacked = torch.where(empty, torch.tensor(float("nan"), dtype=dtype, device=device), stacked)
    means = _nanmean(stacked, 1)
    return {name: means[idx] for idx, name in enumerate(names)}
