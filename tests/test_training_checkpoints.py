"""Weights on disk for the bundles: pre-trained weights load as one network or as the
SurvivalEnsemble the study ships (detected from the state dict), strictly, with an error that
names the settings to change; saved files are plain state dicts readable by everyone."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from voxsurv.core.errors import InputError
from voxsurv.training.checkpoints import ensemble_size, load_weights, read_state_dict, save_network


def _net(**kw):
    from networks import VisionMambaSurv

    args = dict(in_channels=4, img_size=16, embed_dim=16, depth=2)
    args.update(kw)
    return VisionMambaSurv(**args)


def test_an_ensemble_checkpoint_gives_an_ensemble_with_its_members(tmp_path):
    from networks import SurvivalEnsemble

    torch.manual_seed(0)
    members = [_net() for _ in range(3)]
    shipped = SurvivalEnsemble.from_members(members)
    save_network(shipped, tmp_path / "ensemble.pt")
    assert ensemble_size(read_state_dict(tmp_path / "ensemble.pt")) == 3
    loaded = load_weights(_net(), tmp_path / "ensemble.pt")
    assert isinstance(loaded, SurvivalEnsemble)
    x = torch.rand(2, 4, 16, 16, 3)
    shipped.eval(), loaded.eval()
    with torch.no_grad():
        expected = torch.stack([m.eval()(x) for m in members]).mean(0)
        assert torch.allclose(loaded(x), expected, atol=1e-6)
    assert stat.S_IMODE(os.stat(tmp_path / "ensemble.pt").st_mode) == 0o644


def test_a_single_network_and_a_full_state_checkpoint_load_into_the_network_itself(tmp_path):
    torch.manual_seed(1)
    source = _net()
    torch.save({"model": source.state_dict(), "optimizer": {}}, tmp_path / "checkpoint_epoch=3.pt")
    target = _net()
    loaded = load_weights(target, tmp_path / "checkpoint_epoch=3.pt")
    assert loaded is target
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))


def test_weights_of_another_network_are_refused_with_the_settings_to_change(tmp_path):
    save_network(_net(in_channels=3), tmp_path / "old.pt")
    with pytest.raises(InputError, match="do not fit the configured network") as info:
        load_weights(_net(in_channels=4), tmp_path / "old.pt")
    assert "img_size" in str(info.value) and str(tmp_path / "old.pt") in str(info.value)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_weights(_net(), tmp_path / "missing.pt")
