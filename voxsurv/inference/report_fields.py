"""What report.json says beside the numbers, so a reader can judge them: whether the risk lies in
the range the model was calibrated on, how the tier was decided and from how many patients,
whether the tumour fitted in the field of view the network saw, and which model made it (one
version scheme: ``<release>+<first 12 hex digits of the weights' sha256>``).
"""

from __future__ import annotations

import numpy as np


def model_version(release: str, weights_sha256: str) -> str:
    """``0.2.0+3b0448e4a1aa``: the release of voxsurv and its bundles + the exact weights (PEP 440
    local version), so other weights through the same bundle get another version."""
    return f"{release}+{weights_sha256[:12]}"


def risk_range(risk: float, training_range, n_patients: int | None = None, inside: bool | None = None) -> dict:
    """``in_training_range``: the risk lies within the training patients' min..max (the patients the
    tiers and the baseline were fitted on), with a plain warning when it does not; None when the
    bundle records no range."""
    if not training_range:
        return {"in_training_range": None, "training_risk_range": None, "training_patients": n_patients,
                "note": "this bundle does not record its training patients' risk range (package it again with "
                        "python -m voxsurv.inference.packaging): whether this risk lies inside it is unknown"}
    lo, hi = (float(v) for v in training_range)
    inside = bool(lo <= risk <= hi) if inside is None else bool(inside)
    who = f"the {n_patients} training patients'" if n_patients else "the training patients'"
    note = "" if inside else (
        f"the risk {risk:.3f} lies outside the range of {who} risks ({lo:.3f} to {hi:.3f}): the model was not "
        "calibrated there, so the tier and S(t) are extrapolations; check that the input is a pre-treatment lung CT "
        "with a tumour contour like those the model was trained on")
    return {"in_training_range": inside, "training_risk_range": [lo, hi], "training_patients": n_patients,
            "note": note}


def tier_rule(cutoffs, info) -> dict:
    """The rule that turned the risk into a tier, and the patients it came from."""
    c1, c2 = (float(c) for c in cutoffs)
    prov = getattr(info, "provenance", {}) or {}
    n, events = prov.get("training_patients"), prov.get("training_events")
    source = prov.get("baseline_and_tiers_from") or "the training patients of these weights"
    who = f"{n} patients" + (f" ({events} deaths)" if events is not None else "") if n else "an unknown number of patients"
    return {"rule": f"Low if risk < {c1:.4f}; Intermediate if {c1:.4f} <= risk < {c2:.4f}; High if risk >= {c2:.4f}",
            "cutoffs": [c1, c2], "method": getattr(info, "tier_method", ""), "n_patients": n, "n_events": events,
            "fitted_on": f"tertiles of the risks of {who}: {source}",
            "note": (f"cut-offs estimated from {n} patients are uncertain; the tier is a coarse summary of the risk"
                     if n is not None and n < 100 else "")}


def tumour_extent_mm(mask) -> dict:
    """The tumour's largest in-plane (axial) extent on the input grid: the longer side of its
    bounding box on the slice where that is largest, in mm (SimpleITK mask)."""
    import SimpleITK as sitk

    m = sitk.GetArrayViewFromImage(mask) > 0  # (z, y, x)
    sx, sy = mask.GetSpacing()[:2]
    best, best_k = 0.0, None
    for k in np.nonzero(m.any(axis=(1, 2)))[0]:
        ys, xs = np.nonzero(m[k])
        ext = max((xs.max() - xs.min() + 1) * sx, (ys.max() - ys.min() + 1) * sy)
        if ext > best:
            best, best_k = float(ext), int(k)
    return {"max_inplane_extent_mm": round(best, 1), "at_input_slice": best_k}


def field_of_view(extent: dict, fov_mm: float, cut_slices: int | None, n_slices: int) -> dict:
    """``tumour_exceeds_field_of_view``: part of the tumour lay outside the in-plane crop the
    network saw (on ``cut_slices`` of ``n_slices`` slices), with the tumour's largest extent vs
    the crop's side."""
    ext = extent["max_inplane_extent_mm"]
    exceeds = bool(cut_slices) if cut_slices is not None else bool(ext > fov_mm)
    note = "" if not exceeds else (
        f"the tumour (largest in-plane extent {ext:.0f} mm) is wider than the network's {fov_mm:.0f} mm field of view: "
        + (f"on {cut_slices} of {n_slices} slices " if cut_slices is not None else "")
        + "the model saw only part of it, so the risk may not reflect the whole tumour")
    return {"tumour_exceeds_field_of_view": exceeds, "tumour_max_inplane_extent_mm": ext, "field_of_view_mm": fov_mm,
            "cut_slices": cut_slices, "n_slices": n_slices, "note": note}
