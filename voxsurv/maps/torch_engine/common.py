"""Shared steps of the torch engine: PyRadiomics-exact discretisation of the ROI and per-voxel
in-plane kernel patches.

PyRadiomics' voxel-based mode (force2D on the slice axis, masked kernel) does two things before any
feature formula, and both are reproduced here exactly:

1. The grey levels are discretised ONCE over the whole ROI (not per window), with its bin edges:
   fixed bin width -> edges at multiples of the width starting at or below the ROI minimum;
   fixed bin count -> ``numpy.histogram`` edges with the last edge raised by 1 (so the maximum
   falls in the top bin). Levels are 1..Ng inside the ROI; Ng is the highest level present (what
   PyRadiomics calls ``Ng``; absent levels in between still count for Idmn/Idn).
2. Around every ROI voxel, the kernel is the (2r+1) x (2r+1) in-plane box of the same axial slice,
   clipped to the image; only ROI voxels of that box take part (masked kernel).

Arrays are (z, y, x) as SimpleITK gives them; the slice axis is index 0.

Patches are what every feature family consumes:

- ``levels`` (N, K, K) int64: grey level of each kernel position, 0 where the position is outside
  the kernel (outside the ROI or the image);
- ``values`` (N, K, K) float: the original intensities, NaN where ``levels`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DiscretisedROI", "bin_edges", "discretise_roi", "kernel_patches", "kernel_order",
           "voxel_batches"]


def bin_edges(roi_values: np.ndarray, bin_width: float = 25.0,
              bin_count: int | None = None) -> np.ndarray:
    """Bin edges exactly as PyRadiomics' ``imageoperations.getBinEdges`` computes them.

    Fixed width: edges at multiples of the width from the first multiple <= min up to past max
    (half-open bins, ``numpy.digitize`` semantics). A flat ROI on a multiple of the width gets the
    two edges PyRadiomics uses (value +- 0.5). Fixed count (wins over width): ``numpy.histogram``
    edges with the top edge raised by 1.
    """
    roi_values = np.asarray(roi_values)
    if roi_values.size == 0:
        raise ValueError("cannot discretise an empty ROI")
    if bin_count is not None:
        edges = np.histogram(roi_values, int(bin_count))[1]
        edges[-1] += 1
        return edges
    minimum = roi_values.min()
    maximum = roi_values.max()
    low = minimum - (minimum % bin_width)
    high = maximum + 2 * bin_width
    edges = np.arange(low, high, bin_width)
    if len(edges) == 1:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


@dataclass
class DiscretisedROI:
    """An image discretised over its ROI, ready for kernel extraction.

    Attributes:
        levels: (Z, Y, X) int64 grey levels 1..n_levels inside the ROI, 0 outside.
        values: (Z, Y, X) float intensities (the engine dtype), NaN outside the ROI.
        coords: (N, 3) int64 (z, y, x) of the ROI voxels in C order (PyRadiomics' ``numpy.where``).
        n_levels: PyRadiomics ``Ng``: the highest grey level present in the ROI.
        gray_levels: (G,) int64 levels present in the ROI, ascending.
        edges: the bin edges used (numpy, for the record).
    """

    levels: torch.Tensor
    values: torch.Tensor
    coords: torch.Tensor
    n_levels: int
    gray_levels: torch.Tensor
    edges: np.ndarray

    @property
    def n_voxels(self) -> int:
        return int(self.coords.shape[0])


def discretise_roi(image: np.ndarray, mask: np.ndarray, bin_width: float = 25.0,
                   bin_count: int | None = None, dtype: torch.dtype = torch.float64,
                   device: str | torch.device = "cpu") -> DiscretisedROI:
    """Discretise ``image`` inside ``mask`` (both (z, y, x)) the way PyRadiomics does.

    The binning runs in numpy on the image's own dtype (as PyRadiomics does), so that a value lying
    on a bin edge lands in the same bin; only then are arrays moved to ``device``/``dtype``.
    """
    image = np.asarray(image)
    roi = np.asarray(mask).astype(bool)
    if image.shape != roi.shape:
        raise ValueError(f"image shape {image.shape} and mask shape {roi.shape} differ")
    if image.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {image.shape}")
    if not roi.any():
        raise ValueError("the mask has no voxel inside the ROI")
    roi_values = image[roi]
    edges = bin_edges(roi_values, bin_width, bin_count)
    levels = np.zeros(image.shape, dtype=np.int64)
    levels[roi] = np.digitize(roi_values, edges)
    gray_levels = np.unique(levels[roi])
    values = image.astype(np.float64)
    values[~roi] = np.nan
    coords = np.stack(np.nonzero(roi), axis=1)
    return DiscretisedROI(
        levels=torch.from_numpy(levels).to(device),
        values=torch.from_numpy(values).to(device=device, dtype=dtype),
        coords=torch.from_numpy(coords).to(device),
        n_levels=int(gray_levels.max()),
        gray_levels=torch.from_numpy(gray_levels).to(device),
        edges=edges,
    )


def voxel_batches(n_voxels: int, voxel_batch: int | None):
    """Yield (start, stop) ranges of at most ``voxel_batch`` voxels (all at once if None/<=0)."""
    if voxel_batch is None or voxel_batch <= 0:
        voxel_batch = max(n_voxels, 1)
    for start in range(0, n_voxels, voxel_batch):
        yield start, min(start + voxel_batch, n_voxels)


def kernel_patches(roi: DiscretisedROI, radius: int = 1, start: int = 0,
                   stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """In-plane kernel patches of ROI voxels ``start:stop``.

    Returns:
        values (n, K, K) float (NaN outside the kernel) and levels (n, K, K) int64 (0 outside),
        K = 2 * radius + 1; patch[:, radius, radius] is the centre voxel; axis 1 is y, axis 2 x.
    """
    if radius < 1:
        raise ValueError(f"kernel radius must be >= 1, got {radius}")
    coords = roi.coords[start:stop]
    z_size, y_size, x_size = roi.levels.shape
    k = 2 * radius + 1
    padded_y, padded_x = y_size + 2 * radius, x_size + 2 * radius
    # Pad in-plane only: the kernel never leaves its slice (force2D on axis 0). Padded once per
    # radius and kept, since batches call this many times.
    cache = roi.__dict__.setdefault("_padded", {})
    if radius not in cache:
        pad = (radius, radius, radius, radius)
        cache[radius] = (torch.nn.functional.pad(roi.levels, pad, value=0),
                         torch.nn.functional.pad(roi.values, pad, value=float("nan")))
    levels, values = cache[radius]
    offsets = torch.arange(k, device=coords.device)
    centre = (coords[:, 0] * padded_y + coords[:, 1]) * padded_x + coords[:, 2]  # top-left corner
    index = (centre[:, None, None] + offsets[None, :, None] * padded_x + offsets[None, None, :])
    index = index.reshape(-1)
    patch_levels = levels.reshape(-1).index_select(0, index).reshape(-1, k, k)
    patch_values = values.reshape(-1).index_select(0, index).reshape(-1, k, k)
    return patch_values, patch_levels


def kernel_order(radius: int) -> list[int]:
    """Flat (K*K) positions in PyRadiomics' first-order kernel order.

    PyRadiomics lists the in-plane offsets (dy, dx) in descending order and appends the centre;
    numpy's pairwise summation over that order decides the last bit of a window mean, which decides
    whether a flat window has exactly zero variance (Skewness/Kurtosis 0) or not.
    """
    k = 2 * radius + 1
    centre = radius * k + radius
    return [p for p in range(k * k - 1, -1, -1) if p != centre] + [centre]
