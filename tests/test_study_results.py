"""The committed real-study results (issue 8 acceptance): a full (not smoke) run with rows a-g,
every row evaluated on exactly the split file's test patients and trained only on its stated
roles, and the docs' table equal to the JSON."""

import json
from pathlib import Path

import pandas as pd
import pytest

from voxsurv.study.evaluation import patients_sha
from voxsurv.study.report import results_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"


@pytest.fixture(scope="module")
def results():
    path = DOCS / "real_study.json"
    if not path.is_file():
        pytest.skip("no committed real-study results yet")
    return json.loads(path.read_text())


def test_full_run_has_all_seven_rows(results):
    assert not results["smoke"]
    assert set("abcdefg") <= set(results["rows"])
    for key in "abcdefg":
        row = results["rows"][key]
        assert 0.0 < row["c_index"] < 1.0 and row["ci95"][0] <= row["c_index"] <= row["ci95"][1]
        assert row["n_test"] > 0 and 0 < row["events_test"] < row["n_test"]


def test_every_model_saw_the_split_roles(results):
    split = pd.read_csv(DOCS / "real_split.csv")
    test_ids = set(split[split.role == "test"].patient_id)
    assert results["test_patients_sha"] == patients_sha(test_ids)
    for key, row in results["rows"].items():
        assert row["test_patients_sha"] == patients_sha(test_ids), key
        assert row["n_test"] == len(test_ids)
        pred = DOCS / "real_study_predictions"
        test = pd.read_csv(pred / f"{key}_test.csv")
        train = pd.read_csv(pred / f"{key}_train.csv")
        assert set(test.patient_id) == test_ids, key
        assert set(train.patient_id) <= set(split[split.role.isin(row["trained_on"])].patient_id), key
        assert patients_sha(train.patient_id) == row["train_patients_sha"], key


def test_docs_table_equals_the_json(results):
    md = (DOCS / "real_study.md").read_text()
    assert results_table(results) in md
