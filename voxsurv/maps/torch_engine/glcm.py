"""GLCM maps over kernel patches, without building a dense matrix per voxel.

PyRadiomics (``radiomics.glcm``, voxel-based, force2D, distance 1, symmetrical, no weighting)
builds one GLCM per in-plane angle (4 angles) per window, normalises each, computes every feature
per angle and averages with ``nanmean`` (an angle without any pair is NaN and skipped, except in
JointAverage, a plain mean). Angles without a pair in the whole ROI are deleted first.

Here each window/angle GLCM is kept as its list of symmetric pair "entries" (i, j), each of weight
1/T (T = number of entries). Features linear in P are sums over entries; the entropy-type and
maximum features need the count of entries that share a cell (or a marginal, sum or difference
value): a small scatter-add per window/angle, then a gather back to the entries. Grey levels keep
their ROI-wide values 1..Ng (PyRadiomics drops absent levels from the matrix but keeps the values,
and Idmn/Idn divide by Ng = highest level present).
"""

from __future__ import annotations

import torch

from voxsurv.maps.features import FEATURE_CLASSES, family_features

FEATURES: tuple[str, ...] = FEATURE_CLASSES["glcm"]

#: In-plane (dy, dx) offsets, PyRadiomics' 2D angles at distance 1 (one per direction pair).
ANGLES = ((1, 1), (1, 0), (1, -1), (0, 1))

_EPS = 2.220446049250313e-16  # numpy.spacing(1), PyRadiomics' eps in every log


def _pair_index(k: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, P) flat positions p and p + angle of every in-patch pair; padding points at K*K."""
    firsts, seconds = [], []
    for dy, dx in ANGLES:
        a, b = [], []
        for y in range(k):
            for x in range(k):
                if 0 <= y + dy < k and 0 <= x + dx < k:
                    a.append(y * k + x)
                    b.append((y + dy) * k + x + dx)
        firsts.append(a)
        seconds.append(b)
    width = max(len(a) for a in firsts)
    pad = k * k  # an extra always-empty position
    first = torch.tensor([a + [pad] * (width - len(a)) for a in firsts], device=device)
    second = torch.tensor([b + [pad] * (width - len(b)) for b in seconds], device=device)
    return first, second


def angles_present(levels_volume: torch.Tensor) -> torch.Tensor:
    """(A,) bool: whether any ROI voxel pair exists along each angle in the whole ROI.

    PyRadiomics deletes an angle that is empty for every voxel of the batch (one batch = the
    whole ROI by default) before averaging; it matters for JointAverage only.
    """
    roi = levels_volume > 0
    present = []
    z, y, x = roi.shape
    for dy, dx in ANGLES:
        a = roi[:, max(0, -dy):y - max(0, dy), max(0, -dx):x - max(0, dx)]
        b = roi[:, max(0, dy):y + min(0, dy), max(0, dx):x + min(0, dx)]
        present.append(bool((a & b).any()))
    return torch.tensor(present, device=levels_volume.device)


def _nanmean(x: torch.Tensor, dim: int) -> torch.Tensor:
    ok = ~torch.isnan(x)
    return torch.where(ok, x, torch.zeros_like(x)).sum(dim) / ok.sum(dim)


def _count_equal(x: torch.Tensor, *others: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """For every pair p: how many pairs q have x_q (or others_q) equal to x_p; (A, P, n)."""
    # Small integer accumulator: adding a bool into it costs far less than into a float tensor.
    acc_dtype = torch.uint8 if x.shape[1] * (1 + len(others)) < 256 else torch.int32
    count = torch.zeros(x.shape, dtype=acc_dtype, device=x.device)
    for y in (x,) + others:
        for q in range(y.shape[1]):
            count += x == y[:, q:q + 1]
    return count.to(dtype)


def compute(levels: torch.Tensor, n_levels: int, features, dtype: torch.dtype = torch.float64,
            angle_present: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """GLCM features of every window.

    Args:
        levels: (N, K, K) int64, 0 outside the kernel.
        n_levels: PyRadiomics ``Ng`` (highest level in the ROI).
        features: PyRadiomics GLCM names (no class prefix).
        dtype: float dtype of the results.
        angle_present: (4,) bool from :func:`angles_present` over the whole ROI; None = all kept.

    Returns:
        name -> (N,) tensor.
    """
    features = family_features("glcm", features)
    want = set(features)
    device = levels.device
    n_vox, k, _ = levels.shape
    keep = list(range(len(ANGLES)))
    if angle_present is not None:
        keep = [a for a, ok in enumerate(angle_present.tolist()) if ok]
    if not keep:  # no pair anywhere in the ROI: every feature is NaN, as in PyRadiomics
        nan = torch.full((n_vox,), float("nan"), dtype=dtype, device=device)
        return {name: nan.clone() for name in features}
    ng = float(n_levels)
    first, second = _pair_index(k, device)
    first, second = first[keep], second[keep]

    # Pairs (a, b) per angle, pair slot and window: (A, P, N), voxels last so that every step runs
    # over long contiguous rows. A pair with a voxel outside the kernel is (0, 0).
    flat = torch.cat([levels.reshape(n_vox, k * k).t().to(torch.int32),
                      torch.zeros((1, n_vox), dtype=torch.int32, device=device)])  # K*K: outside
    a = flat[first]
    b = flat[second]
    valid = (a > 0) & (b > 0)
    a = a * valid
    b = b * valid
    vf = valid.to(dtype)
    t = 2 * vf.sum(1)  # (A, N) entries of the symmetric GLCM (both orders of every pair)
    empty = t == 0
    inv_t = 1.0 / torch.where(empty, torch.ones_like(t), t)
    af = a.to(dtype)
    bf = b.to(dtype)
    s_ = af + bf
    d_ = (af - bf).abs()

    def expect(per_pair: torch.Tensor, entries_per_pair: float = 2.0) -> torch.Tensor:
        """sum_ij P(i, j) f(i, j) from f summed over the pairs' symmetric entries."""
        return per_pair.sum(1) * (entries_per_pair * inv_t)

    out: dict[str, torch.Tensor] = {}
    nan = torch.tensor(float("nan"), dtype=dtype, device=device)

    def per_angle(name: str, value: torch.Tensor, plain_mean: bool = False) -> None:
        value = torch.where(empty, nan, value)
        out[name] = value.mean(0) if plain_mean else _nanmean(value, 0)

    u = expect(s_, 1.0)  # mean row level = mean column level
    e_ij = expect(af * bf)
    # Centred sums (not E[i^2] - u^2): no cancellation, so float32 stays close too.
    ca = (af - u[:, None]) * vf
    cb = (bf - u[:, None]) * vf
    sum_squares = expect(ca * ca + cb * cb, 1.0)
    rows_a = _count_equal(a, b, dtype=dtype)  # entries whose row level is a_p
    single = (rows_a * vf).amax(1) == t  # one grey level along the angle (a flat window)

    if "Autocorrelation" in want:
        per_angle("Autocorrelation", e_ij)
    if "JointAverage" in want:
        per_angle("JointAverage", u, plain_mean=True)
    if want & {"ClusterProminence", "ClusterShade", "ClusterTendency"}:
        c = s_ - 2 * u[:, None]
        c2 = c * c * vf
        if "ClusterTendency" in want:
            per_angle("ClusterTendency", expect(c2))
        if "ClusterShade" in want:
            per_angle("ClusterShade", expect(c2 * c))
        if "ClusterProminence" in want:
            per_angle("ClusterProminence", expect(c2 * c2))
    d2 = d_ * d_
    if "Contrast" in want:
        per_angle("Contrast", expect(d2))
    if "Correlation" in want:
        corr = expect(ca * cb) / (sum_squares + _EPS)
        per_angle("Correlation", torch.where(single, torch.ones_like(corr), corr))
    if want & {"DifferenceAverage", "DifferenceVariance"}:
        e_d = expect(d_)
        if "DifferenceAverage" in want:
            per_angle("DifferenceAverage", e_d)
        if "DifferenceVariance" in want:
            dd = (d_ - e_d[:, None]) * vf
            per_angle("DifferenceVariance", expect(dd * dd))
    if "Idm" in want:
        per_angle("Idm", expect(vf / (1.0 + d2)))
    if "Idmn" in want:
        per_angle("Idmn", expect(vf / (1.0 + d2 / ng ** 2)))
    if "Id" in want:
        per_angle("Id", expect(vf / (1.0 + d_)))
    if "Idn" in want:
        per_angle("Idn", expect(vf / (1.0 + d_ / ng)))
    if "InverseVariance" in want:
        safe = torch.where(d_ == 0, torch.ones_like(d_), d2)
        per_angle("InverseVariance", expect(torch.where(d_ == 0, torch.zeros_like(d_), 1.0 / safe)))
    if "SumSquares" in want:
        per_angle("SumSquares", sum_squares)

    def entropy_of(count: torch.Tensor, entries_per_pair: float) -> torch.Tensor:
        """-sum over entries of (1/T) log2(count / T + eps), count = entries sharing the value."""
        return -expect(torch.log2(count * inv_t[:, None] + _EPS) * vf, entries_per_pair)

    if want & {"JointEntropy", "JointEnergy", "MaximumProbability", "Imc1", "Imc2"}:
        lo = torch.minimum(a, b)
        hi = torch.maximum(a, b)
        # entries in cell (a, b) of the symmetric GLCM: pairs {a, b} in either order, twice if a = b
        cell = _count_equal(hi * (hi + 1) // 2 + lo, dtype=dtype) * (1 + (a == b).to(dtype))
        if want & {"JointEntropy", "Imc1", "Imc2"}:
            hxy = entropy_of(cell, 2.0)
        if "JointEntropy" in want:
            per_angle("JointEntropy", hxy)
        if "JointEnergy" in want:
            per_angle("JointEnergy", expect(cell * vf) * inv_t)
        if "MaximumProbability" in want:
            per_angle("MaximumProbability", (cell * vf).amax(1) * inv_t)
        if want & {"Imc1", "Imc2"}:
            # HX = HY (symmetric GLCM); HXY1 = HXY2 = HX + HY up to the eps inside the logs
            # (< 1e-12 here). Where PyRadiomics' HXY and HXY1/HXY2 are the same single term
            # (one grey level) it returns exactly 0 for both; keep that 0 exact.
            rows_b = _count_equal(b, a, dtype=dtype)
            hx = -expect((torch.log2(rows_a * inv_t[:, None] + _EPS)
                          + torch.log2(rows_b * inv_t[:, None] + _EPS)) * vf, 1.0)
            gap = 2 * hx - hxy
            if "Imc1" in want:
                imc1 = -gap / torch.where(hx != 0, hx, torch.ones_like(hx))
                per_angle("Imc1", torch.where(single, torch.zeros_like(imc1), imc1))
            if "Imc2" in want:
                tiny = 1e-12 if dtype == torch.float64 else 1e-5
                imc2 = torch.sqrt(torch.clamp(1 - torch.exp(-2 * gap), min=0))
                per_angle("Imc2", torch.where(single | (gap <= tiny), torch.zeros_like(imc2), imc2))
    if "SumEntropy" in want:
        per_angle("SumEntropy", entropy_of(2 * _count_equal(a + b, dtype=dtype), 2.0))
    if "DifferenceEntropy" in want:
        d_key = ((a - b).abs() + 1) * valid  # 0 for pairs outside the kernel
        per_angle("DifferenceEntropy", entropy_of(2 * _count_equal(d_key, dtype=dtype), 2.0))
    return out
