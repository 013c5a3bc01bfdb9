"""The 90 voxel-level radiomics features, as data.

The paper computes 90 IBSI-compliant voxel maps with PyRadiomics 3.1 (17 intensity + 73 texture)
but does not list them. This is the set we use and why (docs/maps.md, "Which 90 and why"):

- firstorder (17): PyRadiomics' 18 defaults minus TotalEnergy (= Energy x voxel volume, not an
  IBSI feature and redundant with Energy).
- glcm (22): PyRadiomics' own CT example list: its 24 defaults minus SumAverage (exactly
  2 x JointAverage) and MCC (raises LinAlgError in voxel mode and NaNs a whole voxel batch).
- glrlm (16), glszm (16), gldm (14), ngtdm (5): all PyRadiomics defaults of those classes.

Names are "<class>_<Feature>" with PyRadiomics' class and feature spelling ("glcm_Contrast"), so
they map one to one onto PyRadiomics output keys ("original_glcm_Contrast") and onto
`pyradiomics_to_ibsi.csv`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from voxsurv.core.errors import InputError

FEATURE_CLASSES: dict[str, tuple[str, ...]] = {
    "firstorder": (
        "10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis",
        "Maximum", "Mean", "MeanAbsoluteDeviation", "Median", "Minimum", "Range",
        "RobustMeanAbsoluteDeviation", "RootMeanSquared", "Skewness", "Uniformity", "Variance",
    ),
    "glcm": (
        "Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency",
        "Contrast", "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance",
        "JointEnergy", "JointEntropy", "Imc1", "Imc2", "Idm", "Idmn", "Id", "Idn",
        "InverseVariance", "MaximumProbability", "SumEntropy", "SumSquares",
    ),
    "glrlm": (
        "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
        "HighGrayLevelRunEmphasis", "LongRunEmphasis", "LongRunHighGrayLevelEmphasis",
        "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis", "RunEntropy",
        "RunLengthNonUniformity", "RunLengthNonUniformityNormalized", "RunPercentage",
        "RunVariance", "ShortRunEmphasis", "ShortRunHighGrayLevelEmphasis",
        "ShortRunLowGrayLevelEmphasis",
    ),
    "glszm": (
        "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
        "HighGrayLevelZoneEmphasis", "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis",
        "LargeAreaLowGrayLevelEmphasis", "LowGrayLevelZoneEmphasis", "SizeZoneNonUniformity",
        "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis", "SmallAreaHighGrayLevelEmphasis",
        "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy", "ZonePercentage", "ZoneVariance",
    ),
    "gldm": (
        "DependenceEntropy", "DependenceNonUniformity", "DependenceNonUniformityNormalized",
        "DependenceVariance", "GrayLevelNonUniformity", "GrayLevelVariance",
        "HighGrayLevelEmphasis", "LargeDependenceEmphasis",
        "LargeDependenceHighGrayLevelEmphasis", "LargeDependenceLowGrayLevelEmphasis",
        "LowGrayLevelEmphasis", "SmallDependenceEmphasis",
        "SmallDependenceHighGrayLevelEmphasis", "SmallDependenceLowGrayLevelEmphasis",
    ),
    "ngtdm": ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength"),
}

#: All 90 names, "<class>_<Feature>", in class order (firstorder, glcm, glrlm, glszm, gldm, ngtdm).
FEATURE_NAMES: list[str] = [f"{cls}_{feat}" for cls, feats in FEATURE_CLASSES.items()
                            for feat in feats]

#: PyRadiomics features deliberately left out, with the reason (kept as data for the docs/tests).
EXCLUDED: dict[str, str] = {
    "firstorder_TotalEnergy": "Energy x voxel volume; not an IBSI feature, redundant with Energy",
    "glcm_SumAverage": "exactly 2 x glcm_JointAverage",
    "glcm_MCC": "raises LinAlgError in voxel mode and NaNs the whole voxel batch",
}


def family_features(family: str, features: Iterable[str] | None = None) -> list[str]:
    """Feature names (no class prefix) of one family, checked against its list; None = all.

    The engines call this, so the list above is the only place a family's features are named.
    """
    available = FEATURE_CLASSES[family]
    if features is None:
        return list(available)
    features = list(features)
    unknown = [f for f in features if f not in available]
    if unknown:
        raise ValueError(f"unknown {family} feature(s) {unknown}; available: {list(available)}")
    return features


def split_name(name: str) -> tuple[str, str]:
    """'glcm_Contrast' -> ('glcm', 'Contrast')."""
    cls, _, feat = name.partition("_")
    return cls, feat


def resolve_features(names_or_classes: str | Iterable[str] | None = None) -> list[str]:
    """Expand a selection into feature names, in the order requested.

    Accepts None (all 90, in FEATURE_NAMES order), class names ("glcm", expanded in place in the
    class's order), full names ("glcm_Contrast"), or a mix; a single string may be
    comma-separated ("firstorder,glcm_Idm"). Later duplicates are dropped.

    Raises:
        InputError: for an unknown name, listing the closest valid names.
    """
    if names_or_classes is None:
        return list(FEATURE_NAMES)
    if isinstance(names_or_classes, str):
        items = [s.strip() for s in names_or_classes.split(",") if s.strip()]
    else:
        items = [str(s).strip() for s in names_or_classes]
    if not items:
        raise InputError("no features selected",
                         fix="pass class names (e.g. 'glcm') or names such as 'glcm_Contrast'")
    wanted: dict[str, None] = {}  # insertion-ordered set
    for item in items:
        if item in FEATURE_CLASSES:
            wanted.update((f"{item}_{f}", None) for f in FEATURE_CLASSES[item])
        elif item in FEATURE_NAMES:
            wanted[item] = None
        else:
            close = difflib.get_close_matches(item, FEATURE_NAMES + list(FEATURE_CLASSES), n=5,
                                              cutoff=0.5)
            why = f"; {EXCLUDED[item]}" if item in EXCLUDED else ""
            raise InputError(
                f"unknown radiomics feature {item!r}{why}",
                fix=(f"did you mean {', '.join(close)}?" if close else
                     f"use one of the classes {', '.join(FEATURE_CLASSES)} or a name listed in "
                     "voxsurv.maps.features.FEATURE_NAMES"))
    return list(wanted)


def by_class(names: Iterable[str]) -> dict[str, list[str]]:
    """Group '<class>_<Feature>' names by class, as PyRadiomics' enableFeaturesByName wants them."""
    groups: dict[str, list[str]] = {}
    for name in names:
        cls, feat = split_name(name)
        groups.setdefault(cls, []).append(feat)
    return groups
