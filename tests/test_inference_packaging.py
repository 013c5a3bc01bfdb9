"""Packaging a model trained by the pretrain bundle into the inference bundle, end to end: a tiny
anchored, attention-pooled network trained for 2 epochs on a small demo cohort
(`monai.bundle` ConfigWorkflow of bundles/pretrain/configs/train.yaml), scored by the training
bundle's own evaluate.yaml, packaged from its output folder; then the inference bundle
(`monai.bundle run`) reproduces the training run's risks for its validation patients, and the
packaged calibration (tier cut-offs, risk range) is that of the training run's risks for its
training patients."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from inference_helpers import BUNDLE, TINY_FEATURES

PRETRAIN = BUNDLE.parent / "pretrain" / "configs"
RUN = {"features": list(TINY_FEATURES), "img_size": 32, "embed_dim": 32, "depth": 1, "batch_size": 8,
       "max_epochs": 2, "val_interval": 2, "preprocess_workers": 0, "pooling": "attention", "num_slices": 2,
       "anchored": True, "save_epoch_models": False}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data folder, training output folder) of a tiny pretrain run + its evaluate.yaml scores."""
    from monai.bundle import ConfigWorkflow

    from voxsurv.training.demo import generate_demo_cohort

    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    generate_demo_cohort(data, n_source=12, n_target=4, seed=3)
    paths = {"dataset_dir": str(data), "output_dir": str(root / "out"), "cache_dir": str(root / "cache")}
    wf = ConfigWorkflow(config_file=str(PRETRAIN / "train.yaml"), workflow_type="train", **paths, **RUN)
    wf.initialize()
    wf.run()
    wf.finalize()
    ev = ConfigWorkflow(config_file=[str(PRETRAIN / "train.yaml"), str(PRETRAIN / "evaluate.yaml")],
                        workflow_type="infer", predict_roles=["train", "val"], **paths, **RUN)
    ev.initialize()
    ev.run()
    ev.finalize()
    return data, root / "out"


def test_packaged_training_run_reproduces_its_risks_through_the_inference_bundle(trained, tmp_path):
    from monai.bundle import ConfigWorkflow

    from voxsurv.inference.bundle_info import InferenceInfo, tertile_cutoffs
    from voxsurv.inference.packaging import main

    data, out = trained
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    assert main(["--training-output", str(out), "--bundle", str(bundle)]) == 0
    info = InferenceInfo.load(bundle / "models" / "inference_info.json")
    assert info.network["pooling"] == "attention" and info.network["n_descriptors"] == 2 and info.anchored
    assert info.features == list(TINY_FEATURES) and info.preprocessing["img_size"] == 32

    # the calibration comes from the run's TRAINING patients, scored as the training bundle scores them
    train = pd.read_csv(out / "eval" / "predictions_train.csv", dtype={"patient_id": str})
    assert info.provenance["training_patients"] == len(train) >= 6
    assert info.provenance["training_events"] == int(train["event"].sum())
    assert info.training_risk_range == pytest.approx([train.risk.min(), train.risk.max()], abs=1e-5)
    assert info.tier_cutoffs == pytest.approx(tertile_cutoffs(train.risk), abs=1e-5)

    # the inference bundle on the run's validation patients gives the run's own risks back
    val = pd.read_csv(out / "eval" / "predictions_val.csv", dtype={"patient_id": str})
    assert len(val) >= 2
    manifest = pd.read_csv(data / "manifest.csv", dtype={"patient_id": str}).set_index("patient_id")
    rows = [{"patient_id": p, "image": str(data / manifest.loc[p, "image"]), "mask": str(data / manifest.loc[p, "mask"])}
            for p in val.patient_id]
    folder = tmp_path / "val"
    folder.mkdir()
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    wf = ConfigWorkflow(config_file=str(bundle / "configs" / "inference.yaml"), workflow_type="inference",
                        bundle_root=str(bundle), dataset_dir=str(folder), output_dir=str(tmp_path / "pred"))
    wf.initialize()
    wf.run()
    pred = pd.read_csv(tmp_path / "pred" / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    val = val.set_index("patient_id")
    assert np.abs(pred.loc[val.index, "risk"].to_numpy() - val.risk.to_numpy()).max() <= 1e-5
    assert np.abs(pred.loc[val.index, "anchor_offset"].to_numpy() - val.anchor_offset.to_numpy()).max() <= 1e-5
    assert np.abs(pred.loc[val.index, "image_risk"].to_numpy() - val.image_risk.to_numpy()).max() <= 1e-5
    assert val.anchor_offset.abs().max() > 1e-3  # the anchor was fitted and moves the risk


def test_training_output_without_run_settings_is_refused(tmp_path, capsys):
    from voxsurv.inference.packaging import main

    (tmp_path / "out" / "models").mkdir(parents=True)
    assert main(["--training-output", str(tmp_path / "out"), "--bundle", str(BUNDLE)]) == 1
    err = capsys.readouterr().err
    assert "not a voxsurv training output (no run_settings.json)" in err and "Fix:" in err
    assert json.loads((BUNDLE / "models" / "inference_info.json").read_text())  # the repository bundle untouched


def test_a_manifest_that_assigns_other_training_patients_than_the_run_is_refused(tmp_path):
    """Packaging a run with another manifest (e.g. one whose paths are valid here) must give the
    run's own training patients; one without the run's split column would silently draw another
    split (it once gave 60 Radiogenomics patients instead of the 20 fine-tune ones)."""
    from inference_helpers import write_training_cohort

    from voxsurv.core.errors import InputError
    from voxsurv.inference.packaging import run_training_patients

    own = write_training_cohort(tmp_path, n_patients=6)
    table = pd.read_csv(own)
    table["split"] = ["finetune", "finetune", "test", "test", "test", "test"]
    table.to_csv(own, index=False)
    table.drop(columns="split").to_csv(tmp_path / "no_split.csv", index=False)
    settings = {"manifest": str(own), "cohort": None, "seed": 0,
                "splits": {"train": "finetune", "val": "finetune", "test": "test", "fold": None, "n_folds": 5}}
    assert sorted(run_training_patients(settings)["patient_id"]) == ["tr0", "tr1"]
    assert sorted(run_training_patients(settings, own)["patient_id"]) == ["tr0", "tr1"]
    with pytest.raises(InputError, match="the run trained on 2 others"):
        run_training_patients(settings, tmp_path / "no_split.csv")
