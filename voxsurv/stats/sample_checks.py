"""Checks of an evaluation's samples that do not stop it but change how its numbers read: test
patients that are also in the reference (training) data, and a test set too small for a C-index
confidence interval. Each returns a plain-language warning, or None.
"""

from __future__ import annotations

import numpy as np

#: the rule for "too small to estimate a C-index CI" (stated in every warning and in docs/evaluation.md):
#: fewer than 10 deaths or fewer than 20 patients. Below that the percentile-bootstrap CI of
#: Harrell's C rests on a handful of comparable pairs and spans most of [0, 1]; validation studies
#: should have far more (about 100 deaths: Collins, Ogundimu & Altman, Stat Med 2016).
MIN_EVENTS_FOR_C_CI = 10
MIN_PATIENTS_FOR_C_CI = 20


def shared_patients(test_ids, reference_ids) -> list[str]:
    """Patient ids present in both sets (sorted): the same patients in the evaluated and the
    reference (training) data mean the evaluation is not independent of training (leakage)."""
    test = {str(v).strip() for v in test_ids}
    ref = {str(v).strip() for v in reference_ids}
    return sorted(test & ref)


def shared_patients_warning(shared: list[str], n_test: int) -> str | None:
    if not shared:
        return None
    shown = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
    return (f"{len(shared)} of {n_test} test patients are also in the reference (training) file ({shown}): "
            "the evaluation is not independent of training (leakage) and its numbers are optimistic")


def c_index_ci_warning(n_patients: int, n_events: int) -> str | None:
    """Warning when the test set is too small to estimate a C-index CI (see the rule above)."""
    if n_events >= MIN_EVENTS_FOR_C_CI and n_patients >= MIN_PATIENTS_FOR_C_CI:
        return None
    return (f"the test set is too small to estimate a C-index confidence interval: {n_patients} patients, "
            f"{n_events} deaths (rule: at least {MIN_EVENTS_FOR_C_CI} deaths and {MIN_PATIENTS_FOR_C_CI} "
            "patients; about 100 deaths for a validation study). Read C and its CI as indicative only")


def sample_warnings(test_ids, test_event, reference_ids) -> list[str]:
    """All sample warnings of an evaluation, in a fixed order."""
    ev = np.asarray(test_event).astype(int)
    out = [shared_patients_warning(shared_patients(test_ids, reference_ids), len(ev)),
           c_index_ci_warning(len(ev), int(ev.sum()))]
    return [w for w in out if w]
