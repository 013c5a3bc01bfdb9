"""Issue 2, item 3: cohort manifest validation, loader, summary and `voxsurv manifest check`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from voxsurv.core.errors import InputError
from voxsurv.data.manifest import ManifestError, load_manifest, manifest_summary, validate_manifest


def _cli(args, capsys):
    """Run `voxsurv ARGS` in this process (a subprocess would re-import torch/MONAI)."""
    from types import SimpleNamespace

    from voxsurv.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    for name in ("a_ct.nii.gz", "a_gtv.nii.gz", "b_ct.nii.gz", "b_gtv.nii.gz"):
        (tmp_path / "img" / name).write_bytes(b"")
    path = tmp_path / "cohort.csv"
    path.write_text(text)
    return path


GOOD = """patient_id,cohort,image,mask,time_days,event,age
a,c1,img/a_ct.nii.gz,img/a_gtv.nii.gz,100,1,61.5
b,c2,img/b_ct.nii.gz,img/b_gtv.nii.gz,250.5,0,70
"""


def test_valid_manifest_loads_with_absolute_paths_and_types(tmp_path):
    path = _write(tmp_path, GOOD)
    df = load_manifest(path)
    assert list(df["patient_id"]) == ["a", "b"]
    assert df.loc[0, "image"] == str((tmp_path / "img" / "a_ct.nii.gz").resolve())
    assert Path(df.loc[1, "mask"]).is_absolute()
    assert df["time_days"].dtype == float and list(df["time_days"]) == [100.0, 250.5]
    assert list(df["event"]) == [1, 0]
    assert df["age"].dtype == float  # clinical columns kept, numbers parsed


def test_cohort_defaults_to_all_when_absent(tmp_path):
    path = _write(tmp_path, "patient_id,image,mask,time_days,event\na,img/a_ct.nii.gz,img/a_gtv.nii.gz,5,0\n")
    assert list(load_manifest(path)["cohort"]) == ["all"]


def test_every_problem_reported_with_row_patient_column(tmp_path):
    path = _write(tmp_path, """patient_id,image,mask,time_days,event
a,img/a_ct.nii.gz,img/missing.nii.gz,100,1
a,img/b_ct.nii.gz,img/b_gtv.nii.gz,-3,0
c,img/a_ct.nii.gz,img/a_gtv.nii.gz,abc,2
d,img/a_ct.nii.gz,img/a_gtv.nii.gz,,1
e,img/a_ct.nii.gz,img/a_gtv.nii.gz,NaN,yes
""")
    _, issues = validate_manifest(path)
    got = [str(i) for i in issues]
    missing = (tmp_path / "img" / "missing.nii.gz")
    assert got == [
        f"row 1 (line 2), patient a, column mask: file not found: {missing}",
        "row 2 (line 3), patient a, column patient_id: duplicate patient_id (first on row 1)",
        "row 2 (line 3), patient a, column time_days: time is negative ('-3')",
        "row 3 (line 4), patient c, column time_days: time is not a number ('abc')",
        "row 3 (line 4), patient c, column event: event must be 0 (censored) or 1 (death), got '2'",
        "row 4 (line 5), patient d, column time_days: time is missing or NaN ('')",
        "row 5 (line 6), patient e, column time_days: time is missing or NaN ('NaN')",
        "row 5 (line 6), patient e, column event: event must be 0 (censored) or 1 (death), got 'yes'",
    ]
    with pytest.raises(ManifestError) as exc:
        load_manifest(path)
    assert isinstance(exc.value, InputError) and len(exc.value.issues) == 8
    assert str(exc.value).startswith("manifest has 8 problems:\n  - row 1 (line 2), patient a, column mask")


def test_missing_required_column(tmp_path):
    path = _write(tmp_path, "patient_id,image,mask,time\na,img/a_ct.nii.gz,img/a_gtv.nii.gz,5\n")
    _, issues = validate_manifest(path)
    assert [str(i) for i in issues] == [
        "column time_days: required column is missing (columns present: patient_id, image, mask, time)",
        "column event: required column is missing (columns present: patient_id, image, mask, time)"]


def test_missing_manifest_file(tmp_path):
    with pytest.raises(InputError, match=r"^manifest file not found \(.*nope.csv\). Fix: check the path$"):
        load_manifest(tmp_path / "nope.csv")


def test_summary_reverse_km_median_follow_up():
    # Censored at 10, 20, 30, 40; deaths at 5 and 25 (deaths are the censored ones in reverse KM).
    df = pd.DataFrame({"patient_id": list("abcdef"), "cohort": "x",
                       "time_days": [5, 10, 20, 25, 30, 40], "event": [1, 0, 0, 1, 0, 0]})
    s = manifest_summary(df).iloc[0]
    # reverse KM: t=10: 4/5 (5 at risk), t=20: 4/5*3/4=0.6, t=30: 0.6*1/2=0.3 (<= 0.5) -> median 30
    assert s["median_follow_up_reverse_km_days"] == 30.0
    assert s["median_observed_time_days"] == 22.5
    assert (s["patients"], s["events"], s["censored"]) == (6, 2, 4)


def test_cli_manifest_check_on_lung_crops(lung_crops, capsys):
    out = _cli(["manifest", "check", str(lung_crops / "manifest.csv")], capsys)
    assert out.returncode == 0, out.stderr
    assert "300 patients, 162 events" in out.stdout
    assert "reverse Kaplan-Meier" in out.stdout
    lines = {ln.split()[0]: ln.split() for ln in out.stdout.splitlines() if ln.strip()}
    assert lines["lung1"][1:4] == ["199", "128", "71"]
    assert lines["radiogenomics"][1:4] == ["101", "34", "67"]
    assert lines["lung1"][5] == "510"  # plain median of times: the data README's ~510 d


def test_cli_manifest_check_fails_with_errors(tmp_path, capsys):
    path = _write(tmp_path, "patient_id,image,mask,time_days,event\na,img/a_ct.nii.gz,img/a_gtv.nii.gz,-1,0\n")
    out = _cli(["manifest", "check", str(path)], capsys)
    assert out.returncode == 1
    # the check's report (every problem) on stdout, the one error line of the contract on stderr
    assert "row 1 (line 2), patient a, column time_days: time is negative ('-1')" in out.stdout
    assert out.stderr.startswith(f"error: {path}: manifest has 1 problem") and out.stderr.count("\n") == 1
