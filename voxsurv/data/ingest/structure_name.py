"""Choosing the tumour structure by name: the same rule for RTSTRUCT ROIs and DICOM SEG segments,
so ``--roi`` means the same thing whichever file carries the contour."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from voxsurv.core.errors import InputError


def match_structure(names: Sequence[str], pattern: str, kind: str, listed_as: str,
                    patient_id: str | None = None, path: str | Path | None = None) -> int:
    """Index of the one name matching ``pattern`` (case-insensitive regular expression, searched
    anywhere in the name; when several match, a name matching it entirely wins).

    Args:
        names: structure names in file order.
        pattern: the user's ``--roi``.
        kind: what a structure is called in messages ("ROI", "segment").
        listed_as: what its names are called in the fix ("names", "labels").

    Raises:
        InputError: invalid pattern, or none or several names match (listing the names present).
    """
    listed = ", ".join(repr(n) for n in names) or "none"
    try:
        rx = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise InputError(f"{kind} pattern {pattern!r} is not a valid regular expression ({exc})", patient_id,
                         path, "fix --roi") from exc
    hits = [i for i, name in enumerate(names) if rx.search(name)]
    if len(hits) > 1:
        full = [i for i in hits if rx.fullmatch(names[i])]
        hits = full if len(full) == 1 else hits
    if not hits:
        raise InputError(f"no {kind} matches {pattern!r} ({kind}s present: {listed})", patient_id, path,
                         f"choose --roi from the {listed_as} listed")
    if len(hits) > 1:
        raise InputError(f"{kind} pattern {pattern!r} matches {len(hits)} {kind}s: "
                         f"{', '.join(repr(names[i]) for i in hits)} ({kind}s present: {listed})", patient_id,
                         path, "make --roi specific, e.g. '^NAME$'")
    return hits[0]
