"""Fine-tuning modes freeze what they say, return the frozen module names and leave nothing on
the network object (issue 14: no `_voxsurv_frozen` tag)."""

from __future__ import annotations

import pytest

from voxsurv.training.freezing import freeze_for_finetuning, trainable_parameters


def _net(**kw):
    from networks import VisionMambaSurv

    return VisionMambaSurv(in_channels=3, img_size=16, embed_dim=16, depth=4, **kw)


def _trainable_prefixes(net) -> set[str]:
    return {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks.") else "")
            for n, p in net.named_parameters() if p.requires_grad}


def test_paper_mode_freezes_stem_and_first_half_of_the_blocks():
    net = _net()
    before = set(vars(net))
    frozen = freeze_for_finetuning(net, "paper")
    assert frozen[:4] == ["stem", "tokens", "blocks.0", "blocks.1"]
    assert {"blocks.2", "blocks.3", "head"} <= _trainable_prefixes(net)
    assert not _trainable_prefixes(net) & {"stem", "tokens", "blocks.0", "blocks.1"}
    assert set(vars(net)) == before  # nothing written onto the network object
    net.train()
    assert all(not m.training for m in net.stem.modules() if "BatchNorm" in type(m).__name__)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_head_mode_trains_only_the_final_risk_layer(pooling):
    net = _net(pooling=pooling)
    frozen = freeze_for_finetuning(net, "head")
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    assert sorted(names) == ["head.fc.bias", "head.fc.weight"]
    assert "stem" in frozen and "blocks" in frozen
    assert sum(p.numel() for p in trainable_parameters(net)) == 17  # Linear(16, 1)


def test_none_mode_unfreezes_everything_and_ensembles_freeze_every_member():
    from networks import SurvivalEnsemble

    net = _net()
    freeze_for_finetuning(net, "paper")
    assert freeze_for_finetuning(net, "none") == []
    assert all(p.requires_grad for p in net.parameters())
    ens = SurvivalEnsemble(_net(), 3)
    frozen = freeze_for_finetuning(ens, "paper")
    for i in range(3):
        assert f"members.{i}.stem" in frozen and f"members.{i}.blocks.1" in frozen
        assert f"members.{i}.blocks.2" not in frozen
    with pytest.raises(ValueError, match="finetune mode"):
        freeze_for_finetuning(net, "everything")
