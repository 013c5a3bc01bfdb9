"""The pretrain/finetune bundles, run for real on a tiny demo cohort with a tiny network.

One module-scoped run of the main job (finetune train.yaml pointed at a pre-trained checkpoint
that does not exist yet, so it pre-trains first on the demo source: the demo path) backs several acceptance lines: it completes and prints the test C-index,
writes per-patient predictions, excludes the empty-mask patient, leaves frozen parameters
untouched. Resume, the zero-event stop and config checks use the same cohort and cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
FINETUNE = REPO / "bundles" / "finetune" / "configs"
PRETRAIN = REPO / "bundles" / "pretrain" / "configs"
# depth 2, embed 32, 32 px: a network that trains in seconds on CPU
TINY = {"embed_dim": 32, "depth": 2, "img_size": 32, "batch_size": 8}
EMPTY_MASK_PATIENT = "sou-003"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Tiny demo cohort; one source patient's mask is blanked (real-world bad input)."""
    import SimpleITK as sitk

    from voxsurv.training.demo import generate_demo_cohort

    root = tmp_path_factory.mktemp("bundle")
    data = root / "data"
    generate_demo_cohort(data, n_source=12, n_target=10, seed=5)
    mask_path = data / "images" / f"{EMPTY_MASK_PATIENT}_gtv.nii.gz"
    mask = sitk.ReadImage(str(mask_path))
    empty = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(mask)))
    empty.CopyInformation(mask)
    sitk.WriteImage(empty, str(mask_path))
    return root


def _overrides(root: Path, **extra) -> list[str]:
    args = {"dataset_dir": root / "data", "cache_dir": root / "cache", "output_dir": root / "finetune",
            "pretrain_output_dir": root / "pretrain", "pretrained_checkpoint": root / "pretrain" / "models" / "model.pt",
            "max_epochs": 1, "pretrain_epochs": 1,
            "frozen_blocks": 1, **TINY, **extra}
    out = []
    for k, v in args.items():
        out += [f"--{k}", str(v)]
    return out


@pytest.fixture(scope="module")
def main_run(cohort):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(FINETUNE / "train.yaml"),
           *_overrides(cohort)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def test_main_job_pretrains_finetunes_and_prints_test_c_index(main_run, cohort):
    assert "running a short pre-training first" in main_run
    assert "TEST C-index" in main_run and "true-risk C-index" in main_run
    pred = pd.read_csv(cohort / "finetune" / "predictions.csv")
    assert {"patient_id", "risk", "time_days", "event", "split"} <= set(pred.columns)
    manifest = pd.read_csv(cohort / "data" / "manifest.csv")
    target = manifest[manifest.cohort == "target"]
    assert set(pred[pred.split == "test"].patient_id) == set(target[target.split == "test"].patient_id)
    assert np.isfinite(pred.risk).all()
    assert (cohort / "pretrain" / "models" / "model.pt").exists()
    assert (cohort / "finetune" / "map_statistics.json").exists()


def test_empty_mask_patient_is_excluded_and_logged(main_run, cohort):
    excluded = pd.read_csv(cohort / "pretrain" / "excluded_patients.csv")
    assert list(excluded.patient_id) == [EMPTY_MASK_PATIENT]
    assert "empty" in excluded.problem[0]
    assert f"excluded: patient {EMPTY_MASK_PATIENT}" in main_run


def test_frozen_parameters_unchanged_after_finetuning(main_run, cohort):
    import torch

    pre = torch.load(cohort / "pretrain" / "models" / "model.pt", map_location="cpu", weights_only=True)
    post = torch.load(cohort / "finetune" / "models" / "model_last.pt", map_location="cpu", weights_only=True)["model"]
    frozen = [k for k in pre if k.startswith(("stem.", "tokens.", "blocks.0."))]
    trained = [k for k in pre if k.startswith(("blocks.1.", "head.")) and pre[k].is_floating_point()]
    assert frozen and trained
    for k in frozen:
        assert torch.equal(pre[k], post[k]), k
    assert any(not torch.equal(pre[k], post[k]) for k in trained)


def test_resume_continues_the_epoch_count(main_run, cohort):
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=str(PRETRAIN / "train.yaml"), workflow_type="train",
                        dataset_dir=str(cohort / "data"), output_dir=str(cohort / "pretrain"),
                        cache_dir=str(cohort / "cache"), max_epochs=2, **TINY)
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    epochs_run = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs_run.append(e.state.epoch))
    wf.run()
    assert epochs_run == [2]  # epoch 1 came from the checkpoint
    assert trainer.state.epoch == 2


def test_zero_event_finetune_split_stops_before_training(cohort, tmp_path, capsys):
    from monai.bundle import ConfigWorkflow

    manifest = pd.read_csv(cohort / "data" / "manifest.csv")
    manifest.loc[manifest.split == "finetune", "event"] = 0
    for col in ("image", "mask"):
        manifest[col] = [str(cohort / "data" / p) for p in manifest[col]]
    path = tmp_path / "manifest.csv"
    manifest.to_csv(path, index=False)
    wf = ConfigWorkflow(config_file=str(FINETUNE / "train.yaml"), workflow_type="train",
                        dataset_dir=str(cohort / "data"), manifest=str(path), output_dir=str(tmp_path / "ft"),
                        pretrain_output_dir=str(tmp_path / "pt"), cache_dir=str(cohort / "cache"),
                        pretrained_checkpoint=str(tmp_path / "pt" / "models" / "model.pt"), **TINY)
    with pytest.raises(Exception) as info:
        wf.initialize()
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("has 0 events" in m for m in chain)
    assert "STOP before training" in capsys.readouterr().out
    assert not (tmp_path / "pt").exists()  # no pre-training was started


@pytest.mark.parametrize("bundle,extra,kind", [
    ("pretrain", None, "train"), ("finetune", None, "train"),
    ("pretrain", "evaluate.yaml", "infer"), ("finetune", "evaluate.yaml", "infer")])
def test_configs_parse_and_check_properties_is_empty(main_run, cohort, bundle, extra, kind):
    from monai.bundle import ConfigWorkflow

    configs = REPO / "bundles" / bundle / "configs"
    files = [str(configs / "train.yaml")] + ([str(configs / extra)] if extra else [])
    out = cohort / ("pretrain" if bundle == "pretrain" else "finetune")
    wf = ConfigWorkflow(config_file=files, workflow_type=kind, init_id="no_initialize",
                        meta_file=str(configs / "metadata.json"), logging_file=str(configs / "logging.conf"),
                        dataset_dir=str(cohort / "data"), output_dir=str(out), cache_dir=str(cohort / "cache"),
                        pretrain_output_dir=str(cohort / "pretrain"),
                        pretrained_checkpoint=str(cohort / "pretrain" / "models" / "model.pt"), **TINY)
    wf.initialize()
    assert wf.check_properties() == []
    assert Path(wf.bundle_root).resolve() == (REPO / "bundles" / bundle).resolve()


@pytest.mark.parametrize("bundle", ["pretrain", "finetune"])
def test_metadata_has_the_bundle_specification_keys(bundle):
    import json

    meta = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    for key in ("schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "task", "description", "authors",
                "copyright", "network_data_format", "intended_use", "data_source", "performance"):
        assert key in meta, key
    # MONAI 1.6 maps the deprecated optional_packages_version onto required_packages_version when
    # it loads metadata, so having it would silently replace the required list.
    assert "optional_packages_version" not in meta
    assert meta["version"] in meta["changelog"]
    fmt = meta["network_data_format"]
    # the format describes the shipped network (models/model_info.json)
    shipped = json.loads((REPO / "bundles" / bundle / "models" / "model_info.json").read_text())
    assert fmt["inputs"]["image"]["num_channels"] == shipped["network"]["in_channels"] == 17
    assert fmt["outputs"]["pred"]["num_channels"] == 1
    for name in ("LICENSE", "docs/README.md", "configs/multi_gpu_train.yaml", "configs/evaluate.yaml",
                 "configs/logging.conf"):
        assert (REPO / "bundles" / bundle / name).exists(), name
