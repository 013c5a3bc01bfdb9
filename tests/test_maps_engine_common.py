"""Torch engine shared steps: ROI discretisation exactly as PyRadiomics, in-plane kernel patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxsurv.maps.torch_engine.common import (
    bin_edges, discretise_roi, kernel_order, kernel_patches, voxel_batches,
)


def _volume(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(30, 70, (3, 9, 11)).astype(np.float32)
    img[0, 0, :4] = [25.0, 50.0, -75.0, 0.0]  # values exactly on bin edges
    mask = np.zeros(img.shape, bool)
    mask[:, 1:8, 2:10] = True
    mask[1, 4, 4] = False
    mask[0, 0, :4] = True
    return img, mask


@pytest.mark.parametrize("kwargs", [{"binWidth": 25}, {"binWidth": 10}, {"binCount": 16},
                                    {"binCount": 32}])
def test_discretisation_equals_pyradiomics_binimage(kwargs):
    from radiomics import imageoperations

    img, mask = _volume()
    ref, ref_edges = imageoperations.binImage(img.copy(), mask, **kwargs)
    roi = discretise_roi(img, mask, bin_width=kwargs.get("binWidth", 25.0),
                         bin_count=kwargs.get("binCount"))
    np.testing.assert_array_equal(roi.levels.numpy(), ref)
    np.testing.assert_array_equal(roi.edges, ref_edges)
    assert roi.n_levels == int(ref[mask].max())
    assert roi.levels[~torch.from_numpy(mask)].eq(0).all()


def test_bin_edges_at_multiples_of_the_width():
    from radiomics import imageoperations

    # ROI 54..166, width 25: edges from 50 (IBSI would start at 54), one spare bin on top.
    values = np.array([54.0, 100.0, 166.0])
    np.testing.assert_array_equal(bin_edges(values, 25.0), [50, 75, 100, 125, 150, 175, 200])
    np.testing.assert_array_equal(bin_edges(values, 25.0),
                                  imageoperations.getBinEdges(values, binWidth=25.0))
    # A flat ROI on a multiple of the width still gets a bin (and the spare one).
    flat = np.array([50.0, 50.0])
    np.testing.assert_array_equal(bin_edges(flat, 25.0),
                                  imageoperations.getBinEdges(flat, binWidth=25.0))


def test_kernel_patches_are_masked_and_stay_in_their_slice():
    img, mask = _volume()
    roi = discretise_roi(img, mask)
    values, levels = kernel_patches(roi, radius=1)
    coords = roi.coords.numpy()
    assert values.shape == levels.shape == (len(coords), 3, 3)
    padded_img = np.pad(np.where(mask, img.astype(np.float64), np.nan), ((0, 0), (1, 1), (1, 1)),
                        constant_values=np.nan)
    for n, (z, y, x) in enumerate(coords):
        expect = padded_img[z, y:y + 3, x:x + 3]
        np.testing.assert_array_equal(values[n].numpy(), expect)
        np.testing.assert_array_equal(levels[n].numpy() > 0, ~np.isnan(expect))
    # Partial ranges give the same patches as the whole.
    part_values, part_levels = kernel_patches(roi, 1, 5, 17)
    np.testing.assert_array_equal(part_levels.numpy(), levels[5:17].numpy())
    np.testing.assert_array_equal(part_values.numpy(), values[5:17].numpy())


def test_kernel_order_is_pyradiomics_offsets_then_centre():
    from radiomics import cMatrices

    for radius in (1, 2):
        k = 2 * radius + 1
        offsets = cMatrices.generate_angles(np.array([k, k, k]), np.arange(1, radius + 1), True,
                                            True, 0)
        expect = [(dy + radius) * k + dx + radius for _, dy, dx in offsets] + [radius * k + radius]
        assert kernel_order(radius) == expect


def test_voxel_batches_cover_every_voxel_once():
    assert list(voxel_batches(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(voxel_batches(10, None)) == [(0, 10)]


def test_empty_mask_is_refused():
    img, _ = _volume()
    with pytest.raises(ValueError, match="no voxel"):
        discretise_roi(img, np.zeros(img.shape, bool))
