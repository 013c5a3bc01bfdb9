"""The 90 features as data: the right count per class, every name valid in PyRadiomics, and
selection errors that say what was meant."""

import pytest

from voxsurv.maps.features import EXCLUDED, FEATURE_CLASSES, FEATURE_NAMES, resolve_features
from voxsurv.maps.settings import MapSettings
from voxsurv.core.errors import InputError


def test_ninety_features_with_the_issue_counts_per_class():
    counts = {cls: len(feats) for cls, feats in FEATURE_CLASSES.items()}
    assert counts == {"firstorder": 17, "glcm": 22, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) == 90


def test_names_are_pyradiomics_defaults_minus_the_three_documented_exclusions():
    from radiomics import getFeatureClasses

    classes = getFeatureClasses()
    pyrad_defaults = {f"{cls}_{f}" for cls in FEATURE_CLASSES
                      for f, deprecated in classes[cls].getFeatureNames().items() if not deprecated}
    assert set(FEATURE_NAMES) == pyrad_defaults - set(EXCLUDED)
    assert set(EXCLUDED) == {"firstorder_TotalEnergy", "glcm_SumAverage", "glcm_MCC"}


def test_resolve_classes_names_and_comma_strings_in_requested_order():
    assert resolve_features(None) == FEATURE_NAMES
    sel = resolve_features("ngtdm,firstorder_Mean")
    assert sel == [f"ngtdm_{f}" for f in FEATURE_CLASSES["ngtdm"]] + ["firstorder_Mean"]
    assert resolve_features(["glcm_Idm", "firstorder_Mean", "glcm_Idm"]) == ["glcm_Idm",
                                                                          "firstorder_Mean"]


def test_unknown_feature_error_lists_close_matches():
    with pytest.raises(InputError, match="glcm_Contrast"):
        resolve_features(["glcm_Contrsat"])
    with pytest.raises(InputError, match="2 x glcm_JointAverage"):
        resolve_features("glcm_SumAverage")


def test_settings_hash_is_stable_and_changes_with_any_setting():
    a = MapSettings()
    assert a.stable_hash() == MapSettings(window=[-95, 155]).stable_hash()
    assert MapSettings.from_dict(a.to_dict()) == a
    others = [MapSettings(radius=2), MapSettings(bin_width=20), MapSettings(bin_count=32),
              MapSettings(window=None), MapSettings(dtype="float32"), MapSettings(force2d=False)]
    assert len({s.stable_hash() for s in others} | {a.stable_hash()}) == len(others) + 1
    p = MapSettings(bin_count=16).to_pyradiomics()
    assert p["binCount"] == 16 and "binWidth" not in p and p["force2D"] and p["force2Ddimension"] == 0
    with pytest.raises(InputError):
        MapSettings(window=(155, -95))
