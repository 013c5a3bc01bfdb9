"""Issue 11 acceptance (shipped model = ensemble): SurvivalEnsemble is the mean of its members' risks,
n identical members equal one member, one state dict (one file) round-trips, members can come as
modules or state dicts, freeze/image_risk/anchor_offset act over members, and a bundle config can
build it."""

from __future__ import annotations

import pytest
import torch

from networks import SurvivalEnsemble, VisionMambaSurv, network_from_state_dict

SMALL = dict(in_channels=3, img_size=16, stem_widths=(8, 8), embed_dim=16, depth=2)


def make_net(seed=0, **kw):
    torch.manual_seed(seed)
    return VisionMambaSurv(**{**SMALL, **kw})


def stacks(n=3, slices=2, seed=1):
    return torch.rand(n, 3, 16, 16, slices, generator=torch.Generator().manual_seed(seed)) - 0.5


def descriptors(n=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(n, generator=g) * 4, torch.randn(n, generator=g) * 50], 1)


@pytest.mark.parametrize("n_members", [1, 3])
def test_identical_members_equal_one_member(n_members):
    member = make_net(pooling="attention", n_descriptors=2)
    member.set_anchor([0.7, -0.2], [2.0, -30.0], [1.0, 45.0])
    member.eval()
    ensemble = SurvivalEnsemble(member, n_members).eval()
    x, d = stacks(), descriptors()
    with torch.no_grad():
        assert (ensemble(x, d) - member(x, d)).abs().max() <= 1e-6
        assert (ensemble.image_risk(x) - member.image_risk(x)).abs().max() <= 1e-6
        assert (ensemble.anchor_offset(d) - member.anchor_offset(d)).abs().max() <= 1e-6
    assert ensemble.members[0] is not member  # deep copies
    assert ensemble.members[0].stem.conv1.conv.weight is not member.stem.conv1.conv.weight


def test_ensemble_risk_is_the_mean_of_member_risks_with_their_own_anchors():
    members = []
    for seed, coef in ((0, [0.5, 0.0]), (1, [0.0, -0.4]), (2, [0.3, 0.3])):
        m = make_net(seed, n_descriptors=2)
        m.set_anchor(coef, [2.0, -30.0], [1.0, 45.0])
        members.append(m.eval())
    ensemble = SurvivalEnsemble.from_members(members).eval()
    x, d = stacks(), descriptors()
    with torch.no_grad():
        expected = torch.stack([m(x, d) for m in members]).mean(0)
        risk = ensemble(x, d)
        assert (risk - expected).abs().max() <= 1e-6
        assert (risk - ensemble.anchor_offset(d) - ensemble.image_risk(x)).abs().max() <= 1e-6
        spread = torch.stack([m(x, d) for m in members]).std(0).max()
    assert spread > 1e-3  # the members really differ, so the mean is a real test


def test_one_state_dict_round_trips_through_one_file(tmp_path):
    members = [make_net(seed, pooling="attention").state_dict() for seed in range(3)]
    ensemble = SurvivalEnsemble.from_members(members).eval()  # state dicts only: rebuilt
    path = tmp_path / "model.pt"
    torch.save(ensemble.state_dict(), path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert {k.split(".")[1] for k in state} == {"0", "1", "2"}
    rebuilt = network_from_state_dict(state).eval()
    assert isinstance(rebuilt, SurvivalEnsemble) and rebuilt.n_members == 3
    same = SurvivalEnsemble(make_net(9, pooling="attention"), 3)
    same.load_state_dict(state, strict=True)  # what a bundle's CheckpointLoader does
    same.eval()
    x = stacks()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), ensemble(x))
        assert torch.equal(same(x), ensemble(x))
    # a MONAI checkpoint {"model": state} is accepted too
    assert isinstance(network_from_state_dict({"model": state}), SurvivalEnsemble)


def test_from_members_mixes_modules_and_state_dicts_and_rejects_other_architectures():
    a, b = make_net(0), make_net(1)
    ensemble = SurvivalEnsemble.from_members([a, b.state_dict()]).eval()
    x = stacks()
    with torch.no_grad():
        assert torch.equal(ensemble.members[1](x), b.eval()(x))
    with pytest.raises(ValueError, match="member 1 does not match"):
        SurvivalEnsemble.from_members([a, make_net(0, pooling="attention")])
    with pytest.raises(ValueError, match="at least one member"):
        SurvivalEnsemble.from_members([])
    with pytest.raises(ValueError, match="n_members must be >= 1"):
        SurvivalEnsemble(a, 0)


def test_freeze_acts_on_every_member_and_returns_the_names():
    ensemble = SurvivalEnsemble(make_net(), 2)
    names = ensemble.freeze(stem=True, blocks=1)
    assert names == ["members.0.stem", "members.0.tokens", "members.0.blocks.0",
                     "members.1.stem", "members.1.tokens", "members.1.blocks.0"]
    ensemble.train()
    for m in ensemble.members:
        assert not m.stem.conv1.adn.N.training  # frozen BatchNorm stays in eval
        assert not m.blocks[0].mixer.in_proj.weight.requires_grad
        assert m.blocks[1].mixer.in_proj.weight.requires_grad
    trainable = {id(p) for p in ensemble.trainable_parameters()}
    assert id(ensemble.members[1].head.fc.weight) in trainable
    assert id(ensemble.members[1].stem.conv1.conv.weight) not in trainable


def test_bundle_config_builds_an_ensemble():
    from monai.bundle import ConfigParser

    parser = ConfigParser({
        "member": {"_target_": "networks.VisionMambaSurv", "in_channels": 3, "img_size": 16,
                   "embed_dim": 16, "depth": 1, "pooling": "attention"},
        "network_def": {"_target_": "networks.SurvivalEnsemble", "member": "@member", "n_members": 4},
    })
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, SurvivalEnsemble) and len(net.members) == 4
    assert net(stacks()).shape == (3, 1)
