"""Issue 6: `voxsurv evaluate` on R's lung data writes metrics.json, every figure (PNG + SVG),
predictions_with_groups.csv and a self-contained report that headless Chromium renders."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from voxsurv.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
BETA = {"age": 0.0110411363494885, "sex": -0.551889569787597, "ph.ecog": 0.462947040590164}


@pytest.fixture(scope="module")
def lung_csv(tmp_path_factory):
    from lifelines.datasets import load_lung

    c = load_lung().dropna(subset=list(BETA)).reset_index(drop=True)
    df = pd.DataFrame({"patient_id": [f"lung-{i:03d}" for i in range(len(c))],
                       "risk": sum(b * c[k] for k, b in BETA.items()),
                       "time_days": c.time, "event": c.status, "ph_ecog": c["ph.ecog"]})
    path = tmp_path_factory.mktemp("lung") / "lung_predictions.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def evaluated(lung_csv, tmp_path_factory):
    from voxsurv.cli import main

    out = tmp_path_factory.mktemp("eval")
    assert main(["evaluate", "--predictions", str(lung_csv), "--reference", str(lung_csv),
                 "--out", str(out), "--times", "365,730,1095"]) == 0
    return out


def test_metrics_json_has_the_agreed_keys_and_r_values(evaluated):
    m = json.loads((evaluated / "metrics.json").read_text())
    assert m["n"] == 227 and m["events"] == 164
    assert m["c_index"]["value"] == pytest.approx(0.637135493000455, abs=1e-12)
    assert m["c_index"]["ci95"][0] == pytest.approx(0.58524, abs=0.01)
    assert m["c_index"]["ci95"][1] == pytest.approx(0.68522, abs=0.01)
    assert m["td_auc"]["365"] == pytest.approx(0.647397660015363, abs=1e-3)
    assert m["td_auc"]["730"] == pytest.approx(0.693359270683577, abs=1e-3)
    assert m["td_auc"]["1095"] is None and "beyond" in m["td_auc_detail"]["1095"]["reason"]
    assert m["median_split"]["cutoff"] == pytest.approx(0.4631142882769921, abs=1e-12)
    assert m["logrank"]["chi2"] > 0 and 0 < m["logrank"]["p"] < 0.001
    assert m["hazard_ratio"]["ci95"][0] < m["hazard_ratio"]["value"] < m["hazard_ratio"]["ci95"][1]
    assert set(m["calibration"]) == {"310", "765"}  # median survival, last time with >= 10 at risk
    assert all(0 <= c["mae"] < 0.2 for c in m["calibration"].values())
    assert set(m["dca"]) == {"365", "730"} and "1095" in m["dca_skipped"]
    row = next(r for r in m["dca"]["365"] if r["threshold"] == 0.5)
    assert set(row) == {"threshold", "model", "treat_all"}
    assert row["model"] == pytest.approx(0.233069697298311, abs=1e-6)


def test_every_figure_is_written_as_png_and_svg(evaluated):
    stems = ["td_roc", "risk_density", "km_risk_groups", "calibration_310d", "calibration_765d",
             "decision_curve_365d", "decision_curve_730d"]
    for stem in stems:
        png, svg = evaluated / f"{stem}.png", evaluated / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, stem
        assert "<svg" in svg.read_text()[:2000], stem


def test_predictions_with_groups_keeps_extra_columns(evaluated):
    df = pd.read_csv(evaluated / "predictions_with_groups.csv")
    assert {"patient_id", "risk", "ph_ecog", "risk_group", "survival_365d"} <= set(df.columns)
    assert (df.risk_group == np.where(df.risk > 0.4631142882769921, "high", "low")).all()
    assert df.survival_365d.between(0, 1).all()


def test_report_is_self_contained(evaluated):
    text = (evaluated / "report.html").read_text()
    srcs = re.findall(r"<img[^>]*src='([^']*)'", text)
    assert len(srcs) == 7
    for src in srcs:  # no file references: each image decodes as an embedded PNG
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert "Harrell" in text and "1000 resamples" in text and "reference (training)" in text
    assert "cumulative/dynamic" in text and "href=" not in text


def test_report_renders_in_headless_chromium(evaluated, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (Debian package `chromium`)")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "evaluation_report.png"
    shot.unlink(missing_ok=True)
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1200,3000", f"--screenshot={shot}",
           (evaluated / "report.html").resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # page errors (JS, blocked resources) are logged as CONSOLE
    assert shot.stat().st_size > 50_000
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] >= 2000 and pixels[..., :3].std() > 0.05  # not a blank page


def test_bad_predictions_name_the_patient(tmp_path):
    from voxsurv.stats.evaluation import read_predictions

    path = tmp_path / "p.csv"
    pd.DataFrame({"patient_id": ["a", "b"], "risk": [0.1, None], "time_days": [10, 20],
                  "event": [1, 0]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="patient b: risk is missing"):
        read_predictions(path)
    pd.DataFrame({"patient_id": ["a"], "risk": [0.1]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="missing columns"):
        read_predictions(path)


def test_cohort_shift_reports_the_split_as_not_estimable(lung_csv):
    """All test risks above the training median: the other statistics are still reported."""
    from voxsurv.stats.evaluation import evaluate, read_predictions

    df = read_predictions(lung_csv)
    reference, test = df.iloc[:150], df.iloc[150:].assign(risk=lambda d: d.risk + 5.0)
    ev = evaluate(test, reference, times=[365], n_resamples=50)
    assert ev.split is None and "one risk group" in ev.metrics["median_split"]["reason"]
    assert ev.metrics["median_split"]["n_high"] == len(test)
    assert ev.metrics["hazard_ratio"]["value"] is None
    assert ev.metrics["c_index"]["value"] > 0.5 and ev.metrics["td_auc"]["365"] is not None


def test_evaluate_command_reports_bad_input_without_traceback(tmp_path, capsys):
    from voxsurv.cli import main

    rc = main(["evaluate", "--predictions", str(tmp_path / "missing.csv"), "--reference",
               str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out")])
    assert rc == 1 and "predictions file not found" in capsys.readouterr().err
