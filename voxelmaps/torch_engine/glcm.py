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

FEATURES = (
    "Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency",
    "Contrast", "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance",
    "JointEnergy", "JointEntropy", "Imc1", "Imc2", "Idm", "Idmn", "Id", "Idn",
    "InverseVariance", "MaximumProbability", "SumEntropy", "SumSquares",
)

#: In-plane (dy, dx) offsets, PyRadiomics' 2D angles at distance 1 (one per direction pair).
ANGLES = ((1, 1), (1, 0), (1, -1), (0, 1))

_EPS = 2.220446049250313e-16  # numpy.spacing(1), PyRadiomics' eps in every log


def _shifted_pairs(levels: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Levels at p and p + (dy, dx) for every p whose neighbour lies in the (K, K) patch."""
    k = levels.shape[-1]
    ys = slice(max(0, -dy), k - max(0, dy))
    xs = slice(max(0, -dx), k - max(0, dx))
    yn = slice(max(0, dy), k + min(0, dy))
    xn = slice(max(0, dx), k + min(0, dx))
    n = levels.shape[0]
    return levels[:, ys, xs].reshape(n, -1), levels[:, yn, xn].reshape(n, -1)


def _entries(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric GLCM entries per angle: i, j (N, A, E) int64 and their validity (N, A, E)."""
    i_list, j_list = [], []
    width = 0
    pairs = [_shifted_pairs(levels, dy, dx) for dy, dx in ANGLES]
    width = max(a.shape[1] for a, _ in pairs)
    for a, b in pairs:
        pad = width - a.shape[1]
        if pad:
            a = torch.nn.functional.pad(a, (0, pad))
            b = torch.nn.functional.pad(b, (0, pad))
        i_list.append(torch.cat([a, b], 1))
        j_list.append(torch.cat([b, a], 1))
    i = torch.stack(i_list, 1)
    j = torch.stack(j_list, 1)
    return i, j, (i > 0) & (j > 0)


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


def _log_table(max_count: int, dtype, device) -> torch.Tensor:
    """log2(c / t + eps) for c, t in 0..max_count, flattened as c * (max_count + 1) + t."""
    c = torch.arange(max_count + 1, dtype=torch.float64, device=device)
    with torch.no_grad():
        table = torch.log2(c[:, None] / c[None, :] + _EPS)
    return table.to(dtype).reshape(-1)


def _nanmean(x: torch.Tensor, dim: int) -> torch.Tensor:
    ok = ~torch.isnan(x)
    return torch.where(ok, x, torch.zeros_like(x)).sum(dim) / ok.sum(dim)


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
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown GLCM features: {sorted(unknown)}")
    want = set(features)
    device = levels.device
    if angle_present is not None and not bool(angle_present.all()):
        keep = [a for a, ok in enumerate(angle_present.tolist()) if ok]
    else:
        keep = list(range(len(ANGLES)))
    i_idx, j_idx, valid = _entries(levels)
    if len(keep) < len(ANGLES):
        sel = torch.tensor(keep, dtype=torch.long, device=device)
        i_idx, j_idx, valid = i_idx[:, sel], j_idx[:, sel], valid[:, sel]
    n_vox = levels.shape[0]
    if not keep:  # no pair anywhere in the ROI: every feature is NaN, as in PyRadiomics
        nan = torch.full((n_vox,), float("nan"), dtype=dtype, device=device)
        return {name: nan.clone() for name in features}

    w = valid.to(dtype)
    t_count = valid.sum(-1)  # (N, A) entries per window/angle
    t = t_count.to(dtype)
    empty = t_count == 0
    t_safe = torch.where(empty, torch.ones_like(t), t)
    inv_t = 1.0 / t_safe
    i = i_idx.to(dtype)
    j = j_idx.to(dtype)

    def mean_p(f: torch.Tensor) -> torch.Tensor:
        """sum_ij P(i, j) f(i, j) for each window/angle."""
        return (w * f).sum(-1) * inv_t

    out: dict[str, torch.Tensor] = {}
    nan = torch.tensor(float("nan"), dtype=dtype, device=device)

    def per_angle(name: str, value: torch.Tensor, plain_mean: bool = False) -> None:
        value = torch.where(empty, nan, value)
        out[name] = value.mean(1) if plain_mean else _nanmean(value, 1)

    ux = mean_p(i)
    uy = mean_p(j)
    diff = (i - j).abs()
    if "Autocorrelation" in want:
        per_angle("Autocorrelation", mean_p(i * j))
    if "JointAverage" in want:
        per_angle("JointAverage", ux, plain_mean=True)
    if want & {"ClusterProminence", "ClusterShade", "ClusterTendency"}:
        s = i + j - ux[..., None] - uy[..., None]
        s2 = s * s
        if "ClusterProminence" in want:
            per_angle("ClusterProminence", mean_p(s2 * s2))
        if "ClusterShade" in want:
            per_angle("ClusterShade", mean_p(s2 * s))
        if "ClusterTendency" in want:
            per_angle("ClusterTendency", mean_p(s2))
    if "Contrast" in want:
        per_angle("Contrast", mean_p(diff * diff))
    if "Correlation" in want:
        di = i - ux[..., None]
        dj = j - uy[..., None]
        sigx = mean_p(di * di) ** 0.5
        sigy = mean_p(dj * dj) ** 0.5
        corr = mean_p(di * dj) / (sigx * sigy + _EPS)
        corr = torch.where(sigx * sigy == 0, torch.ones_like(corr), corr)
        per_angle("Correlation", corr)
    if want & {"DifferenceAverage", "DifferenceVariance"}:
        davg = mean_p(diff)
        if "DifferenceAverage" in want:
            per_angle("DifferenceAverage", davg)
        if "DifferenceVariance" in want:
            dd = diff - davg[..., None]
            per_angle("DifferenceVariance", mean_p(dd * dd))
    if "Idm" in want:
        per_angle("Idm", mean_p(1.0 / (1.0 + diff * diff)))
    if "Idmn" in want:
        per_angle("Idmn", mean_p(1.0 / (1.0 + diff * diff / float(n_levels) ** 2)))
    if "Id" in want:
        per_angle("Id", mean_p(1.0 / (1.0 + diff)))
    if "Idn" in want:
        per_angle("Idn", mean_p(1.0 / (1.0 + diff / float(n_levels))))
    if "InverseVariance" in want:
        safe = torch.where(diff == 0, torch.ones_like(diff), diff)
        per_angle("InverseVariance", mean_p(torch.where(diff == 0, torch.zeros_like(diff),
                                                         1.0 / (safe * safe))))
    if "SumSquares" in want:
        di = i - ux[..., None]
        per_angle("SumSquares", mean_p(di * di))

    counted = {"DifferenceEntropy", "JointEnergy", "JointEntropy", "Imc1", "Imc2",
               "MaximumProbability", "SumEntropy"}
    if not want & counted:
        return out

    # Count, for every entry, the entries sharing its cell / row / column / sum / difference,
    # with one scatter-add into a small per-window/angle histogram and a gather back.
    ng = int(n_levels)
    cell = (i_idx - 1).clamp(min=0) * ng + (j_idx - 1).clamp(min=0)
    row = ng * ng + (i_idx - 1).clamp(min=0)
    col = ng * ng + (j_idx - 1).clamp(min=0)  # same slots as rows: the GLCM is symmetric
    total = i_idx + j_idx
    summ = ng * ng + ng + total.clamp(min=2) - 2
    dif = ng * ng + ng + 2 * ng - 1 + (i_idx - j_idx).abs()
    slots = ng * ng + ng + (2 * ng - 1) + ng
    valid4 = valid.repeat(1, 1, 4)
    keys = torch.where(valid4, torch.cat([cell, row, summ, dif], -1), 0)  # (N, A, 4E)
    col = torch.where(valid, col, 0)
    n_ent = i_idx.shape[-1]
    m = keys.shape[0] * keys.shape[1]
    hist = torch.zeros((m, slots), dtype=torch.int32, device=device)
    hist.scatter_add_(1, keys.reshape(m, -1), valid4.to(torch.int32).reshape(m, -1))
    counts = hist.gather(1, torch.cat([keys, col], -1).reshape(m, -1))
    counts = counts.reshape(keys.shape[0], keys.shape[1], 5, n_ent).long()
    c_cell, c_row, c_sum, c_dif, c_col = counts.unbind(2)
    max_count = int(2 * levels.shape[-1] * (levels.shape[-1] - 1))
    table = _log_table(max_count, dtype, device)
    tk = t_count[..., None]

    def log_p(c: torch.Tensor) -> torch.Tensor:
        """log2(c / T + eps) for counts c at every entry."""
        return table[c * (max_count + 1) + tk]

    hxy = None
    if want & {"JointEntropy", "Imc1", "Imc2"}:
        hxy = -mean_p(log_p(c_cell))
    if "JointEntropy" in want:
        per_angle("JointEntropy", hxy)
    if "JointEnergy" in want:
        per_angle("JointEnergy", mean_p(c_cell.to(dtype)) * inv_t)
    if "MaximumProbability" in want:
        per_angle("MaximumProbability", (c_cell * valid).amax(-1).to(dtype) * inv_t)
    if "DifferenceEntropy" in want:
        per_angle("DifferenceEntropy", -mean_p(log_p(c_dif)))
    if "SumEntropy" in want:
        per_angle("SumEntropy", -mean_p(log_p(c_sum)))
    if want & {"Imc1", "Imc2"}:
        hx = -mean_p(log_p(c_row))
        hy = -mean_p(log_p(c_col))
        if "Imc1" in want:
            px_py = c_row.to(dtype) * c_col.to(dtype) * (inv_t * inv_t)[..., None]
            hxy1 = -mean_p(torch.log2(px_py + _EPS))
            div = torch.fmax(hx, hy)
            imc1 = torch.where(div != 0, (hxy - hxy1) / torch.where(div != 0, div, torch.ones_like(div)),
                               torch.zeros_like(div))
            # One grey level along the angle: HXY and HXY1 are the same single term in
            # PyRadiomics (Imc1 exactly 0) while HX is -log2(1 + eps), not 0; keep that 0 exact.
            single = (c_row * valid).amax(-1) == t_count
            per_angle("Imc1", torch.where(single, torch.zeros_like(imc1), imc1))
        if "Imc2" in want:
            # HXY2 = H(px x py) = HX + HY up to the eps in the logs (< 1e-12 here); equal to
            # HXY in PyRadiomics only for a product GLCM (one cell, or independent levels),
            # where it returns 0 instead of a rounding-sized square root.
            gap = hx + hy - hxy
            tiny = 1e-12 if dtype == torch.float64 else 1e-5
            imc2 = torch.sqrt(torch.clamp(1 - torch.exp(-2 * gap), min=0))
            per_angle("Imc2", torch.where(gap <= tiny, torch.zeros_like(gap), imc2))
    return out
