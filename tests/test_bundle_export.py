"""`voxsurv bundle export`: a zoo-ready copy of a bundle that runs without this repository.

The last test is the real proof: the exported zip, unpacked into an empty folder, run with
`python -m monai.bundle run` in a fresh venv that has only torch and the PyPI packages the
exported metadata names, gives the repository bundle's risk on the IBSI CT phantom (1e-6). It
builds that venv (minutes: torch is a large wheel), so it runs when VOXSURV_TEST_FRESH_VENV=1
(.ci/run sets it) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from inference_helpers import REPO, make_tiny_bundle


def _strings(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


@pytest.mark.parametrize("name", ["inference", "finetune"])
def test_export_is_self_contained(name, tmp_path):
    from voxsurv.bundle_export import ZOO_NAMES, export_bundle, project_packages, zoo_json

    dest = export_bundle(name, tmp_path, zip_file=True)
    assert dest.name == ZOO_NAMES[name][0]
    meta = json.loads((dest / "configs" / "metadata.json").read_text())
    assert "voxsurv" not in meta["required_packages_version"]  # not on PyPI: the code is in scripts/
    assert meta["bundled_code"]["voxsurv"] == __import__("voxsurv").__version__
    assert meta["name"] == ZOO_NAMES[name][1]
    for js in [dest / "configs" / "metadata.json", *(dest / "models").glob("*.json")]:
        assert js.read_text() == zoo_json(json.loads(js.read_text())), js.name
    for pkg in project_packages():
        assert (dest / "scripts" / pkg / "__init__.py").is_file(), pkg
    assert not list(dest.rglob("__pycache__")) and not (dest / "configs" / "study").exists()
    configs = [c for c in (dest / "configs").glob("*.yaml")]
    assert {c.name for c in configs} >= {"inference.yaml"}
    for cfg in configs:
        content = yaml.safe_load(cfg.read_text())
        if "imports" in content:
            assert content["imports"][0] == "$import scripts", cfg.name
        if "bundle_root" in content:
            assert content["bundle_root"] == ".", cfg.name
        for value in _strings(content):
            assert "%" not in value.split("#")[0][:1], (cfg.name, value)  # no macro left
            assert "../" not in value and "bundles/" not in value and "repo_root(" not in value, (cfg.name, value)
    if name == "finetune":  # the pre-training recipe travels inside the bundle
        train = yaml.safe_load((dest / "configs" / "train.yaml").read_text())
        assert train["pretrain_config"] == "$@bundle_root + '/configs/pretrain.yaml'"
        assert (dest / "configs" / "pretrain.yaml").is_file()
    with zipfile.ZipFile(dest.with_suffix(".zip")) as z:
        names = z.namelist()
    assert f"{dest.name}/configs/metadata.json" in names and f"{dest.name}/scripts/__init__.py" in names


def test_export_never_overwrites_silently(tmp_path):
    from voxsurv.bundle_export import export_bundle
    from voxsurv.core.errors import InputError

    dest = export_bundle("inference", tmp_path)
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty"):
        export_bundle("inference", tmp_path)
    assert (dest / "mine.txt").read_text() == "keep"


def _requirements(meta: dict) -> list[str]:
    """What the zoo's CI installs for a bundle (monai, numpy, required_packages_version), torch apart."""
    reqs = [f"monai=={meta['monai_version']}", f"numpy=={meta['numpy_version']}"]
    reqs += [f"{k}=={v}" for k, v in meta["required_packages_version"].items()]
    return reqs


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the venv build alone took 9.5 min on 2 loaded cores
def test_exported_zip_runs_in_a_fresh_venv_and_gives_the_repository_risk(ibsi, tmp_path):
    if os.environ.get("VOXSURV_TEST_FRESH_VENV") != "1":
        pytest.skip("builds a fresh venv (torch + requirements, minutes): set VOXSURV_TEST_FRESH_VENV=1")
    from voxsurv.bundle_export import export_bundle
    from voxsurv.inference.predictor import RiskPredictor

    t0 = time.monotonic()
    bundle = make_tiny_bundle(tmp_path / "repo_side")
    ct = ibsi / "ct_phantom" / "nifti" / "image" / "phantom.nii.gz"
    mask = ibsi / "ct_phantom" / "nifti" / "mask" / "mask.nii.gz"
    predictor = RiskPredictor(bundle)
    expected = predictor.risk(predictor.prepare({"patient_id": "phantom", "image": str(ct), "mask": str(mask)}))

    archive = export_bundle(bundle, tmp_path / "export", zip_file=True).with_suffix(".zip")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    with zipfile.ZipFile(archive) as z:
        z.extractall(empty)
    (unpacked,) = [p for p in empty.iterdir() if p.is_dir()]
    meta = json.loads((unpacked / "configs" / "metadata.json").read_text())

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    py = str(venv / "bin" / "python")
    for reqs in ([f"torch=={meta['pytorch_version']}"], _requirements(meta)):  # torch first: the CPU build
        pip = subprocess.run([py, "-m", "pip", "install", "-q", *reqs], env=env, timeout=1800, capture_output=True, text=True)
        assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    t_venv = time.monotonic() - t0
    # the repository is not installed there
    probe = subprocess.run([py, "-c", "import voxsurv"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'voxsurv'" in probe.stderr

    data = tmp_path / "patients"
    data.mkdir()
    pd.DataFrame([{"patient_id": "phantom", "image": str(ct), "mask": str(mask)}]).to_csv(data / "manifest.csv", index=False)
    run = subprocess.run([py, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml",
                          "--dataset_dir", str(data)], cwd=unpacked, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    row = pd.read_csv(data / "voxsurv_predictions" / "predictions.csv").iloc[0]
    assert row["patient_id"] == "phantom"
    assert abs(row["risk"] - expected) <= 1e-6, (row["risk"], expected)
    print(f"fresh venv + install: {t_venv:.0f} s; whole test: {time.monotonic() - t0:.0f} s")
