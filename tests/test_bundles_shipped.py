"""The real study's weights shipped in bundles/*/models (issue 11): each bundle holds the study's
ensemble, its map statistics and inference info, all describing the same network; the inference
bundle reproduces the study's committed test risks of row (e); training never writes them (the
main job's test in test_bundles_workflow.py checks their hashes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
RESULTS = REPO / "docs" / "results"
PREDICTIONS = RESULTS / "real_study_predictions"


def _sha(path: Path) -> str:
    from voxsurv.inference.bundle_info import sha256_file

    return sha256_file(path)


def _info(bundle: str) -> dict:
    return json.loads((BUNDLES / bundle / "models" / "model_info.json").read_text())


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((RESULTS / "real_study.json").read_text())


@pytest.mark.parametrize("bundle, row", [("pretrain", "d"), ("finetune", "e")])
def test_shipped_weights_are_the_study_ensemble_the_metadata_describes(bundle, row, results):
    from networks import SurvivalEnsemble
    from voxsurv.inference.bundle_info import InferenceInfo
    from voxsurv.inference.packaging import as_ensemble

    models = BUNDLES / bundle / "models"
    info = _info(bundle)
    weights = models / "model.pt"
    assert weights.stat().st_size < 20 * 2**20
    assert _sha(weights) == info["provenance"]["weights_sha256"]
    selected = json.loads((RESULTS / "selected_maps.json").read_text())["selected"]
    assert info["features"] == selected == results["screening"]["selected"]
    assert info["channels"] == ["ct", *selected, "mask"] and info["network"]["in_channels"] == 2 + len(selected)
    assert info["study_row"] == row and info["n_members"] == results["rows"]["d"]["ensemble"]["n_members"]
    meta = json.loads((BUNDLES / bundle / "configs" / "metadata.json").read_text())
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == info["network"]["in_channels"]
    assert image["spatial_shape"] == [info["network"]["img_size"]] * 2 + ["*"]
    assert list(image["channel_def"].values()) == info["channels"]
    net, kwargs = as_ensemble(torch.load(weights, map_location="cpu", weights_only=True))
    assert isinstance(net, SurvivalEnsemble) and net.n_members == info["n_members"] and kwargs == info["network"]
    net.eval()
    x = torch.rand(1, kwargs["in_channels"], kwargs["img_size"], kwargs["img_size"], 3) - 0.5
    descriptors = torch.zeros(1, kwargs["n_descriptors"]) if kwargs["n_descriptors"] else None
    with torch.no_grad():
        out = net(x, descriptors) if descriptors is not None else net(x)
    assert out.shape == (1, 1) and torch.isfinite(out).all()
    from voxsurv.maps.normalise import MapStatistics

    assert list(MapStatistics.load(models / "map_statistics.json").names) == info["features"]
    packaged = InferenceInfo.load(models / "inference_info.json")  # what the bundle's inference.yaml reads
    assert packaged.weights_sha256 == _sha(weights) and packaged.features == info["features"]
    assert "CC BY-NC" in json.dumps(meta["data_licence"]) and f"real_radiogenomics_test_{row}" in meta["performance"]
    assert meta["performance"][f"real_radiogenomics_test_{row}"]["c_index"] == round(results["rows"][row]["c_index"], 3)


def test_inference_bundle_ships_the_finetuned_model():
    from voxsurv.inference.bundle_info import InferenceInfo

    info = InferenceInfo.load(BUNDLES / "inference" / "models" / "inference_info.json")
    ft = _info("finetune")
    assert info.weights_sha256 == _sha(BUNDLES / "inference" / "models" / "model.pt") == ft["provenance"]["weights_sha256"]
    assert info.features == ft["features"]
    assert info.network_kwargs() == ft["network"]
    assert {k: info.preprocessing[k] for k in ft["preprocessing"]} == ft["preprocessing"]
    assert info.provenance["training_patients"] == 20  # baseline + tiers: (e)'s fine-tune patients


@pytest.mark.parametrize("bundle", ["pretrain", "finetune"])
def test_training_outputs_stay_out_of_the_shipped_models_folder(bundle):
    """Training writes only to output_dir (and the cache); bundles/*/models is read-only."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.yaml"))
    parser["bundle_root"] = str(BUNDLES / bundle)
    models = (BUNDLES / bundle / "models").resolve()
    for key in ("output_dir", "ckpt_dir", "cache_dir"):
        path = Path(parser.get_parsed_content(key)).resolve()
        assert models not in path.parents and path != models, key


def test_shipped_finetuned_model_reproduces_committed_study_risks(lung_crops, tmp_path):
    """Two test patients of row (e): the inference bundle (its own maps + preprocessing) gives the
    risks the study's bundle run wrote (the study read the same maps from its cohort cache)."""
    from voxsurv.inference.predictor import RiskPredictor
    from voxsurv.data.manifest import load_manifest

    manifest = load_manifest(lung_crops / "manifest.csv").set_index("patient_id")
    committed = pd.read_csv(PREDICTIONS / "e_test.csv", dtype={"patient_id": str}).head(2)
    predictor = RiskPredictor(BUNDLES / "inference")
    for row in committed.itertuples():
        prepared = predictor.prepare({"patient_id": row.patient_id, "image": manifest.loc[row.patient_id, "image"],
                                      "mask": manifest.loc[row.patient_id, "mask"]}, tmp_path)
        assert predictor.risk(prepared) == pytest.approx(row.risk, abs=1e-3), row.patient_id
