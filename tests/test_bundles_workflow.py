"""The pretrain/finetune bundles, run for real on a tiny demo cohort with a tiny network.

One module-scoped run of the main job (finetune train.yaml pointed at a pre-trained checkpoint that
does not exist yet, so it pre-trains first on the demo source: the demo path) backs several
acceptance lines: it completes and prints the test C-index, writes per-patient predictions,
excludes the empty-mask patient, trains over patients with deaths in every batch, writes
predictions + weights at every evaluation (and the weights reproduce the predictions), leaves
frozen parameters untouched and never writes the shipped weights. Resume, the anchored variant,
the zero-event stop and config checks use the same cohort and cache.
"""

from __future__ import annotations

import json
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
# depth 2, embed 32, 32 px, two maps: a network and inputs that train in seconds on CPU
TINY = {"embed_dim": 32, "depth": 2, "img_size": 32, "batch_size": 6, "features": ["firstorder_Mean", "glcm_Contrast"]}
EMPTY_MASK_PATIENT = "sou-003"


def _sha_of_shipped() -> dict[str, str]:
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for b in ("pretrain", "finetune", "inference") for p in sorted((REPO / "bundles" / b / "models").glob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Tiny demo cohort; one source patient's mask is blanked (real-world bad input)."""
    import SimpleITK as sitk

    from voxsurv.training.demo import generate_demo_cohort

    root = tmp_path_factory.mktemp("bundle")
    data = root / "data"
    generate_demo_cohort(data, n_source=14, n_target=12, seed=5)
    mask_path = data / "images" / f"{EMPTY_MASK_PATIENT}_gtv.nii.gz"
    mask = sitk.ReadImage(str(mask_path))
    empty = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(mask)))
    empty.CopyInformation(mask)
    sitk.WriteImage(empty, str(mask_path))
    return root


def _cli(args: dict) -> list[str]:
    out = []
    for k, v in args.items():
        out += [f"--{k}", json.dumps(v) if isinstance(v, list) else str(v)]
    return out


def _common(root: Path) -> dict:
    return {"dataset_dir": root / "data", "cache_dir": root / "cache", "preprocess_workers": 0, **TINY}


@pytest.fixture(scope="module")
def main_run(cohort):
    before = _sha_of_shipped()
    args = {**_common(cohort), "output_dir": cohort / "finetune", "max_epochs": 2, "val_interval": 1,
            "pretrain_epochs": 2, "pretrain_batch_size": TINY["batch_size"],
            "pretrained_checkpoint": cohort / "finetune" / "pretrain" / "models" / "model.pt"}  # not there yet: the demo path
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(FINETUNE / "train.yaml"), *_cli(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert _sha_of_shipped() == before  # the shipped weights are read-only
    return out.stdout + out.stderr


def test_main_job_pretrains_finetunes_and_prints_test_c_index(main_run, cohort):
    from voxsurv.training.predictions import RUN_PREDICTION_COLUMNS

    assert "running a short pre-training first" in main_run
    assert "TEST C-index" in main_run and "true-risk C-index" in main_run
    pred = pd.read_csv(cohort / "finetune" / "predictions.csv")
    assert list(pred.columns) == RUN_PREDICTION_COLUMNS
    manifest = pd.read_csv(cohort / "data" / "manifest.csv")
    target = manifest[manifest.cohort == "target"]
    assert set(pred[pred.split == "test"].patient_id) == set(target[target.split == "test"].patient_id)
    assert set(pred[pred.split == "finetune"].patient_id) == set(target[target.split == "finetune"].patient_id)
    # the default network is anchored (the study's choice): risk = fixed Cox(volume, HU) offset + image risk
    assert np.isfinite(pred.risk).all() and (pred.anchor_offset != 0).any()
    assert np.allclose(pred.risk, pred.image_risk + pred.anchor_offset, atol=1e-5)
    pretrain = cohort / "finetune" / "pretrain"
    assert (pretrain / "models" / "model.pt").exists()
    # fine-tuning normalised the maps with the statistics the pre-trained network was trained with
    assert json.loads((cohort / "finetune" / "map_statistics.json").read_text()) == \
        json.loads((pretrain / "models" / "map_statistics.json").read_text())
    settings = json.loads((cohort / "finetune" / "run_settings.json").read_text())
    assert settings["features"] == TINY["features"] and settings["finetune_mode"] == "paper"
    assert settings["network"]["in_channels"] == 2 + len(TINY["features"])
    # the whole config as run: files merged, macros expanded, overrides applied
    config = json.loads((cohort / "finetune" / "config_resolved.json").read_text())
    assert config["features"] == TINY["features"] and config["max_epochs"] == 2 and config["cohort"] == "target"
    assert isinstance(config["train"], dict) and config["train"]["trainer"]["_target_"] == "SupervisedTrainer"
    assert json.loads((pretrain / "config_resolved.json").read_text())["max_epochs"] == 2  # pretrain_epochs


def test_empty_mask_patient_is_excluded_and_logged(main_run, cohort):
    excluded = pd.read_csv(cohort / "finetune" / "pretrain" / "excluded_patients.csv")
    assert list(excluded.patient_id) == [EMPTY_MASK_PATIENT]
    assert "empty" in excluded.problem[0]
    assert f"excluded: patient {EMPTY_MASK_PATIENT}" in main_run


def test_batches_are_patients_with_deaths_and_finetuning_uses_one_risk_set(main_run, cohort):
    from voxsurv.training.folds import split_fold

    manifest = pd.read_csv(cohort / "data" / "manifest.csv")
    pre = pd.read_csv(cohort / "finetune" / "pretrain" / "batch_events.csv")
    train, _ = split_fold(manifest[manifest.cohort == "source"].reset_index(drop=True), 0)
    n_train = len(set(train.patient_id) - {EMPTY_MASK_PATIENT})  # fold 0's training patients that were prepared
    assert (pre.deaths >= 1).all()
    for _, epoch in pre.groupby("epoch"):
        assert epoch.patients.sum() == n_train and epoch.patients.max() - epoch.patients.min() <= 1  # even batches
        assert epoch.patients.max() <= TINY["batch_size"]
    ft = pd.read_csv(cohort / "finetune" / "batch_events.csv")
    n_finetune = ((manifest.cohort == "target") & (manifest.split == "finetune")).sum()
    assert list(ft.groupby("epoch").size()) == [1, 1] and (ft.patients == n_finetune).all()
    assert "deaths per batch" in main_run


def test_every_evaluation_writes_predictions_and_weights_that_reproduce_them(main_run, cohort):
    """predictions_val_epoch{E}.csv + models/model_epoch{E}.pt per evaluation (every val_interval
    epochs and the last); scoring model_epoch{E}.pt with evaluate.yaml (score-only) gives the risks
    written at epoch E."""
    from monai.bundle import ConfigWorkflow

    out = cohort / "finetune" / "pretrain"  # 2 epochs at the default val_interval (5): the last one only
    assert sorted(p.name for p in out.glob("predictions_val_epoch*.csv")) == ["predictions_val_epoch2.csv"]
    assert (out / "models" / "model_epoch2.pt").exists()
    epoch2 = pd.read_csv(out / "predictions_val_epoch2.csv")
    wf = ConfigWorkflow(config_file=[str(PRETRAIN / "train.yaml"), str(PRETRAIN / "evaluate.yaml")], workflow_type="infer",
                        output_dir=str(out), checkpoint=str(out / "models" / "model_epoch2.pt"), predict_roles=["val"],
                        **{k: (str(v) if isinstance(v, Path) else v) for k, v in _common(cohort).items()})
    wf.initialize()
    wf.run()
    scored = pd.read_csv(out / "eval" / "predictions_val.csv")
    assert list(scored.patient_id) == list(epoch2.patient_id)
    assert np.allclose(scored.risk, epoch2.risk, atol=1e-5)
    ft = cohort / "finetune"  # fine-tuning: val_interval 1, both epochs evaluated (in-sample)
    assert (ft / "predictions_val_epoch1.csv").exists() and (ft / "models" / "model_epoch2.pt").exists()


def test_frozen_parameters_unchanged_after_finetuning(main_run, cohort):
    import torch

    pre = torch.load(cohort / "finetune" / "pretrain" / "models" / "model.pt", map_location="cpu", weights_only=True)
    post = torch.load(cohort / "finetune" / "models" / "model.pt", map_location="cpu", weights_only=True)
    frozen = [k for k in pre if k.startswith(("stem.", "tokens.", "blocks.0."))]
    trained = [k for k in pre if k.startswith(("blocks.1.", "head.")) and pre[k].is_floating_point()]
    assert frozen and trained
    for k in frozen:
        assert torch.equal(pre[k], post[k]), k
    assert any(not torch.equal(pre[k], post[k]) for k in trained)


def test_resume_continues_the_epoch_count(main_run, cohort):
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    out = cohort / "finetune" / "pretrain"
    wf = ConfigWorkflow(config_file=str(PRETRAIN / "train.yaml"), workflow_type="train", output_dir=str(out), max_epochs=3,
                        val_interval=1, **{k: (str(v) if isinstance(v, Path) else v) for k, v in _common(cohort).items()})
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    epochs_run = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs_run.append(e.state.epoch))
    wf.run()
    assert epochs_run == [3]  # epochs 1-2 came from the checkpoint
    assert (out / "predictions_val_epoch3.csv").exists() and (out / "models" / "model_epoch3.pt").exists()
    epoch2, epoch3 = (pd.read_csv(out / f"predictions_val_epoch{e}.csv") for e in (2, 3))
    assert list(epoch2.patient_id) == list(epoch3.patient_id) and not np.allclose(epoch2.risk, epoch3.risk)


def test_anchored_attention_run_writes_the_anchor_and_an_untrained_evaluation(main_run, cohort, tmp_path):
    """anchored: the anchor is fitted on the training patients before training; risk = anchor
    offset + image risk in the predictions; val_at_start gives the untrained network's epoch 0."""
    from voxsurv.training.anchor import DescriptorAnchor

    args = {**_common(cohort), "output_dir": tmp_path / "anchored", "max_epochs": 1, "val_interval": 1,
            "val_at_start": True, "anchored": True, "pooling": "attention", "num_slices": 2}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(PRETRAIN / "train.yaml"), *_cli(args)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = tmp_path / "anchored"
    anchor = DescriptorAnchor(**json.loads((out / "anchor.json").read_text()))
    assert anchor.n_patients == pd.read_csv(out / "batch_events.csv").query("epoch == 1").patients.sum()
    for epoch in (0, 1):
        pred = pd.read_csv(out / f"predictions_val_epoch{epoch}.csv")
        assert np.allclose(pred.anchor_offset, anchor.offset(pred[["log_volume_ml", "mean_hu"]].to_numpy()), atol=1e-4)
        assert np.allclose(pred.risk, pred.anchor_offset + pred.image_risk, atol=1e-6)
        assert pred.anchor_offset.abs().max() > 0
    assert (out / "models" / "model_epoch0.pt").exists()


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
                        cache_dir=str(cohort / "cache"), pretrained_checkpoint=str(tmp_path / "pt" / "models" / "model.pt"),
                        **TINY)
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
    out = cohort / "finetune" / ("pretrain" if bundle == "pretrain" else "")
    extra_args = {} if bundle == "pretrain" else {"pretrained_checkpoint": str(out / "pretrain" / "models" / "model.pt")}
    wf = ConfigWorkflow(config_file=files, workflow_type=kind, init_id="no_initialize",
                        meta_file=str(configs / "metadata.json"), logging_file=str(configs / "logging.conf"),
                        output_dir=str(out), **extra_args,
                        **{k: (str(v) if isinstance(v, Path) else v) for k, v in _common(cohort).items()})
    wf.initialize()
    assert wf.check_properties() == []
    assert Path(wf.bundle_root).resolve() == (REPO / "bundles" / bundle).resolve()


def test_training_augmentation_is_in_plane_flip_and_rotation_without_zoom():
    """The bundle's train#preprocessing on a stack whose slices are discs of distinct values:
    every output slice keeps one input slice's value (nothing mixes across slices) and its disc
    area (rotation and flip only: no zoom changing the tumour size)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(PRETRAIN / "train.yaml"))
    parser["bundle_root"] = str(REPO / "bundles" / "pretrain")
    parser["num_slices"] = 3
    chain = parser.get_parsed_content("train#preprocessing")
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (((yy - 15.5) ** 2 + ((xx - 15.5) / 0.6) ** 2) < 81).float()  # an ellipse: rotation is visible
    stack = torch.stack([disc * (s + 1) for s in range(5)], dim=-1)[None]  # (1, 32, 32, 5)
    rotated = 0
    for seed in range(12):
        chain.set_random_state(seed)
        out = torch.as_tensor(chain({"image": stack.clone()})["image"])
        assert out.shape == (1, 32, 32, 3)
        for k in range(3):
            sl = out[0, :, :, k]
            value = float(sl[15:17, 15:17].mean())
            assert value in {1.0, 2.0, 3.0, 4.0, 5.0}
            assert float(sl.sum()) / value == pytest.approx(float(disc.sum()), rel=0.05)
        rotated += int(not torch.equal(out[0, :, :, 0] > 0, disc > 0) and not torch.equal(out[0, :, :, 0] > 0, disc.flip(0) > 0))
    assert rotated >= 3  # rotations happen (prob 0.5)


@pytest.mark.parametrize("bundle", ["pretrain", "finetune"])
def test_metadata_has_the_bundle_specification_keys(bundle):
    meta = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    for key in ("schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "task", "description", "authors",
                "copyright", "network_data_format", "intended_use", "data_source", "performance"):
        assert key in meta, key
    # MONAI 1.6 maps the deprecated optional_packages_version onto required_packages_version when
    # it loads metadata, so having it would silently replace the required list.
    assert "optional_packages_version" not in meta
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 1
    for name in ("LICENSE", "docs/README.md", "configs/multi_gpu_train.yaml", "configs/evaluate.yaml",
                 "configs/logging.conf"):
        assert (REPO / "bundles" / bundle / name).exists(), name
