"""IBSI digital phantom: whole-ROI values through the voxel-map pipeline (slice-sized kernel,
averaged over slices = IBSI 2D) and PyRadiomics first order vs the IBSI-1 reference values."""

import pytest

from voxsurv.maps.features import FEATURE_NAMES
from voxsurv.maps.ibsi import digital_phantom_table

#: Every one of the 90 must match its IBSI reference (3 significant digits; Kurtosis after the
#: documented -3). Shrink this set only with a named deviation in docs/maps.md.
MUST_MATCH = set(FEATURE_NAMES)


@pytest.fixture(scope="module")
def table(ibsi):
    return digital_phantom_table(ibsi, texture_backend="pyradiomics")


def test_pyradiomics_maps_reproduce_ibsi_2d_reference_values(table):
    assert len(table) == 90
    failed = table[~table["match"] & table["feature"].isin(MUST_MATCH)]
    assert failed.empty, failed[["feature", "ibsi_tag", "reference", "compared"]].to_string()
    assert table["ibsi_tag"].str.endswith(("_2D_avg", "_2D")).sum() == 90 - 17


def test_known_deviation_kurtosis_is_ibsi_plus_three(table):
    row = table.set_index("feature").loc["firstorder_Kurtosis"]
    assert row["value"] == pytest.approx(row["reference"] + 3.0, abs=5e-3)
    assert not abs(row["value"] - row["reference"]) < 1  # uncorrected, it would not match


def test_torch_engine_reproduces_ibsi_2d_reference_values(ibsi):
    pytest.importorskip("voxsurv.maps.torch_engine")
    table = digital_phantom_table(ibsi, texture_backend="torch")
    failed = table[~table["match"] & table["feature"].isin(MUST_MATCH)]
    assert failed.empty, failed[["feature", "ibsi_tag", "reference", "compared"]].to_string()
