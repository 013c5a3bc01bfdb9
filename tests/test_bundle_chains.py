"""Issue 14: one preprocessing chain. The pretrain and finetune training configs and the three
inference configs (the inference bundle's and its generated copies in pretrain/finetune) are parsed
as MONAI parses them and the chains they build are compared: a change in one that the others do not
follow (a model that sees other inputs at inference than in training) fails here.

Training builds volume_preprocessing + stack_preprocessing(map_statistics) (as
voxsurv.training.patients.SurvivalPatients does); inference builds patient_preprocessing from
inference_info.json's `preprocessing`, which packaging derives from what the training run recorded
(run_settings.json, voxsurv.inference.packaging.inference_preprocessing) -- the same route here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ["bundles/pretrain/configs/train.yaml", "bundles/finetune/configs/train.yaml"]
INFERENCE = ["bundles/inference/configs/inference.yaml", "bundles/pretrain/configs/inference.yaml",
             "bundles/finetune/configs/inference.yaml"]
STATISTICS = ROOT / "bundles" / "pretrain" / "models" / "map_statistics.json"
PATIENT = "lung1-371"  # a small tumour: its maps take seconds


@pytest.fixture(scope="module", autouse=True)
def _from_the_root():
    """The finetune config takes the pretrain one's values by `%bundles/...` macros: run from the root."""
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    yield
    mp.undo()


def parsed(config: str, **values):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / config))
    for key, value in values.items():
        parser[key] = value
    parser.parse()
    return parser


def training_chain(config: str, maps_cache_dir: Path):
    """(chain, recorded preprocessing settings, map statistics) of a training run of ``config``."""
    from monai.transforms import Compose

    from voxsurv.inference.bundle_info import PREPROCESSING_KEYS
    from voxsurv.maps.normalise import MapStatistics
    from voxsurv.training.run_record import _plain

    parser = parsed(config, maps_cache_dir=str(maps_cache_dir))  # where maps are kept, not what they are
    features = parser.get_parsed_content("features")
    statistics = MapStatistics.load(STATISTICS).select(features)
    volume = parser.get_parsed_content("volume_preprocessing")
    stack = parser.get_parsed_content("stack_preprocessing")(map_statistics=statistics)
    # what the run writes to run_settings.json (only these entries: evaluating all would start a run)
    recorded = {k: _plain(parser.get_parsed_content(f"run_settings#{k}"))
                for k in parser["run_settings"] if k in (*PREPROCESSING_KEYS, "features")}
    return Compose([volume, stack]), recorded, statistics


def inference_chain(config: str, recorded: dict, statistics):
    """The `preprocessing` of an inference config, with the info packaging writes for that run."""
    from voxsurv.inference.packaging import inference_preprocessing

    info = SimpleNamespace(preprocessing=inference_preprocessing(recorded), features=recorded["features"],
                           statistics=lambda: statistics)
    return parsed(config, info=info).get_parsed_content("preprocessing")


def described(chain) -> str:
    """The stack cache's description of a chain (class names + settings), as JSON: NaN equals NaN."""
    import json

    from voxsurv.training.stack_cache import describe_transform

    return json.dumps(describe_transform(chain), sort_keys=True, default=str, indent=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return {config: training_chain(config, tmp_path_factory.mktemp("maps")) for config in TRAINING}


@pytest.mark.parametrize("training", TRAINING)
def test_finetune_trains_on_the_pretrain_chain(trained, training):
    chain, recorded, _ = trained[training]
    reference, reference_recorded, _ = trained[TRAINING[0]]
    assert described(chain) == described(reference)
    assert recorded == reference_recorded
    assert recorded["features"], "the shipped model_info.json names the maps"


@pytest.mark.parametrize("training", TRAINING)
@pytest.mark.parametrize("inference", INFERENCE)
def test_inference_builds_the_training_chain(trained, training, inference):
    """Classes, keys and every setting of every transform (cache folders aside)."""
    chain, recorded, statistics = trained[training]
    assert described(inference_chain(inference, recorded, statistics)) == described(chain)


def test_a_setting_training_does_not_record_is_caught(trained):
    """The comparison above can fail: a training chain with another HU window (a setting
    run_settings.json does not record, so inference falls back to the default) differs."""
    from monai.transforms import Compose

    chain, recorded, statistics = trained[TRAINING[0]]
    parser = parsed(TRAINING[0])
    wider = parser.get_parsed_content("stack_preprocessing")(map_statistics=statistics, hu_window=(400.0, 40.0))
    changed = Compose([chain.transforms[0], wider])
    assert described(inference_chain(INFERENCE[0], recorded, statistics)) != described(changed)


def test_training_and_inference_give_the_same_network_input(trained, lung_crops):
    """One real patient through both chains: the same tensor, bit for bit."""
    chain, recorded, statistics = trained[TRAINING[0]]
    patient = {"image": str(lung_crops / "images" / f"{PATIENT}_ct.nii.gz"),
               "mask": str(lung_crops / "images" / f"{PATIENT}_gtv.nii.gz"), "patient_id": PATIENT}
    a = chain(dict(patient))
    b = inference_chain(INFERENCE[0], recorded, statistics)(dict(patient))
    assert a["image"].shape[0] == 2 + len(recorded["features"])
    assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
    assert torch.equal(torch.as_tensor(a["descriptors"]), torch.as_tensor(b["descriptors"]))
