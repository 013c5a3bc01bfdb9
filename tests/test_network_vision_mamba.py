"""Issue 4 acceptance: VisionMambaSurv shapes and size, fine-tuning freeze, fixed-seed determinism,
torch.jit.trace export equal to eager, bidirectional mixing, scan-backend choice.
(Patient stacks, pooling and anchoring: test_network_patient_stacks.py; TorchScript scripting:
test_network_torchscript.py; ensembles: test_network_ensemble.py.)"""

from __future__ import annotations

import copy

import pytest
import torch

from networks import VisionMambaSurv
from networks.mamba_block import BiMambaMixer, resolve_scan_backend
from voxsurv.stats.cox_loss import CoxPartialLikelihoodLoss

SMALL = dict(in_channels=3, img_size=32, stem_widths=(8, 16), embed_dim=32, depth=4)


def make_net(seed=0, **kw):
    torch.manual_seed(seed)
    return VisionMambaSurv(**{**SMALL, **kw})


def batch(n=4, channels=3, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=g)
    label = torch.stack([torch.arange(1.0, n + 1), (torch.arange(n) % 2 == 0).float()], 1)
    return x, label


def test_default_network_shape_and_parameter_count():
    torch.manual_seed(0)
    net = VisionMambaSurv(in_channels=18)  # CT + 16 maps + mask at the issue-11 defaults
    n_params = sum(p.numel() for p in net.parameters())
    print(f"VisionMambaSurv(in_channels=18) parameters: {n_params:,}")
    assert n_params == 205_889  # width 64, depth 4 (docs/network.md quotes this number)
    attention = VisionMambaSurv(in_channels=18, pooling="attention")
    assert sum(p.numel() for p in attention.parameters()) - n_params == 2 * (64 * 64 + 64) + 65
    assert len(net.blocks) == 4 and net.tokens.pos_embed.shape == (1, 37, 64)  # 6 x 6 + class token
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 18, 48, 48, 3))
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    # Mamba's dt bias init survives the Linear re-initialisation (softplus(bias) in [1e-3, 0.1])
    dt = torch.nn.functional.softplus(net.blocks[0].mixer.forward_branch.dt_proj.bias)
    assert dt.min() >= 1e-3 - 1e-6 and dt.max() <= 0.1 + 1e-6


def test_paper_size_network_parameter_count():
    """Vim-tiny-like width 128, depth 8 at 96 px (the first shipped configuration's size)."""
    torch.manual_seed(0)
    net = VisionMambaSurv(in_channels=10, img_size=96, embed_dim=128, depth=8)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == 1_151_617  # docs/network.md quotes this number
    assert net.tokens.pos_embed.shape == (1, 145, 128)


def test_fixed_seed_gives_identical_weights_and_output():
    x, _ = batch()
    a, b = make_net(seed=5), make_net(seed=5)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert not torch.equal(make_net(seed=6).eval()(x).detach(), a(x).detach())


def test_freeze_keeps_stem_and_first_blocks_bit_identical_after_adamw_step():
    net = make_net()
    frozen = net.freeze()  # stem + first depth // 2 blocks
    assert frozen == ["stem", "tokens", "blocks.0", "blocks.1"]
    assert not hasattr(net, "_frozen_modules")  # no bookkeeping beside requires_grad (issue 14)
    before = copy.deepcopy(net.state_dict())
    net.train()
    bn = net.stem.conv1.adn.N
    assert not bn.training, "frozen BatchNorm must stay in eval mode under model.train()"
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.05)
    x, label = batch()
    loss = CoxPartialLikelihoodLoss()(net(x), label)
    loss.backward()
    opt.step()
    after = net.state_dict()
    frozen_prefixes = ("stem.", "tokens.", "blocks.0.", "blocks.1.")
    for name, value in before.items():
        if name.startswith(frozen_prefixes):
            assert torch.equal(value, after[name]), f"frozen {name} changed"
    assert not torch.equal(before["blocks.2.mixer.in_proj.weight"], after["blocks.2.mixer.in_proj.weight"])
    assert not torch.equal(before["head.fc.weight"], after["head.fc.weight"])
    trainable = {id(p) for p in net.trainable_parameters()}
    assert id(net.blocks[3].mixer.out_proj.weight) in trainable
    assert id(net.blocks[1].mixer.out_proj.weight) not in trainable
    assert id(net.stem.conv1.conv.weight) not in trainable
    assert net.freeze(stem=False, blocks=0) == []
    assert sum(1 for _ in net.trainable_parameters()) == sum(1 for _ in net.parameters())
    net.train()
    assert bn.training


def test_freeze_survives_a_deep_copy_and_a_reload():
    """Frozen state lives in requires_grad only: a copy keeps its frozen BatchNorm in eval mode."""
    net = make_net()
    net.freeze(stem=True, blocks=1)
    clone = copy.deepcopy(net).train()
    assert not clone.stem.conv2.adn.N.training and not clone.blocks[0].mixer.in_proj.weight.requires_grad
    assert clone.blocks[1].mixer.in_proj.weight.requires_grad
    with pytest.raises(ValueError, match="blocks must be in"):
        net.freeze(blocks=5)


def test_torch_jit_trace_matches_eager(tmp_path):
    net = make_net().eval()
    x, _ = batch(n=2)
    with torch.no_grad():
        eager = net(x)
        traced = torch.jit.trace(net, x, check_trace=False)
    path = tmp_path / "model.ts"
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert (loaded(x) - eager).abs().max() <= 1e-5
        x2, _ = batch(n=3, seed=9)  # new input, other batch size (H, W fixed by the trace)
        assert (loaded(x2) - net(x2)).abs().max() <= 1e-5


def test_monai_torchscript_export_with_trace_verifies():
    """What `monai.bundle ckpt_export --use_trace True` runs (scripting cannot handle the scan)."""
    from monai.networks.utils import convert_to_torchscript

    net = make_net()
    x, _ = batch(n=2)
    ts = convert_to_torchscript(net, verify=True, inputs=[x], use_trace=True, rtol=0, atol=1e-5,
                                check_trace=False)  # verify already compares with eager
    with torch.no_grad():
        assert (ts(x) - net.eval()(x)).abs().max() <= 1e-5


def test_mixer_is_bidirectional():
    """The first token's output depends on the last token only through the backward branch."""
    torch.manual_seed(0)
    mixer = BiMambaMixer(d_model=16, d_state=4).eval()
    h = torch.randn(1, 10, 16)
    h2 = h.clone()
    h2[:, -1] += 1.0
    with torch.no_grad():
        delta = (mixer(h2) - mixer(h))[:, 0].abs().max()
    assert delta > 1e-6


def test_training_gradients_reach_every_parameter_and_are_finite():
    net = make_net(drop_path=0.1, dropout=0.1).train()
    x, label = batch()
    CoxPartialLikelihoodLoss()(net(x), label).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.blocks[0].mixer.backward_branch.A_log.grad.abs().sum() > 0


def test_scan_backend_choice():
    assert resolve_scan_backend("auto", "cpu", mamba_ssm_available=True) == "torch"
    assert resolve_scan_backend("auto", "cuda", mamba_ssm_available=False) == "torch"
    assert resolve_scan_backend("auto", "cuda", mamba_ssm_available=True) == "mamba_ssm"
    assert resolve_scan_backend("torch", "cuda", mamba_ssm_available=True) == "torch"
    assert resolve_scan_backend("mamba_ssm", "cuda", mamba_ssm_available=True) == "mamba_ssm"
    with pytest.raises(RuntimeError, match="needs a CUDA input"):
        resolve_scan_backend("mamba_ssm", "cpu", mamba_ssm_available=True)
    with pytest.raises(ValueError):
        resolve_scan_backend("triton", "cpu", mamba_ssm_available=True)
    net = make_net(scan_backend="mamba_ssm")
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        net(batch()[0])
    auto = make_net()
    auto(batch()[0])
    assert {b.mixer.active_backend for b in auto.blocks} == {"torch"}


def test_bundle_target_instantiates():
    from monai.bundle import ConfigParser

    parser = ConfigParser({"network_def": {"_target_": "networks.VisionMambaSurv", "in_channels": 4,
                                           "img_size": 32, "depth": 2, "embed_dim": 32}})
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, VisionMambaSurv) and len(net.blocks) == 2


def test_bad_input_raises():
    net = make_net()
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(2, 5, 32, 32))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match="32x32"):
        net(torch.randn(2, 3, 40, 40))
    with pytest.raises(ValueError, match="divisible by 8"):
        VisionMambaSurv(in_channels=1, img_size=50)


def test_network_learns_a_synthetic_hazard_with_the_cox_loss():
    """Slices whose mean intensity sets the hazard: 20 full-batch AdamW steps must lower the Cox
    loss and rank the training patients far better than chance (integration of net + loss)."""
    g = torch.Generator().manual_seed(0)
    n = 48
    level = torch.randn(n, generator=g)
    x = torch.randn(n, 2, 16, 16, generator=g) * 0.5 + level[:, None, None, None]
    time = -torch.log(torch.rand(n, generator=g)) / torch.exp(level)  # exponential, rate e^level
    event = (torch.rand(n, generator=g) < 0.8).float()
    label = torch.stack([time, event], 1)
    torch.manual_seed(0)
    net = VisionMambaSurv(in_channels=2, img_size=16, stem_widths=(8, 8), embed_dim=16, depth=1)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    loss_fn = CoxPartialLikelihoodLoss()
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(net(x), label)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    with torch.no_grad():
        risk = net(x)[:, 0]
    comparable = (time[None, :] > time[:, None]) & event.bool()[:, None]  # i has the event first
    concordant = (risk[:, None] > risk[None, :]).float() + 0.5 * (risk[:, None] == risk[None, :]).float()
    c_index = (concordant * comparable).sum() / comparable.sum()
    print(f"Cox loss {losses[0]:.3f} -> {losses[-1]:.3f}, training C-index {c_index:.3f}")
    assert losses[-1] < losses[0] - 0.2
    assert c_index > 0.75


def test_metatensor_input_gives_the_same_risk_as_a_plain_tensor():
    """Bundles hand MONAI MetaTensors to the network; the scan must not choke on them."""
    from monai.data import MetaTensor

    torch.manual_seed(0)
    net = VisionMambaSurv(in_channels=2, img_size=16, embed_dim=16, depth=1).eval()
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(MetaTensor(x)), net(x))
