"""Bundle runs of the study (voxsurv.study.bundle_runs) on a toy config: config files merge in
order then the overrides, the worker pool gives the same output as in-process, a finished run is
skipped, a run with other settings never reuses its folder, and failures are reported together.
tests/test_study_smoke.py checks the recorded `python -m monai.bundle run` command on the real
bundles."""

import json

import pytest

from voxsurv.study.bundle_runs import DONE_FILE, BundleRun, execute, execute_all

TOY = """\
imports:
- $import pathlib
output_dir: /nonexistent
seed: 0
features: [a]
scale: 1.5
value: "$len(@features) * 100 + @seed * @scale"
run:
- "$pathlib.Path(@output_dir).mkdir(parents=True, exist_ok=True)"
- "$pathlib.Path(@output_dir, 'predictions_test.csv').write_text('patient_id,risk' + chr(10) + 'p1,' + repr(@value) + chr(10))"
"""
OVERRIDE = "scale: 2.5\n"


@pytest.fixture()
def toy(tmp_path):
    (tmp_path / "configs" / "study").mkdir(parents=True)
    (tmp_path / "configs" / "train.yaml").write_text(TOY)
    (tmp_path / "configs" / "study" / "cand.yaml").write_text(OVERRIDE)
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"version": "0.0.1"}))
    return tmp_path


def _run(repo, name, **ov):
    return BundleRun(name, ["configs/train.yaml", "configs/study/cand.yaml"],
                     {"features": ["a", "b"], "seed": 3, "output_dir": str(repo / "out" / name), **ov}, repo=str(repo))


def test_a_run_merges_its_config_files_in_order_then_the_overrides(toy):
    a = _run(toy, "inproc")
    marker = execute(a, "inprocess")
    expected = "patient_id,risk\np1,207.5\n"   # 2 features x 100 + seed 3 x scale 2.5 (override file won)
    assert (a.output_dir / "predictions_test.csv").read_text() == expected
    assert marker["config_file"] == a.config_file and marker["overrides"]["seed"] == 3
    assert any("train.yaml" in f for f in marker["config_file"])
    assert marker["cli"][:4] == ["python", "-m", "monai.bundle", "run"] and "--seed" in marker["cli"]


def test_finished_runs_are_skipped_and_never_reused_with_other_settings(toy):
    a = _run(toy, "r")
    execute(a, "inprocess")
    before = (a.output_dir / DONE_FILE).stat().st_mtime_ns
    execute(a, "inprocess")
    assert (a.output_dir / DONE_FILE).stat().st_mtime_ns == before
    with pytest.raises(RuntimeError, match="other settings"):
        execute(_run(toy, "r", seed=4), "inprocess")
    (toy / "configs" / "study" / "cand.yaml").write_text("scale: 3.5\n")   # same name, edited candidate
    with pytest.raises(RuntimeError, match="config files changed"):
        execute(a, "inprocess")


def test_worker_pool_runs_what_is_left_and_collects_failures(toy):
    done, good, bad = _run(toy, "done"), _run(toy, "ok"), _run(toy, "broken", seed="$1 / 0")
    execute(done, "inprocess")
    with pytest.raises(RuntimeError, match=r"1 of 3 bundle runs failed:\nbroken"):
        execute_all([bad, done, good], "pool", workers=1)
    assert (good.output_dir / DONE_FILE).is_file() and not (bad.output_dir / DONE_FILE).is_file()
    assert (good.output_dir / "predictions_test.csv").read_text() == "patient_id,risk\np1,207.5\n"
    assert json.loads((good.output_dir / DONE_FILE).read_text())["executor"] == "inprocess"  # in a pool worker
    assert "input summary" in (good.output_dir / "bundle.log").read_text()   # each run's log in its own folder
    assert "ZeroDivisionError" in (bad.output_dir / "bundle.log").read_text()
