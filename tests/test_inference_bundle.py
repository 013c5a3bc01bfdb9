"""Model-zoo checks of the inference bundle: verify_net_in_out, TorchScript export equal to the eager
network, metadata keys of the bundle specification (offline), MONAI's inference-workflow
properties (what MONAI Label reads), network_data_format entries, and `monai.bundle run` itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from inference_helpers import BUNDLE, REPO, make_tiny_bundle, write_synthetic_patient

@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("zoo"))


def test_verify_net_in_out(bundle, caplog):
    """Same entry point as `python -m monai.bundle verify_net_in_out network_def --meta_file ...
    --config_file ... --bundle_root ...` (docs/README.md), in-process to save an interpreter start."""
    import logging

    from monai.bundle import verify_net_in_out

    caplog.set_level(logging.INFO)
    verify_net_in_out(net_id="network_def", meta_file=str(bundle / "configs" / "metadata.json"),
                      config_file=str(bundle / "configs" / "inference.yaml"), bundle_root=str(bundle), device="cpu")
    assert "data shape of network is verified with no error" in caplog.text


def test_torchscript_export_equals_the_eager_network(bundle):
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
    x = torch.randn(5, eager.in_channels, eager.img_size, eager.img_size) * 3
    with torch.no_grad():
        diff = (scripted(x) - eager(x)).abs().max().item()
    assert diff <= 1e-5, diff


def test_packaging_removes_a_stale_torchscript(bundle, tmp_path):
    from inference_helpers import make_finetune_output
    from voxsurv.inference.packaging import package

    stale = bundle / "models" / "model.ts"
    stale.write_bytes(b"old model")
    package(make_finetune_output(tmp_path / "ft", seed=2), bundle)
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
    # MONAI >= 1.4 renames optional_packages_version to required_packages_version on load,
    # overwriting the required list: keep it out
    assert "optional_packages_version" not in meta
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


def test_packaged_metadata_matches_the_network(bundle):
    from voxsurv.inference.bundle_info import InferenceInfo

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    info = InferenceInfo.load(bundle / "models" / "inference_info.json")
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == info.in_channels == 3
    assert image["spatial_shape"] == [32, 32]
    assert list(image["channel_def"].values()) == ["CT", *info.features]


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


def test_packaging_recomputes_training_risks_and_monai_bundle_run_agrees(tmp_path):
    """Packaging with the cohort manifest refits the tier cut-offs on risks recomputed with the
    packaged weights; `monai.bundle run` (Dataset + DataLoader + SupervisedEvaluator + the
    postprocessing Compose) on the same patients gives risks whose tertiles are those cut-offs."""
    from monai.bundle import ConfigWorkflow

    from inference_helpers import make_finetune_output
    from voxsurv.inference.bundle_info import InferenceInfo, tertile_cutoffs
    from voxsurv.inference.packaging import package

    data = tmp_path / "data"
    rows = []
    for i in range(3):
        ip, mp = write_synthetic_patient(data / "images", f"p{i}", seed=i)
        rows.append({"patient_id": f"p{i}", "image": str(ip.relative_to(data)), "mask": str(mp.relative_to(data)),
                     "time_days": [400, 900, 1500][i], "event": [1, 1, 0][i]})
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    ft = make_finetune_output(tmp_path / "ft", seed=4)
    pd.DataFrame({**pd.DataFrame(rows)[["patient_id", "time_days", "event"]], "risk": [9.0, 9.5, 10.0],
                  "split": "finetune"}).to_csv(ft / "predictions_finetune.csv", index=False)
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE / "configs", bundle / "configs")
    package(ft, bundle, manifest=data / "manifest.csv")
    info = InferenceInfo.load(bundle / "models" / "inference_info.json")
    assert info.provenance["training_risks"].startswith("recomputed with the packaged weights")
    assert max(info.tier_cutoffs) < 9.0  # not the (deliberately wrong) risks of the prediction file

    wf = ConfigWorkflow(config_file=str(bundle / "configs" / "inference.yaml"), workflow_type="inference",
                        bundle_root=str(bundle), dataset_dir=str(data), output_dir=str(tmp_path / "out"))
    wf.initialize()
    wf.run()
    pred = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(pred.columns) == ["patient_id", "risk", "tier", "s_365", "s_730", "s_1095"]
    assert list(pred.patient_id) == ["p0", "p1", "p2"]
    assert tertile_cutoffs(pred.risk) == pytest.approx(info.tier_cutoffs, abs=1e-6)
    assert list(pred.tier) == [["Low", "Intermediate", "High"][int(r >= info.tier_cutoffs[0]) +
                                                              int(r >= info.tier_cutoffs[1])] for r in pred.risk]


def test_committed_bundle_artefacts_are_small_and_consistent():
    """The weights committed with the bundle stay well under 20 MB, match inference_info.json and
    metadata.json, and no TorchScript file is tracked (it could go stale)."""
    tracked = subprocess.run(["git", "ls-files", "bundles/inference"], capture_output=True, text=True, cwd=REPO).stdout
    assert "model.ts" not in tracked
    weights = BUNDLE / "models" / "model.pt"
    if not weights.exists():
        pytest.skip("no packaged weights in bundles/inference/models yet")
    from voxsurv.inference.bundle_info import InferenceInfo, sha256_file

    assert weights.stat().st_size < 5 * 2 ** 20
    info = InferenceInfo.load(BUNDLE / "models" / "inference_info.json")
    assert info.weights_sha256 == sha256_file(weights)
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == info.in_channels
    assert Path(BUNDLE / "docs" / "README.md").read_text().count("voxsurv predict") >= 1
