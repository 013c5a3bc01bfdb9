"""The inference bundle on the patient-level chain: model-zoo checks (verify_net_in_out, scripted
TorchScript export equal to the eager network, metadata keys, MONAI's inference-workflow
properties), `monai.bundle run` with one network, an ensemble and an anchored network, the
post-processing transforms, packaging, and the committed bundle's format."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from inference_helpers import (BUNDLE, REPO, TINY_FEATURES, make_tiny_bundle, make_training_output, tiny_network,
                               write_synthetic_patient, write_training_cohort)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three new patients in a folder with manifest.csv (what `monai.bundle run --dataset_dir` reads)."""
    data = tmp_path_factory.mktemp("cohort")
    rows = []
    for i in range(3):
        ip, mp = write_synthetic_patient(data / "images", f"p{i}", seed=i, radius_mm=8.0 + 3.0 * i)
        rows.append({"patient_id": f"p{i}", "image": str(ip.relative_to(data)), "mask": str(mp.relative_to(data))})
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    return data


def run_bundle(bundle, dataset_dir, out):
    """`monai.bundle run` in-process: Dataset + DataLoader + SupervisedEvaluator + postprocessing."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=str(bundle / "configs" / "inference.yaml"), workflow_type="inference",
                        bundle_root=str(bundle), dataset_dir=str(dataset_dir), output_dir=str(out))
    wf.initialize()
    wf.run()
    return pd.read_csv(out / "predictions.csv", float_precision="round_trip")


def test_verify_net_in_out(bundle, caplog):
    """Same entry point as `python -m monai.bundle verify_net_in_out network_def --meta_file ...
    --config_file ... --bundle_root ...` (docs/README.md), in-process to save an interpreter start."""
    import logging

    from monai.bundle import verify_net_in_out

    caplog.set_level(logging.INFO)
    verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                      config_file=str(bundle / "configs" / "inference.yaml"), bundle_root=str(bundle), device="cpu")
    assert "data shape of network is verified with no error" in caplog.text


def test_scripted_torchscript_export_equals_the_eager_network(bundle):
    from voxsurv.inference.packaging import export_torchscript
    from voxsurv.inference.predictor import RiskPredictor

    ts_path = export_torchscript(bundle)
    assert ts_path == bundle / "models" / "model.ts"
    eager = RiskPredictor(bundle).network.eval()
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(ts_path), _extra_files=extra)
    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    assert json.loads(extra["metadata.json"])["version"] == version  # MONAI embeds the bundle files
    torch.manual_seed(3)
    member = eager.members[0]
    x = torch.rand(2, member.in_channels, member.img_size, member.img_size, 5)
    with torch.no_grad():
        diff = (scripted(x) - eager(x)).abs().max().item()
    assert diff <= 1e-5, diff
    ts_path.unlink()


def test_packaging_removes_a_stale_torchscript(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "a")
    stale = bundle / "models" / "model.ts"
    stale.write_bytes(b"old model")
    from voxsurv.inference.packaging import package

    out = make_training_output(tmp_path / "other", seed=2)
    package(out / "models" / "model.pt", bundle, tmp_path / "a" / "cohort" / "manifest.csv",
            map_statistics=out / "map_statistics.json", preprocessing={"img_size": 32})
    assert not stale.exists()  # MONAI Deploy would prefer it over the new model.pt
    assert "models/model.ts" in (BUNDLE / ".gitignore").read_text()


def test_metadata_has_every_key_the_bundle_specification_requires():
    """Offline stand-in for `monai.bundle verify_metadata` (it downloads the schema)."""
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    for key in ("schema", "version", "changelog", "monai_version", "pytorch_version", "numpy_version",
                "required_packages_version", "task", "description", "authors", "copyright",
                "network_data_format", "intended_use", "data_source", "data_type", "image_classes",
                "label_classes", "pred_classes", "references", "name"):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    assert meta["monai_version"] == __import__("monai").__version__
    fmt = meta["network_data_format"]
    for io, name in (("inputs", "image"), ("outputs", "pred")):
        entry = fmt[io][name]
        for key in ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range",
                    "is_patch_data", "channel_def"):
            assert key in entry, (io, key)
    assert fmt["inputs"]["image"]["modality"] == "CT"
    assert fmt["outputs"]["pred"]["num_channels"] == 1
    assert len(fmt["inputs"]["image"]["channel_def"]) == fmt["inputs"]["image"]["num_channels"]
    for name in ("LICENSE", "docs/README.md", "configs/logging.conf", "configs/inference.yaml"):
        assert (BUNDLE / name).exists(), name


def test_packaged_info_and_metadata_describe_the_network(bundle):
    from voxsurv.inference.bundle_info import InferenceInfo, sha256_file

    info = InferenceInfo.load(bundle / "models" / "inference_info.json")
    assert info.features == list(TINY_FEATURES) and info.channel_names == ["ct", *TINY_FEATURES, "mask"]
    assert info.network["in_channels"] == 4 and info.network["img_size"] == 32 == info.preprocessing["img_size"]
    assert info.network["pooling"] == "mean" and info.n_members == 1 and not info.anchored
    assert info.weights_sha256 == sha256_file(bundle / "models" / "model.pt")
    assert info.provenance["training_patients"] == 4 and info.provenance["training_events"] == 2
    lo, hi = info.training_risk_range
    assert lo <= info.tier_cutoffs[0] <= info.tier_cutoffs[1] <= hi
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == info.in_channels == 4
    assert image["spatial_shape"] == [32, 32, "*"]
    assert list(image["channel_def"].values()) == ["ct", *info.features, "mask"]


def test_inference_workflow_properties_are_complete(bundle, tmp_path):
    """MONAI Label's bundle infer task and MONAI's ConfigWorkflow read these properties."""
    from monai.bundle import ConfigWorkflow

    configs = bundle / "configs"
    wf = ConfigWorkflow(config_file=str(configs / "inference.yaml"), meta_file=str(configs / "metadata.json"),
                        logging_file=str(configs / "logging.conf"), workflow_type="inference",
                        bundle_root=str(bundle), dataset_dir=str(tmp_path))
    wf.initialize()
    assert wf.check_properties() == []
    for key in ("network_def", "preprocessing", "postprocessing", "inferer"):
        assert key in wf.parser.config
    assert type(wf.parser.get_parsed_content("preprocessing")).__name__ == "Compose"
    assert type(wf.parser.get_parsed_content("postprocessing")).__name__ == "Compose"
    # the SAME chain as training: custom_transforms.pipeline.patient_preprocessing
    assert wf.parser.config["preprocessing"]["_target_"] == "custom_transforms.pipeline.patient_preprocessing"


def test_bundle_run_gives_the_training_risks_back_and_the_calibration_follows_them(bundle, tmp_path):
    """Packaging recomputed the 4 training patients' risks through the bundle's pipeline;
    `monai.bundle run` on those patients gives risks whose tertiles are the cut-offs and whose
    min/max is the stored training range (one float32 network, same inputs: 1e-6)."""
    from voxsurv.inference.bundle_info import InferenceInfo, tertile_cutoffs

    info = InferenceInfo.load(bundle / "models" / "inference_info.json")
    pred = run_bundle(bundle, bundle.parent / "cohort", tmp_path / "out")
    # the same columns, in the same order, as `voxsurv predict` writes (less folder, time, event)
    assert list(pred.columns) == ["patient_id", "risk", "tier", "s_365", "s_730", "s_1095", "in_training_range"]
    assert list(pred.patient_id) == ["tr0", "tr1", "tr2", "tr3"]
    assert tertile_cutoffs(pred.risk) == pytest.approx(info.tier_cutoffs, abs=1e-6)
    assert [pred.risk.min(), pred.risk.max()] == pytest.approx(info.training_risk_range, abs=1e-6)
    assert pred.in_training_range.all()
    c1, c2 = info.tier_cutoffs
    assert list(pred.tier) == [["Low", "Intermediate", "High"][int(r >= c1) + int(r >= c2)] for r in pred.risk]


def test_bundle_run_risk_is_the_networks_own_output_on_the_stack(bundle, cohort, tmp_path):
    """One patient per batch, no slice aggregation: the bundle's risk is the network applied to the
    patient's (C, H, W, S) stack from patient_preprocessing (built here from the factory itself)."""
    from custom_transforms.pipeline import patient_preprocessing
    from voxsurv.inference.bundle_info import InferenceInfo
    from voxsurv.inference.predictor import RiskPredictor

    pred = run_bundle(bundle, cohort, tmp_path / "out")
    info = InferenceInfo.load(bundle / "models" / "inference_info.json")
    pre = patient_preprocessing(info.statistics(), features=info.features, **info.preprocessing)
    net = RiskPredictor(bundle).network
    for row in pred.itertuples():
        sample = pre({"image": str(cohort / "images" / f"{row.patient_id}_ct.nii.gz"),
                      "mask": str(cohort / "images" / f"{row.patient_id}_gtv.nii.gz")})
        assert sample["image"].shape[:3] == (4, 32, 32) and sample["image"].shape[3] >= 2
        with torch.no_grad():
            expected = float(net(sample["image"][None], sample["descriptors"][None]))
        assert row.risk == pytest.approx(expected, abs=1e-6)
    assert pred.risk.nunique() == 3


def test_ensemble_bundle_risk_is_the_mean_of_its_members(tmp_path, cohort):
    from custom_transforms.pipeline import patient_preprocessing
    from voxsurv.inference.bundle_info import InferenceInfo

    ensemble = tiny_network(n_members=3)
    bundle = make_tiny_bundle(tmp_path / "ens", network=ensemble)
    info = InferenceInfo.load(bundle / "models" / "inference_info.json")
    assert info.n_members == 3
    pred = run_bundle(bundle, cohort, tmp_path / "out")
    pre = patient_preprocessing(info.statistics(), features=info.features, **info.preprocessing)
    members = []
    for pid in pred.patient_id:
        sample = pre({"image": str(cohort / "images" / f"{pid}_ct.nii.gz"),
                      "mask": str(cohort / "images" / f"{pid}_gtv.nii.gz")})
        with torch.no_grad():
            members.append([float(m.eval()(sample["image"][None], sample["descriptors"][None]))
                            for m in ensemble.members])
    members = np.asarray(members)  # (patients, members)
    assert np.allclose(pred.risk, members.mean(axis=1), atol=1e-6)
    assert np.ptp(members[0]) > 1e-4  # the members differ: the mean is not any one of them


def test_anchored_bundle_reports_anchor_offset_and_image_risk(tmp_path, cohort):
    """risk = anchor_offset + image_risk; the offset is the stored Cox predictor on [log volume, mean HU]."""
    from custom_transforms.pipeline import volume_preprocessing

    net = tiny_network(n_descriptors=2)
    coef, mean, scale = [0.8, -0.5], [2.0, 30.0], [0.7, 20.0]
    net.set_anchor(coef, mean, scale)
    bundle = make_tiny_bundle(tmp_path / "anch", network=net)
    pred = run_bundle(bundle, cohort, tmp_path / "out")
    assert {"anchor_offset", "image_risk"} <= set(pred.columns)
    assert np.allclose(pred.risk, pred.anchor_offset + pred.image_risk, atol=1e-6)
    vol = volume_preprocessing([])
    for row in pred.itertuples():
        d = vol({"image": str(cohort / "images" / f"{row.patient_id}_ct.nii.gz"),
                 "mask": str(cohort / "images" / f"{row.patient_id}_gtv.nii.gz")})["descriptors"].double().numpy()
        expected = float(((d - np.array(mean)) / np.array(scale)) @ np.array(coef))
        assert row.anchor_offset == pytest.approx(expected, abs=1e-5)
    assert pred.anchor_offset.nunique() == 3  # tumours of different sizes


def test_postprocessing_refuses_several_values_and_flags_risks_outside_the_training_range():
    from voxsurv.inference.postprocessing import PatientRiskd, TrainingRiskRanged

    with pytest.raises(ValueError, match="one risk per patient"):
        PatientRiskd("pred")({"pred": torch.tensor([[0.1], [0.2], [0.3]])})  # per-slice outputs
    assert PatientRiskd("pred")({"pred": torch.tensor([0.25])})["risk"] == pytest.approx(0.25)
    check = TrainingRiskRanged("risk", risk_range=[-0.5, 0.5])
    assert check({"risk": 0.5})["in_training_range"] is True
    assert check({"risk": 0.51})["in_training_range"] is False
    assert check({"risk": -0.7})["training_risk_range"] == [-0.5, 0.5]


def test_old_format_info_gives_a_clear_error(tmp_path):
    from voxsurv.core.errors import InputError
    from voxsurv.inference.bundle_info import InferenceInfo

    path = tmp_path / "inference_info.json"
    path.write_text(json.dumps({"format": "voxsurv-inference-info/1", "features": ["a"]}))
    with pytest.raises(InputError, match="old per-slice format") as err:
        InferenceInfo.load(path)
    assert "Fix: re-package" in str(err.value) and str(path) in str(err.value)


def test_packaging_refuses_statistics_that_do_not_fit_the_network(tmp_path):
    from voxsurv.core.errors import InputError
    from voxsurv.inference.packaging import package

    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    out = make_training_output(tmp_path / "t", features=("firstorder_Mean",),
                               network=tiny_network(("firstorder_Mean", "glcm_Contrast", "firstorder_Median")))
    manifest = write_training_cohort(tmp_path / "c", n_patients=3)
    with pytest.raises(InputError, match="takes 3 maps"):
        package(out / "models" / "model.pt", bundle, manifest, map_statistics=out / "map_statistics.json")
    assert not (bundle / "models" / "model.pt").exists()


def test_committed_bundle_artefacts_are_small_and_consistent():
    """The weights committed with the bundle stay small and match inference_info.json and
    metadata.json, and no TorchScript file is tracked (it could go stale)."""
    tracked = subprocess.run(["git", "ls-files", "bundles/inference"], capture_output=True, text=True, cwd=REPO).stdout
    assert "model.ts" not in tracked
    from voxsurv.inference.bundle_info import InferenceInfo, sha256_file

    weights = BUNDLE / "models" / "model.pt"
    assert weights.stat().st_size < 20 * 2 ** 20
    info = InferenceInfo.load(BUNDLE / "models" / "inference_info.json")
    assert info.weights_sha256 == sha256_file(weights)
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == info.in_channels
    assert (BUNDLE / "docs" / "README.md").read_text().count("voxsurv predict") >= 1
