"""The model zoo's checks, offline, on every bundle (pretrain, finetune, inference) as the zoo would
see it (`voxsurv bundle export`): metadata against the required keys of the schema it declares,
JSON formatted as the zoo's pre-commit wants, the files the zoo's verify_bundle.py requires, net
in/out from the inference config, a SCRIPTED TorchScript export equal to the eager network, and
the inference workflow's properties. The zoo's own ci/verify_bundle.py was run outside the tests
(docs/model_zoo.md); its code is not in this repository.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from inference_helpers import REPO, make_tiny_bundle

NAMES = ("pretrain", "finetune", "inference")
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
# The required keys of meta_schema_20240725 (written here from the published schema's "required"
# lists: the top level and a tensor entry of network_data_format); a stand-in for the release asset
# monai.bundle.verify_metadata downloads, which cannot be fetched offline.
TENSOR = {"type": "object",
          "required": ["type", "format", "num_channels", "spatial_shape", "dtype", "value_range"],
          "properties": {"num_channels": {"type": "integer"}, "spatial_shape": {"type": "array"},
                         "value_range": {"type": "array", "items": {"type": "number"}}}}
REQUIRED_KEYS_SCHEMA = {
    "type": "object",
    "required": ["schema", "version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version",
                 "task", "description", "authors", "copyright", "network_data_format"],
    "properties": {
        **{k: {"type": "string"} for k in ("schema", "version", "monai_version", "pytorch_version", "numpy_version",
                                           "task", "description", "authors", "copyright", "name")},
        "required_packages_version": {"type": "object"},
        "supported_apps": {"type": "object"},
        "references": {"type": "array", "items": {"type": "string"}},
        "network_data_format": {"type": "object", "required": ["inputs", "outputs"],
                                "properties": {"inputs": {"type": "object", "additionalProperties": TENSOR},
                                               "outputs": {"type": "object", "additionalProperties": TENSOR}}},
    },
}
README_SECTIONS = ("# Model Overview", "## Data", "## Training configuration", "## Performance",
                   "## MONAI Bundle Commands", "# References", "# License")


def _verify_metadata(meta_file: Path, tmp: Path) -> None:
    """monai.bundle.verify_metadata with the schema file already in place (no download)."""
    from monai.bundle import verify_metadata

    schema = tmp / "schema.json"
    schema.write_text(json.dumps(REQUIRED_KEYS_SCHEMA))
    verify_metadata(meta_file=str(meta_file), filepath=str(schema))


@pytest.mark.parametrize("name", NAMES)
def test_metadata_declares_the_2024_schema_and_has_its_required_keys(name, tmp_path):
    meta_file = REPO / "bundles" / name / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    assert meta["schema"] == SCHEMA_URL
    _verify_metadata(meta_file, tmp_path)
    assert meta["version"] in meta["changelog"]
    assert "CT" in meta["name"] and "survival" in meta["name"]  # task and modality in the name
    assert isinstance(meta["supported_apps"], dict)


def test_the_schema_check_fails_without_a_required_key(tmp_path):
    meta = json.loads((REPO / "bundles" / "inference" / "configs" / "metadata.json").read_text())
    meta["optional_packages_version"] = meta.pop("required_packages_version")  # the old schema's key
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="required_packages_version"):
        _verify_metadata(bad, tmp_path)


def test_bundle_json_is_formatted_as_the_zoo_pre_commit_wants():
    """pretty-format-json --autofix --no-sort-keys --indent=4, end-of-file-fixer, trailing-whitespace."""
    from voxsurv.bundle_export import zoo_json

    files = sorted((REPO / "bundles").glob("*/configs/*.json")) + sorted((REPO / "bundles").glob("*/models/*.json"))
    assert len(files) >= 6
    for f in files:
        text = f.read_text()
        assert text == zoo_json(json.loads(text)), f"{f.relative_to(REPO)}: not 4-space pretty JSON + final newline"


@pytest.mark.parametrize("name", NAMES)
def test_bundle_has_the_files_and_readme_sections_of_a_zoo_bundle(name):
    bundle = REPO / "bundles" / name
    for rel in ("LICENSE", "configs/metadata.json", "configs/inference.yaml", "configs/logging.conf",
                "models/model.pt", "docs/README.md", "docs/data_license.txt"):
        assert (bundle / rel).is_file(), rel
    readme = (bundle / "docs" / "README.md").read_text()
    for section in README_SECTIONS:
        assert any(line.strip() == section for line in readme.splitlines()), (name, section)
    assert "CC BY-NC" in (bundle / "docs" / "data_license.txt").read_text()


def test_pretrain_and_finetune_inference_configs_are_the_generated_copies():
    from voxsurv.bundle_export import inference_config_text

    for name in ("pretrain", "finetune"):
        text = (REPO / "bundles" / name / "configs" / "inference.yaml").read_text()
        assert text == inference_config_text(name), (
            f"bundles/{name}/configs/inference.yaml differs from the inference bundle's: run "
            "python -c 'from voxsurv.bundle_export import write_inference_configs; write_inference_configs()'")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("zoo_tiny"))


@pytest.mark.parametrize("name", NAMES)
def test_zoo_checks_pass_on_the_exported_bundle(name, tiny, tmp_path):
    """What verify_bundle.verify(mode="full") runs after the directory and metadata: properties,
    verify_net_in_out and a scripted ckpt_export, on the export of `name`'s configs with tiny weights."""
    from monai.bundle import ConfigWorkflow, ckpt_export, verify_net_in_out

    from voxsurv.bundle_export import export_bundle

    src = tmp_path / "src" / name
    shutil.copytree(REPO / "bundles" / name, src, ignore=shutil.ignore_patterns("models", "outputs", "eval"))
    shutil.copytree(tiny / "models", src / "models")
    meta = json.loads((src / "configs" / "metadata.json").read_text())
    meta["network_data_format"] = json.loads((tiny / "configs" / "metadata.json").read_text())["network_data_format"]
    (src / "configs" / "metadata.json").write_text(json.dumps(meta))
    dest = export_bundle(src, tmp_path / "zoo")
    meta_file, config = dest / "configs" / "metadata.json", dest / "configs" / "inference.yaml"

    for rel in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.yaml"):  # verify_bundle_directory
        assert (dest / rel).is_file(), rel
    _verify_metadata(meta_file, tmp_path)
    wf = ConfigWorkflow(config_file=str(config), meta_file=str(meta_file), logging_file=str(dest / "configs" / "logging.conf"),
                        workflow_type="inference", bundle_root=str(dest))
    wf.initialize()
    assert wf.check_properties() == []
    verify_net_in_out(net_id="network_def", meta_file=str(meta_file), config_file=str(config), bundle_root=str(dest),
                      device="cpu")
    ts = dest / "models" / "verify_model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(dest / "models" / "model.pt"),
                meta_file=str(meta_file), config_file=str(config), bundle_root=str(dest))  # scripted, as the zoo runs it
    scripted = torch.jit.load(str(ts))
    eager = wf.parser.get_parsed_content("network_def")
    eager.load_state_dict(torch.load(dest / "models" / "model.pt", weights_only=True))
    eager.eval()
    member = eager.members[0]
    torch.manual_seed(0)
    x = torch.rand(2, member.in_channels, member.img_size, member.img_size, 3)
    with torch.no_grad():
        assert (scripted(x) - eager(x)).abs().max().item() <= 1e-5
