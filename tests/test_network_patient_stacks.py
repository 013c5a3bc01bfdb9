"""Issue 11 acceptance (network): one risk per PATIENT from a (B, C, H, W, S) slice stack; mean pooling
equals the mean of per-slice risks, gated attention
pooling (Ilse et al. 2018) is a real, permutation-invariant pooling; the anchored variant adds a
fixed Cox offset that no gradient reaches."""

from __future__ import annotations


import pytest
import torch

from networks import VisionMambaSurv, network_from_state_dict
from voxsurv.stats.cox_loss import CoxPartialLikelihoodLoss

SMALL = dict(in_channels=3, img_size=16, stem_widths=(8, 8), embed_dim=16, depth=2)

def make_net(seed=0, **kw):
    torch.manual_seed(seed)
    return VisionMambaSurv(**{**SMALL, **kw})


def stacks(n=3, slices=4, seed=1, channels=3, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, slices, generator=g) - 0.5


def test_mean_pooling_equals_mean_of_slice_risks_per_patient():
    net = make_net(dropout=0.3).eval()
    x = stacks(n=3, slices=4)
    with torch.no_grad():
        risk = net(x)
        slice_risks = torch.stack([net(x[..., s]) for s in range(4)], -1)  # (3, 1, 4)
    assert risk.shape == (3, 1)
    assert (risk - slice_risks.mean(-1)).abs().max() <= 1e-6
    # patients are not mixed: different patients get different risks, each its own mean
    assert risk.unique().numel() == 3


def test_four_d_input_is_one_slice_per_patient():
    net = make_net().eval()
    x = stacks(n=2, slices=1)
    with torch.no_grad():
        assert torch.equal(net(x), net(x[..., 0]))


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_patient_risk_ignores_slice_order_and_other_patients(pooling):
    net = make_net(pooling=pooling).eval()
    with torch.no_grad():
        net.head.pool.apply(lambda m: m.weight.mul_(50) if isinstance(m, torch.nn.Linear) else None)
    x = stacks(n=3, slices=5)
    with torch.no_grad():
        risk = net(x)
        shuffled = net(x[..., torch.tensor([3, 0, 4, 1, 2])])
        y = x.clone()
        y[1:] = torch.rand_like(y[1:])
        other = net(y)
    assert (risk - shuffled).abs().max() <= 1e-6  # a bag of slices: order does not matter
    assert (risk[0] - other[0]).abs().max() <= 1e-6  # patient 0 unaffected by patients 1-2
    assert (risk[1:] - other[1:]).abs().max() > 1e-4


def test_attention_pooling_starts_near_mean_pooling():
    """At initialisation (trunc-normal 0.02 weights) the attention is near uniform: an untrained
    attention network ranks patients like the mean-pooled one."""
    net = make_net(pooling="attention").eval()
    x = stacks(n=2, slices=6)
    with torch.no_grad():
        emb = net.slice_embeddings(x)
        w = net.head.pool.weights(emb)
        assert torch.allclose(net(x), net.head.fc(emb.mean(1)), atol=1e-3)
    assert emb.shape == (2, 6, 16) and w.shape == (2, 6)
    assert torch.allclose(w.sum(1), torch.ones(2), atol=1e-6)
    assert (w - 1 / 6).abs().max() < 0.01


def test_gated_attention_pooling_is_a_weighted_mean_that_can_select_slices():
    """Ilse et al. 2018 eq. 9 written out, and a strongly trained attention picks one slice."""
    from networks.slice_pooling import GatedAttentionPooling

    torch.manual_seed(0)
    pool = GatedAttentionPooling(embed_dim=8, attention_dim=4)
    emb = torch.randn(2, 5, 8)
    with torch.no_grad():
        gated = torch.tanh(emb @ pool.attention_v.weight.T + pool.attention_v.bias) * \
            torch.sigmoid(emb @ pool.attention_u.weight.T + pool.attention_u.bias)
        a = torch.softmax((gated @ pool.attention_w.weight.T + pool.attention_w.bias)[..., 0], 1)
        assert torch.allclose(pool.weights(emb), a, atol=1e-6)
        assert torch.allclose(pool(emb), (a[..., None] * emb).sum(1), atol=1e-6)
        for m in (pool.attention_v, pool.attention_u, pool.attention_w):
            m.weight.mul_(30)
        w = pool.weights(emb)
    assert torch.allclose(w.sum(1), torch.ones(2), atol=1e-6)
    assert w.max() > 0.9  # (near) one slice carries the patient


def test_attention_pooling_trains_end_to_end():
    net = make_net(pooling="attention").train()
    x = stacks(n=6, slices=3)
    label = torch.stack([torch.arange(1.0, 7.0), torch.ones(6)], 1)
    CoxPartialLikelihoodLoss()(net(x), label).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.head.pool.attention_w.weight.grad.abs().sum() > 0


def test_bad_pooling_and_empty_stack_raise():
    with pytest.raises(ValueError, match="pooling must be one of"):
        make_net(pooling="max")
    with pytest.raises(ValueError, match="at least one slice"):
        make_net()(torch.rand(2, 3, 16, 16, 0))


# ---- anchored variant ----------------------------------------------------------------------------
ANCHOR = dict(coef=[0.8, -0.5], mean=[3.0, -20.0], scale=[1.2, 40.0])


def anchored_net(seed=0, pooling="mean"):
    net = make_net(seed, pooling=pooling, n_descriptors=2)
    net.set_anchor(**ANCHOR)
    return net


def descriptors(n=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(n, generator=g) * 4, torch.randn(n, generator=g) * 50], 1)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_anchored_risk_is_anchor_offset_plus_image_risk(pooling):
    net = anchored_net(pooling=pooling).eval()
    x, d = stacks(), descriptors()
    with torch.no_grad():
        risk = net(x, d)
        offset = net.anchor_offset(d)
        image = net.image_risk(x)
    coef, mean, scale = (torch.tensor(ANCHOR[k]) for k in ("coef", "mean", "scale"))
    expected_offset = (((d - mean) / scale) * coef).sum(1, keepdim=True)
    assert (offset - expected_offset).abs().max() <= 1e-6
    assert (risk - offset - image).abs().max() <= 1e-6
    assert offset.abs().max() > 0.1  # the anchor is really in the risk


def test_no_gradient_reaches_the_anchor():
    net = anchored_net().train()
    anchor_before = {k: v.clone() for k, v in net.anchor.state_dict().items()}
    assert set(anchor_before) == {"coef", "mean", "scale"}
    names = {name for name, _ in net.named_parameters()}
    assert not any(name.startswith("anchor.") for name in names)  # buffers: no optimiser sees them
    x, d = stacks(n=6), descriptors(n=6).requires_grad_(True)
    label = torch.stack([torch.arange(1.0, 7.0), torch.ones(6)], 1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.05)
    loss = CoxPartialLikelihoodLoss()(net(x, d), label)
    loss.backward()
    opt.step()
    assert d.grad is None  # the offset is detached: nothing flows into or through it
    for k, v in net.anchor.state_dict().items():
        assert torch.equal(v, anchor_before[k]), k
    assert net.stem.conv1.conv.weight.grad.abs().sum() > 0  # the image part did learn


def test_anchored_network_needs_descriptors_and_checks_the_anchor():
    net = anchored_net()
    with pytest.raises(ValueError, match="anchored .*descriptors"):
        net(stacks())
    with pytest.raises(ValueError, match=r"descriptors must be \(batch, 2\)"):
        net(stacks(), torch.rand(3, 3))
    with pytest.raises(ValueError, match="needs 2 values"):
        net.set_anchor([1.0], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="scale must be > 0"):
        net.set_anchor([1.0, 1.0], [0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="non-finite"):
        net.set_anchor([float("nan"), 1.0], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="no anchor"):
        make_net().set_anchor([1.0], [0.0], [1.0])


def test_unanchored_network_ignores_descriptors_and_has_zero_offset():
    net = make_net().eval()
    x, d = stacks(), descriptors()
    with torch.no_grad():
        assert torch.equal(net(x, d), net(x))
        assert torch.equal(net.anchor_offset(d), torch.zeros(3, 1))
    assert not any(k.startswith("anchor.") for k in net.state_dict())


def test_state_dict_carries_pooling_and_anchor(tmp_path):
    net = anchored_net(pooling="attention").eval()
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    kwargs = VisionMambaSurv.kwargs_from_state_dict(state)
    assert kwargs == {**SMALL, "stem_widths": [8, 8], "d_state": 16, "d_conv": 4, "expand": 2,
                      "pooling": "attention", "attention_dim": 16, "n_descriptors": 2}
    rebuilt = network_from_state_dict(state).eval()
    x, d = stacks(), descriptors()
    with torch.no_grad():
        assert torch.equal(rebuilt(x, d), net(x, d))
