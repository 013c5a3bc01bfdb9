"""Issue 13, outputs: `voxsurv predict` never mixes or loses results. One folder per patient
(injective names), predictions.csv / exclusions.csv rewritten atomically after each patient,
resume keyed by input content + weights + settings, --overwrite the only way to replace, and a
bad --out refused before any computation (the bundle is never loaded)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from inference_helpers import make_training_output, shared_tiny_bundle, write_synthetic_patient
from voxsurv.cli import main


@pytest.fixture(scope="module")
def bundle():
    return shared_tiny_bundle()


@pytest.fixture(scope="module")
def patients(tmp_path_factory):
    data = tmp_path_factory.mktemp("patients")
    return {name: write_synthetic_patient(data, name, seed=i) for i, name in enumerate(("p1", "p2", "p3", "p4"))}


LAST = {}


def _predict(bundle, *args, capsys=None):
    """Run `voxsurv predict` in this process; returns (exit code, stderr); stdout in LAST["out"]."""
    rc = main(["predict", "--bundle", str(bundle), *map(str, args)])
    captured = capsys.readouterr() if capsys else None
    LAST["out"] = captured.out if captured else ""
    return rc, (captured.err if captured else "")


def _manifest(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the bundle/weights would load: refusals must come before any computation."""
    import voxsurv.inference.batch as batch

    def refuse(*_a, **_k):
        raise AssertionError("the bundle was loaded")

    monkeypatch.setattr(batch, "load_predictor", refuse)


def test_folder_names_are_injective_readable_and_stable():
    from voxsurv.core.patient_folders import patient_folder_name

    ids = ["lung1-001", "LUNG1-001", "Lung1-001", "患者A", "病人A", "A", "a", "a b", "a/b", "a_b", "a:b",
           "..", ".hidden", "con", "CON", "x" * 80, "x" * 81, "naïve", "naive"]
    names = [patient_folder_name(i) for i in ids]
    assert len(set(names)) == len(ids)  # injective
    assert len({n.lower() for n in names}) == len(ids)  # also on case-insensitive file systems
    assert patient_folder_name("lung1-001") == "lung1-001"  # safe ids are kept as they are
    assert patient_folder_name("患者A") != patient_folder_name("病人A")
    assert patient_folder_name("LUNG1-001").startswith("lung1-001_")  # readable part + short hash
    assert patient_folder_name("naïve").startswith("naive_")
    assert all(n.isascii() and "/" not in n and not n.startswith(".") and len(n) <= 64 for n in names)
    assert patient_folder_name("患者A") == patient_folder_name("患者A")  # stable: resume finds it again


def test_second_run_with_other_patient_keeps_the_first(bundle, patients, tmp_path, capsys):
    out = tmp_path / "out"
    (i1, m1), (i2, m2) = patients["p1"], patients["p2"]
    assert _predict(bundle, "--image", i1, "--mask", m1, "--patient-id", "P1", "--out", out, capsys=capsys)[0] == 0
    from voxsurv.core.patient_folders import patient_folder_name

    f1, f2 = out / patient_folder_name("P1"), out / patient_folder_name("P2")
    report1 = (f1 / "report.json").read_text()
    assert _predict(bundle, "--image", i2, "--mask", m2, "--patient-id", "P2", "--out", out, capsys=capsys)[0] == 0
    assert (f1 / "report.json").read_text() == report1  # the first patient's results are untouched
    assert json.loads((f2 / "report.json").read_text())["patient_id"] == "P2"
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.patient_id) == ["P1", "P2"] and list(pred.folder) == [f1.name, f2.name]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no leftovers


def test_out_that_is_a_file_is_refused_before_any_computation(bundle, patients, tmp_path, capsys, no_model_load):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    rc, err = _predict(bundle, "--image", patients["p1"][0], "--mask", patients["p1"][1], "--out", target,
                       capsys=capsys)
    assert rc == 1 and err.startswith(f"error: {target}: --out is an existing file") and "Fix: " in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert target.read_text() == "keep me"


def test_out_that_is_not_writable_is_refused_before_any_computation(bundle, patients, tmp_path, capsys,
                                                                      no_model_load):
    if os.geteuid() == 0:  # root ignores permission bits: use a pseudo file system nobody can write
        out = Path("/sys/voxsurv-test-out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out = ro / "out"
    rc, err = _predict(bundle, "--image", patients["p1"][0], "--mask", patients["p1"][1], "--out", out, capsys=capsys)
    assert rc == 1 and "--out is not writable" in err and err.startswith("error: ") and "Traceback" not in err
    assert not out.exists()


def test_out_with_another_models_results_is_refused_until_overwrite(bundle, patients, tmp_path, capsys,
                                                                     monkeypatch):
    out = tmp_path / "out"
    other = make_training_output(tmp_path / "other", seed=3) / "models" / "model.pt"
    i1, m1 = patients["p1"]
    assert _predict(bundle, "--image", i1, "--mask", m1, "--out", out, "--checkpoint", other, capsys=capsys)[0] == 0
    before = (out / "p1_ct" / "report.json").read_text()
    import voxsurv.inference.batch as batch

    real = batch.load_predictor
    monkeypatch.setattr(batch, "load_predictor", lambda *a, **k: pytest.fail("bundle loaded before the refusal"))
    rc, err = _predict(bundle, "--image", i1, "--mask", m1, "--out", out, capsys=capsys)
    assert rc == 1 and "--out holds the results of another model" in err and "--overwrite" in err
    assert (out / "p1_ct" / "report.json").read_text() == before
    monkeypatch.setattr(batch, "load_predictor", real)
    assert _predict(bundle, "--image", i1, "--mask", m1, "--out", out, "--overwrite", capsys=capsys)[0] == 0
    report = json.loads((out / "p1_ct" / "report.json").read_text())
    assert report["model"]["weights"] == "model.pt" and report["calibration_applies"] is True


def test_out_with_unrelated_files_is_refused(bundle, patients, tmp_path, capsys, no_model_load):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.docx").write_bytes(b"x")
    rc, err = _predict(bundle, "--image", patients["p1"][0], "--mask", patients["p1"][1], "--out", out, capsys=capsys)
    assert rc == 1 and "holds no voxsurv predict results" in err
    assert [p.name for p in out.iterdir()] == ["notes.docx"]


def test_interrupted_manifest_run_keeps_finished_patients_and_resumes(bundle, patients, tmp_path, capsys,
                                                                     monkeypatch):
    from voxsurv.inference.predictor import RiskPredictor

    man = _manifest(tmp_path / "m.csv", [{"patient_id": p, "image": str(i), "mask": str(m)}
                                        for p, (i, m) in patients.items()])
    out = tmp_path / "out"
    calls = []
    real_infer = RiskPredictor.infer

    def infer_then_stop(self, prepared, out_dir):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the third patient
        calls.append(prepared.patient_id)
        return real_infer(self, prepared, out_dir)

    monkeypatch.setattr(RiskPredictor, "infer", infer_then_stop)
    rc, err = _predict(bundle, "--manifest", man, "--out", out, "--workers", 0, capsys=capsys)
    assert rc == 130 and "resume when the same command runs again" in err
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.patient_id) == ["p1", "p2"]  # written after each patient, not at the end
    assert sorted(p.name for p in out.iterdir()) == ["exclusions.csv", "p1", "p2", "predictions.csv",
                                                     "voxsurv_predict.json"]  # no half-written folder
    kept = {p: (out / p / "report.json").stat().st_mtime_ns for p in ("p1", "p2")}

    calls.clear()
    monkeypatch.setattr(RiskPredictor, "infer", lambda self, prepared, out_dir: (
        calls.append(prepared.patient_id), real_infer(self, prepared, out_dir))[1])
    rc, _ = _predict(bundle, "--manifest", man, "--out", out, "--workers", 0, capsys=capsys)
    assert rc == 0 and calls == ["p3", "p4"]  # finished patients are not recomputed
    assert {p: (out / p / "report.json").stat().st_mtime_ns for p in ("p1", "p2")} == kept
    assert list(pd.read_csv(out / "predictions.csv").patient_id) == ["p1", "p2", "p3", "p4"]
    assert "predicted 2 patient(s), kept 2 from earlier runs" in LAST["out"]


def test_changed_input_is_refused_until_overwrite(bundle, patients, tmp_path, capsys):
    import shutil

    i1, m1 = patients["p1"]
    image = tmp_path / "ct.nii.gz"
    shutil.copy(i1, image)
    out = tmp_path / "out"
    assert _predict(bundle, "--image", image, "--mask", m1, "--patient-id", "p1", "--out", out, capsys=capsys)[0] == 0
    first = json.loads((out / "p1" / "report.json").read_text())
    shutil.copy(patients["p2"][0], image)  # the same patient id, another CT
    rc, err = _predict(bundle, "--image", image, "--mask", m1, "--patient-id", "p1", "--out", out, capsys=capsys)
    assert rc == 1 and "already have results in --out from other input files or settings (p1)" in err
    assert json.loads((out / "p1" / "report.json").read_text()) == first
    rc, _ = _predict(bundle, "--image", image, "--mask", m1, "--patient-id", "p1", "--out", out, "--overwrite",
                     capsys=capsys)
    assert rc == 0
    second = json.loads((out / "p1" / "report.json").read_text())
    assert second["resume_key"] != first["resume_key"]
    assert second["inputs"]["image"]["sha256"] != first["inputs"]["image"]["sha256"]
    assert second["risk"] != first["risk"]
    # the same command again: kept, not recomputed
    assert _predict(bundle, "--image", image, "--mask", m1, "--patient-id", "p1", "--out", out, capsys=capsys)[0] == 0
    assert "kept from an earlier run" in LAST["out"]
    assert json.loads((out / "p1" / "report.json").read_text()) == second


def test_ids_that_sanitise_alike_get_their_own_folders(bundle, patients, tmp_path, capsys):
    man = _manifest(tmp_path / "m.csv", [{"patient_id": "患者A", "image": str(patients["p1"][0]),
                                          "mask": str(patients["p1"][1])},
                                         {"patient_id": "病人A", "image": str(patients["p2"][0]),
                                          "mask": str(patients["p2"][1])}])
    out = tmp_path / "out"
    rc, _ = _predict(bundle, "--manifest", man, "--out", out, "--workers", 0, capsys=capsys)
    assert rc == 0
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.patient_id) == ["患者A", "病人A"] and pred.folder.nunique() == 2
    assert pd.read_csv(out / "exclusions.csv").empty
    for pid, folder in zip(pred.patient_id, pred.folder):
        assert json.loads((out / folder / "report.json").read_text(encoding="utf-8"))["patient_id"] == pid


def test_an_unusable_bundle_is_refused_before_any_input_is_read(bundle, patients, tmp_path, capsys, monkeypatch,
                                                                 no_model_load):
    import shutil

    import voxsurv.inference.batch as batch

    old = tmp_path / "old_bundle"
    shutil.copytree(bundle, old)
    info = json.loads((old / "models" / "inference_info.json").read_text())
    (old / "models" / "inference_info.json").write_text(json.dumps({**info, "format": "voxsurv-inference-info/1"}))
    monkeypatch.setattr(batch, "check_patient", lambda *a, **k: pytest.fail("an input was read first"))
    rc, err = _predict(old, "--image", patients["p1"][0], "--mask", patients["p1"][1], "--out", tmp_path / "o",
                       capsys=capsys)
    assert rc == 1 and err.startswith("error: ") and "inference_info.json" in err and "Fix: " in err
    assert not (tmp_path / "o").exists()


def test_single_patient_bad_input_leaves_nothing_and_loads_no_model(bundle, tmp_path, capsys, no_model_load):
    image, mask = write_synthetic_patient(tmp_path / "d", "empty", empty_mask=True)
    out = tmp_path / "out"
    rc, err = _predict(bundle, "--image", image, "--mask", mask, "--patient-id", "P-EMPTY", "--out", out,
                       capsys=capsys)
    assert rc == 1 and err.startswith("error: patient P-EMPTY: mask is empty") and "Fix: " in err
    assert not out.exists()


def test_manifest_output_feeds_evaluate_with_times_events_and_exclusion_count(bundle, patients, tmp_path, capsys):
    rows = [{"patient_id": p, "image": str(i), "mask": str(m), "time_days": 100 * (k + 1), "event": k % 2}
            for k, (p, (i, m)) in enumerate(patients.items())]
    rows.append({"patient_id": "gone", "image": str(tmp_path / "missing.nii.gz"), "mask": str(patients["p1"][1]),
                 "time_days": 50, "event": 1})
    man = _manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    rc = main(["predict", "--bundle", str(bundle), "--manifest", str(man), "--out", str(out), "--workers", "0"])
    captured = capsys.readouterr()
    assert rc == 0 and "excluded 1" in captured.out and "warning: excluded: patient gone" in captured.err
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.time_days) == [100, 200, 300, 400] and list(pred.event) == [0, 1, 0, 1]
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"patient_id": [f"r{i}" for i in range(30)], "risk": [i / 30 for i in range(30)],
                  "time_days": [60 * (30 - i) for i in range(30)], "event": [i % 2 for i in range(30)]}).to_csv(
        ref, index=False)
    rc = main(["evaluate", "--predictions", str(out), "--reference", str(ref), "--out", str(tmp_path / "ev"),
               "--bootstrap", "20", "--times", "150"])
    err = capsys.readouterr().err
    assert rc == 0, err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["excluded_by_predict"] == 1
    assert "1 patient(s) were excluded by `voxsurv predict`" in err



def test_the_bundle_loads_once_per_process(bundle, patients, tmp_path, capsys, monkeypatch):
    """Two predict calls in one process (e.g. a notebook or a script calling main twice) parse the
    bundle and read the weights once."""
    import voxsurv.inference.batch as batch
    from voxsurv.inference.predictor import RiskPredictor

    batch.load_predictor.cache_clear()
    loads = []
    real_init = RiskPredictor.__init__

    def counting_init(self, *a, **k):
        loads.append(a[0] if a else k.get("bundle"))
        real_init(self, *a, **k)

    monkeypatch.setattr(RiskPredictor, "__init__", counting_init)
    for name in ("p1", "p2"):
        i, m = patients[name]
        assert _predict(bundle, "--image", i, "--mask", m, "--out", tmp_path / "out", capsys=capsys)[0] == 0
    assert len(loads) == 1
