"""`scripts/run_real_study.py --smoke` end to end (issue 8): every row a-g on the same test
patients, each trained only on its stated roles of the split file; a re-run skips finished steps."""

import importlib.util
import json
from pathlib import Path

import pandas as pd

from voxsurv.study.evaluation import patients_sha

REPO = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke_study_rows_use_exactly_the_split_roles(lung_crops, tmp_path):
    out = tmp_path / "study"
    assert _script("run_real_study").main(["--data", str(lung_crops), "--out", str(out), "--smoke"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "complete" and res["smoke"]
    assert set("abcdefg") <= set(res["rows"])
    split = pd.read_csv(out / "split_used.csv")
    full = pd.read_csv(REPO / "docs/results/real_split.csv")
    # the smoke subset keeps every patient's role from the checked-in split file
    assert split.merge(full, on=["patient_id", "cohort", "role"]).shape[0] == len(split)
    test_ids = set(split[split.role == "test"].patient_id)
    for key, row in res["rows"].items():
        for k in ("c_index", "ci95", "n_test", "events_test", "td_auc", "hr", "logrank_p", "wall_s", "device"):
            assert k in row, (key, k)
        assert 0.0 <= row["c_index"] <= 1.0
        assert row["n_test"] == len(test_ids)
        assert row["test_patients_sha"] == patients_sha(test_ids) == res["test_patients_sha"]
        test = pd.read_csv(out / "predictions" / f"{key}_test.csv")
        assert set(test.patient_id) == test_ids
        train = pd.read_csv(out / "predictions" / f"{key}_train.csv")
        allowed = set(split[split.role.isin(row["trained_on"])].patient_id)
        assert set(train.patient_id) <= allowed and not set(train.patient_id) & test_ids, key
    # resumable: a second run loads every step instead of recomputing
    before = (out / "steps" / "pretrain_maps.json").stat().st_mtime
    assert _script("run_real_study").main(["--data", str(lung_crops), "--out", str(out), "--smoke"]) == 0
    assert (out / "steps" / "pretrain_maps.json").stat().st_mtime == before
    sel = json.loads((out / "screening" / "selected_maps.json").read_text())
    assert sel["selected"] and "rule" in sel and (out / "screening" / "screening_auc.png").stat().st_size > 1000
