"""Input checks shared by the survival statistics: arrays of equal length, finite times >= 0,
0/1 events, at least one event. Errors are `voxsurv.core.errors.InputError` (a ValueError) and say
what to fix, in the manner of lifelines / scikit-survival ("all samples are censored").
"""

from __future__ import annotations

import numpy as np

from voxsurv.core.errors import InputError


def check_survival(time, event, *others, names: tuple[str, ...] = (), need_event: bool = True):
    """Return `time` (float), `event` (bool) and each of `others` (float) as 1-D arrays.

    Raises InputError for unequal lengths, NaN/negative times, events not in {0, 1},
    non-finite scores, or (when `need_event`) no event at all.
    """
    time = np.asarray(time, dtype=float).ravel()
    raw_event = np.asarray(event).ravel()
    if raw_event.dtype == bool:
        event_bool = raw_event
    else:
        ev = np.asarray(raw_event, dtype=float)
        if np.isnan(ev).any() or not np.isin(ev, (0.0, 1.0)).all():
            bad = np.unique(ev[~np.isin(ev, (0.0, 1.0))])[:5]
            raise InputError(f"event must be 0 (censored) or 1 (death); found {bad.tolist()}",
                             fix="code the event column as 0/1")
        event_bool = ev.astype(bool)
    n = time.size
    if n == 0:
        raise InputError("no samples", fix="pass at least one patient")
    if event_bool.size != n:
        raise InputError(f"time has {n} values but event has {event_bool.size}")
    if not np.isfinite(time).all():
        raise InputError(f"{int((~np.isfinite(time)).sum())} survival times are missing or infinite",
                         fix="drop or complete those patients")
    if (time < 0).any():
        raise InputError("negative survival times", fix="times must be >= 0 (days since baseline)")
    if need_event and not event_bool.any():
        raise InputError("all samples are censored", fix="the statistic needs at least one event")
    out = [time, event_bool]
    for i, other in enumerate(others):
        name = names[i] if i < len(names) else f"argument {i + 3}"
        arr = np.asarray(other, dtype=float).ravel()
        if arr.size != n:
            raise InputError(f"{name} has {arr.size} values but time has {n}")
        if not np.isfinite(arr).all():
            raise InputError(f"{int((~np.isfinite(arr)).sum())} values of {name} are missing or infinite",
                             fix="drop those patients or fix the model output")
        out.append(arr)
    return tuple(out)
