"""Cohort manifests: one CSV row per patient, validated before anything expensive runs.

Required columns: ``patient_id, image, mask, time_days, event`` (event 1 = death, 0 = censored).
Optional: ``cohort``, ``split`` and any clinical columns (kept as they are). ``image`` and ``mask``
are paths relative to the CSV's folder (absolute paths are accepted too).

The validator reports every problem at once, each with its row, patient, column and what is
wrong, so a user fixes the whole file in one pass instead of one error per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from voxsurv.core.errors import InputError

REQUIRED_COLUMNS = ("patient_id", "image", "mask", "time_days", "event")
OPTIONAL_COLUMNS = ("cohort", "split")
PATH_COLUMNS = ("image", "mask")
DEFAULT_COHORT = "all"


@dataclass(frozen=True)
class ManifestIssue:
    """One problem in a manifest. ``row`` is the 1-based data row (CSV line = row + 1); None for
    problems with the file as a whole (e.g. a missing column)."""

    problem: str
    row: int | None = None
    patient_id: str | None = None
    column: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.row is not None:
            parts.append(f"row {self.row} (line {self.row + 1})")
        if self.patient_id:
            parts.append(f"patient {self.patient_id}")
        if self.column:
            parts.append(f"column {self.column}")
        where = ", ".join(parts)
        return f"{where}: {self.problem}" if where else self.problem


class ManifestError(InputError):
    """A manifest with one or more problems; ``issues`` lists them all."""

    def __init__(self, path: str | Path, issues: list[ManifestIssue]):
        self.issues = list(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        n = len(self.issues)
        super().__init__(f"manifest has {n} problem{'s' if n != 1 else ''}:\n{lines}\n", path=str(path),
                         fix="correct the rows listed above and run `voxsurv manifest check` again")


def _read_raw(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError("manifest file not found", path=str(path), fix="check the path")
    try:
        # Everything as text: messages quote exactly what the user wrote.
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"manifest is not a readable CSV ({type(exc).__name__})", path=str(path),
                         fix="save it as a comma-separated UTF-8 file with a header row") from exc


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _parse_time(value: str) -> tuple[float | None, str | None]:
    text = value.strip()
    if text == "" or text.lower() in {"nan", "na", "n/a", "none", "null"}:
        return None, f"time is missing or NaN ({value!r})"
    try:
        t = float(text)
    except ValueError:
        return None, f"time is not a number ({value!r})"
    if math.isnan(t):
        return None, f"time is missing or NaN ({value!r})"
    if math.isinf(t):
        return None, f"time is not finite ({value!r})"
    if t < 0:
        return None, f"time is negative ({value!r})"
    return t, None


def _parse_event(value: str) -> tuple[int | None, str | None]:
    text = value.strip()
    try:
        e = float(text)
    except ValueError:
        e = float("nan")
    if e in (0.0, 1.0):
        return int(e), None
    return None, f"event must be 0 (censored) or 1 (death), got {value!r}"


def validate_manifest(path: str | Path, check_files: bool = True) -> tuple[pd.DataFrame, list[ManifestIssue]]:
    """Read a manifest and list every problem in it.

    Returns the raw table (all text) and the issues; an empty list means the manifest is valid.
    Raises InputError only when the file itself cannot be read as CSV.
    """
    path = Path(path)
    raw = _read_raw(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    issues: list[ManifestIssue] = []
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    for col in missing:
        issues.append(ManifestIssue(f"required column is missing (columns present: {', '.join(raw.columns)})",
                                    column=col))
    if missing:
        return raw, issues
    if raw.empty:
        issues.append(ManifestIssue("manifest has a header but no patients"))
        return raw, issues

    base = path.resolve().parent
    first_row: dict[str, int] = {}
    for i, rec in enumerate(raw.to_dict("records"), start=1):
        pid = rec["patient_id"].strip()
        if not pid:
            issues.append(ManifestIssue("patient_id is empty", row=i, column="patient_id"))
        elif pid in first_row:
            issues.append(ManifestIssue(f"duplicate patient_id (first on row {first_row[pid]})", row=i,
                                        patient_id=pid, column="patient_id"))
        else:
            first_row[pid] = i
        for col in PATH_COLUMNS:
            value = rec[col].strip()
            if not value:
                issues.append(ManifestIssue("path is empty", row=i, patient_id=pid or None, column=col))
            elif check_files and not _resolve(base, value).is_file():
                issues.append(ManifestIssue(f"file not found: {_resolve(base, value)}", row=i,
                                            patient_id=pid or None, column=col))
        _, problem = _parse_time(rec["time_days"])
        if problem:
            issues.append(ManifestIssue(problem, row=i, patient_id=pid or None, column="time_days"))
        _, problem = _parse_event(rec["event"])
        if problem:
            issues.append(ManifestIssue(problem, row=i, patient_id=pid or None, column="event"))
    return raw, issues


def load_manifest(path: str | Path, check_files: bool = True) -> pd.DataFrame:
    """Validated manifest for the other layers: one row per patient, ``image``/``mask`` as
    absolute paths (str), ``time_days`` float, ``event`` int (0/1), ``cohort`` str (``"all"`` when
    the column is absent), ``patient_id`` str; optional and clinical columns kept (numbers parsed).

    Raises ManifestError listing every problem when the manifest is invalid.
    """
    path = Path(path)
    raw, issues = validate_manifest(path, check_files=check_files)
    if issues:
        raise ManifestError(path, issues)
    # Second read with type inference for clinical columns; required ones are set from the raw text.
    df = pd.read_csv(path, skipinitialspace=True, dtype={"patient_id": str, "cohort": str, "split": str})
    df.columns = [str(c).strip() for c in df.columns]
    base = path.resolve().parent
    df["patient_id"] = raw["patient_id"].str.strip().to_numpy()
    for col in PATH_COLUMNS:
        df[col] = [str(_resolve(base, v.strip()).resolve()) for v in raw[col]]
    df["time_days"] = [_parse_time(v)[0] for v in raw["time_days"]]
    df["event"] = [_parse_event(v)[0] for v in raw["event"]]
    df["time_days"] = df["time_days"].astype(float)
    df["event"] = df["event"].astype(int)
    if "cohort" not in df.columns:
        df["cohort"] = DEFAULT_COHORT
    else:
        df["cohort"] = raw["cohort"].str.strip().replace("", DEFAULT_COHORT).to_numpy()
    return df


def reverse_km_median_follow_up(time_days, event) -> float:
    """Median follow-up by the reverse Kaplan-Meier method (Schemper & Smith, Control Clin Trials
    1996): Kaplan-Meier with censoring as the 'event' and deaths censored. NaN when the reverse
    curve never falls to 0.5 (e.g. too few censored patients)."""
    from lifelines import KaplanMeierFitter

    t = pd.Series(time_days, dtype=float).to_numpy()
    e = pd.Series(event, dtype=int).to_numpy()
    kmf = KaplanMeierFitter().fit(t, event_observed=1 - e)
    return float(kmf.median_survival_time_)


def manifest_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per-cohort and overall counts: patients, events (deaths), censored, median follow-up by
    reverse Kaplan-Meier and the plain median of observed times (both in days)."""
    rows = []
    groups = [(c, g) for c, g in df.groupby("cohort", sort=True)]
    if len(groups) > 1 or not groups:
        groups.append(("ALL", df))
    for cohort, g in groups:
        rows.append({
            "cohort": cohort,
            "patients": int(len(g)),
            "events": int(g["event"].sum()),
            "censored": int((g["event"] == 0).sum()),
            "median_follow_up_reverse_km_days": reverse_km_median_follow_up(g["time_days"], g["event"]),
            "median_observed_time_days": float(g["time_days"].median()),
        })
    return pd.DataFrame(rows)
