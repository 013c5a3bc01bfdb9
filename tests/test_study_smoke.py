"""`scripts/run_real_study.py --smoke` end to end through the bundles (issue 11): every row on
exactly the split file's test patients and trained only on its roles; every deep row records the
bundle config files + overrides it ran; `python -m monai.bundle run` with a recorded run's config
files and overrides reproduces the study's risks; a re-run skips every finished step and run."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from voxsurv.study.evaluation import patients_sha

REPO = Path(__file__).resolve().parents[1]
ROWS = {"a", "a_finetune_only", "b", "g", "volume_hu", "untrained", "c", "d", "e", "e_head_only", "f", "anchored"}
DEEP = {"untrained", "c", "d", "e", "e_head_only", "f", "anchored"}


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def smoke(lung_crops, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "smoke"
    assert _script("run_real_study").main(["--data", str(lung_crops), "--out", str(out), "--smoke"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_every_row_is_scored_on_the_split_test_patients_and_trained_on_its_roles(smoke):
    out, res = smoke
    assert res["status"] == "complete" and res["smoke"] and set(res["rows"]) == ROWS
    split = pd.read_csv(out / "split_used.csv")
    full = pd.read_csv(REPO / "docs/results/real_split.csv")
    assert split.merge(full, on=["patient_id", "cohort", "role"]).shape[0] == len(split)  # roles of the split file
    test_ids = set(split[split.role == "test"].patient_id)
    for key, row in res["rows"].items():
        assert 0.0 <= row["c_index"] <= 1.0 and row["n_test"] == len(test_ids), key
        assert row["test_patients_sha"] == patients_sha(test_ids) == res["test_patients_sha"], key
        assert set(pd.read_csv(out / "predictions" / f"{key}_test.csv").patient_id) == test_ids, key
        train = set(pd.read_csv(out / "predictions" / f"{key}_train.csv").patient_id)
        assert train <= set(split[split.role.isin(row["trained_on"])].patient_id) and not train & test_ids, key


def test_deep_rows_ran_the_bundles_and_record_configs_overrides_and_selection(smoke):
    out, res = smoke
    n_members = res["settings"]["n_folds"] * len(res["settings"]["seeds"])
    for key in DEEP:
        row = res["rows"][key]
        scoring = row["bundle_runs"]["scoring"]
        assert any(f.endswith("train.yaml") for f in scoring["config_file"]), key
        assert {"manifest", "output_dir", "features", "maps_cache_dir"} <= set(scoring["overrides"]), key
        assert Path(scoring["overrides"]["output_dir"], "study_run.json").is_file(), key
        assert "spearman_test_risk_volume" in row, key
        pre = row["bundle_runs"]["pretrain"]
        if key != "c":
            assert len(pre) == n_members and row["ensemble"]["n_members"] == n_members, key
            assert all(r["config_file"][0] == "bundles/pretrain/configs/train.yaml" for r in pre), key
            assert len({r["overrides"]["manifest"] for r in pre}) == res["settings"]["n_folds"], key
    assert res["rows"]["f"]["bundle_runs"]["scoring"]["overrides"]["features"] == []
    assert res["rows"]["f"]["network"]["pooling"] == res["rows"]["e"]["network"]["pooling"]
    assert res["rows"]["anchored"]["anchored"] and "spearman_test_image_risk_volume" in res["rows"]["anchored"]
    assert res["rows"]["e"]["finetune_mode"] == "paper" and res["rows"]["e_head_only"]["finetune_mode"] == "head"
    for key in ("d", "e", "f", "anchored", "untrained"):
        assert res["rows"][key]["source_oof_c"]["n_seeds"] == len(res["settings"]["seeds"]), key
    assert res["rows"]["untrained"]["source_oof_c"]["epoch"] == 0
    assert res["rows"]["d"]["source_oof_c"]["epoch"] == res["rows"]["d"]["ensemble"]["epoch"] >= 1
    # selection table: every candidate, every evaluated epoch incl. 0; the chosen epoch is never 0
    for p in res["protocols"].values():
        assert [t["epoch"] for t in p["table"]][0] == 0 and p["chosen_epoch"] >= 1
    assert res["selection"]["chosen"] in res["protocols"]
    pairs = {(c["split"], c["a"], c["b"]) for c in res["comparisons"]}
    assert {("test", "e", "b"), ("test", "e", "g"), ("test", "e", "volume_hu")} <= pairs
    assert ("source_out_of_fold", res["selection"]["chosen"], "volume_hu") in pairs
    md = (out / "results.md").read_text()
    assert "Paired bootstrap" in md and "Selection on the source" in md


def test_monai_bundle_run_with_the_recorded_configs_and_overrides_gives_the_same_risks(smoke, tmp_path):
    out, res = smoke
    run = res["rows"]["e"]["bundle_runs"]["scoring"]   # fine-tunes the source ensemble, then scores the test split
    cmd = [sys.executable if x == "python" else x for x in run["cli"]]
    cmd[cmd.index("--output_dir") + 1] = str(tmp_path / "cli")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = pd.read_csv(Path(run["overrides"]["output_dir"]) / "predictions_test.csv")
    cli = pd.read_csv(tmp_path / "cli" / "predictions_test.csv")
    m = study.merge(cli, on="patient_id", suffixes=("_study", "_cli"))
    assert len(m) == len(study) == res["rows"]["e"]["n_test"]
    assert (m.risk_study - m.risk_cli).abs().max() <= 1e-6
    e_test = pd.read_csv(out / "predictions" / "e_test.csv").merge(cli, on="patient_id")
    assert (e_test.risk_x - e_test.risk_y).abs().max() <= 1e-6   # the row's reported risks are these


def test_the_planner_counted_exactly_the_bundle_runs_the_study_made(smoke, lung_crops):
    from voxsurv.study.runner import Study
    from voxsurv.study.settings import StudySettings

    out, res = smoke
    plan = Study(lung_crops, out, REPO / "docs/results/real_split.csv", StudySettings.for_smoke()).planned_runs()
    made = list(out.glob("runs/**/study_run.json"))
    assert sum(p.n_runs for p in plan if p.variant != "-") == len(made)
    cv = [p for p in plan if p.kind.startswith("pretrain")]
    assert all(p.measured == p.n_runs and p.cpu_s > 0 for p in cv)   # finished runs count their measured CPU


def test_a_rerun_skips_every_finished_step_and_bundle_run(smoke, lung_crops):
    out, res = smoke
    markers = sorted(out.glob("steps/*.json")) + sorted(out.glob("runs/**/study_run.json"))
    before = {p: p.stat().st_mtime_ns for p in markers}
    assert _script("run_real_study").main(["--data", str(lung_crops), "--out", str(out), "--smoke"]) == 0
    assert {p: p.stat().st_mtime_ns for p in markers} == before
    assert json.loads((out / "results.json").read_text())["rows"]["e"]["c_index"] == res["rows"]["e"]["c_index"]


def test_publish_ships_the_study_ensembles_and_inference_reproduces_the_training_risks(smoke, tmp_path):
    """voxsurv.study.publish on the smoke run, into a copy of the bundles: pretrain = d's ensemble,
    finetune = e's fine-tuned ensemble, bit for bit; the inference bundle packaged from e's run
    recomputes e's training-patient risks through the inference pipeline (its risk range)."""
    import shutil

    import torch

    from voxsurv.study.publish import publish

    out, res = smoke
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "bundles", repo / "bundles", ignore=shutil.ignore_patterns("outputs", "eval"))
    (repo / "docs" / "results").mkdir(parents=True)
    (repo / "docs" / "results" / "real_study.json").write_text((out / "results.json").read_text())
    shipped = publish(out, repo=repo, allow_smoke=True)
    d, e = res["rows"]["d"], res["rows"]["e"]
    e_dir = Path(e["bundle_runs"]["scoring"]["overrides"]["output_dir"])
    for bundle, source in (("pretrain", Path(d["ensemble"]["file"])), ("finetune", e_dir / "models" / "model.pt")):
        a = torch.load(repo / "bundles" / bundle / "models" / "model.pt", weights_only=True)
        b = torch.load(source, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), bundle
        info = json.loads((repo / "bundles" / bundle / "models" / "model_info.json").read_text())
        assert info["features"] == res["screening"]["selected"] and info["n_members"] == d["ensemble"]["n_members"]
        stats = json.loads((repo / "bundles" / bundle / "models" / "map_statistics.json").read_text())
        assert stats["names"] == info["features"]
        meta = json.loads((repo / "bundles" / bundle / "configs" / "metadata.json").read_text())
        assert any(v.get("c_index") == round(res["rows"][k]["c_index"], 3)
                   for k in ("d", "e") for v in meta["performance"].values() if isinstance(v, dict))
    train = pd.read_csv(e_dir / "predictions_train.csv")
    lo, hi = shipped["inference"]["training_risk_range"]
    assert lo == pytest.approx(train.risk.min(), abs=1e-5) and hi == pytest.approx(train.risk.max(), abs=1e-5)
    assert shipped["inference"]["n_members"] == d["ensemble"]["n_members"]
