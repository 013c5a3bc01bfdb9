"""Issue 4 acceptance: the CPU selective scan equals a plain sequential recurrence (outputs and
all input gradients), in float64 to 1e-10 and float32 to 1e-4 relative, and passes gradcheck."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from networks.selective_scan import default_chunk_size, selective_scan

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def plain_recurrence(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Mamba's S6 recurrence written out step by step; autograd gives the reference gradients."""
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d_inner, length = u.shape
    h = torch.zeros(batch, d_inner, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A[None]) * h + dt * B[:, None, :, t] * u[:, :, t, None]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[None, :, None] * u
    if z is not None:
        y = y * z * torch.sigmoid(z)
    return y


def make_inputs(batch, d_inner, length, d_state, dtype=torch.float64, seed=0, with_D=True,
                with_z=True, with_bias=True, delta_scale=0.5):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    inputs = {
        "u": r(batch, d_inner, length),
        "delta": r(batch, d_inner, length) * delta_scale,
        # Mamba's S4D-real init, A = -(1..n), plus noise so every entry differs
        "A": -(torch.arange(1, d_state + 1, dtype=dtype).repeat(d_inner, 1)
               + torch.rand(d_inner, d_state, generator=g, dtype=dtype)) * 0.5,
        "B": r(batch, d_state, length),
        "C": r(batch, d_state, length),
        "D": r(d_inner) if with_D else None,
        "z": r(batch, d_inner, length) if with_z else None,
        "delta_bias": r(d_inner) if with_bias else None,
    }
    for v in inputs.values():
        if v is not None:
            v.requires_grad_(True)
    return inputs


def outputs_and_grads(fn, inputs, softplus, seed=1, **kw):
    out = fn(**inputs, delta_softplus=softplus, **kw)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64).to(out.dtype)
    present = [k for k in NAMES if inputs[k] is not None]
    grads = torch.autograd.grad(out, [inputs[k] for k in present], g)
    return out, dict(zip(present, grads))


CASES = [
    # batch, d_inner, L, d_state, chunk, D, z, bias, softplus
    (2, 5, 37, 4, None, True, True, True, True),
    (1, 3, 1, 2, None, True, True, True, True),  # single step
    (3, 4, 16, 3, 4, True, True, True, True),  # L a multiple of the chunk
    (2, 6, 23, 5, 1, False, False, False, False),  # bare recurrence, chunk of one step
    (2, 4, 50, 16, 7, True, False, True, True),
    (1, 8, 145, 16, 32, False, True, False, True),  # Vim's 145 tokens
]


@pytest.mark.parametrize("batch,d_inner,length,d_state,chunk,with_D,with_z,with_bias,softplus", CASES)
def test_float64_outputs_and_all_gradients_match_plain_recurrence(
        batch, d_inner, length, d_state, chunk, with_D, with_z, with_bias, softplus):
    inputs = make_inputs(batch, d_inner, length, d_state, with_D=with_D, with_z=with_z,
                         with_bias=with_bias)
    if not softplus:  # Mamba's delta is positive; a negative one makes exp(delta A) grow
        inputs["delta"] = inputs["delta"].detach().abs().requires_grad_(True)
    ref_out, ref_grads = outputs_and_grads(plain_recurrence, inputs, softplus)
    out, grads = outputs_and_grads(selective_scan, inputs, softplus, chunk_size=chunk)
    assert torch.allclose(out, ref_out, rtol=0, atol=1e-10), (out - ref_out).abs().max()
    assert set(grads) == set(ref_grads)
    for name in ref_grads:
        err = (grads[name] - ref_grads[name]).abs().max().item()
        assert err <= 1e-10, f"d{name}: max abs diff {err}"


def test_parameter_gradients_are_skipped_and_activation_gradients_unchanged_when_parameters_are_frozen(
        monkeypatch):
    """Grad-CAM differentiates activations only: with A, D and delta_bias not requiring grad the
    backward skips their gradients (returns None) and gives exactly the same u, delta, B, C, z
    gradients as the full backward."""
    from networks.selective_scan import SelectiveScanFunction

    full = make_inputs(2, 5, 37, 4, dtype=torch.float32)
    _, ref = outputs_and_grads(selective_scan, full, True, chunk_size=8)
    returned = {}
    real_backward = SelectiveScanFunction.backward

    def recording_backward(ctx, dout):
        result = real_backward(ctx, dout)
        returned.update(dA=result[2], dD=result[5], ddelta_bias=result[7])
        return result

    monkeypatch.setattr(SelectiveScanFunction, "backward", staticmethod(recording_backward))
    frozen = {k: (v.detach() if k in ("A", "D", "delta_bias") else v) for k, v in full.items()}
    out = selective_scan(**frozen, delta_softplus=True, chunk_size=8)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
    wanted = ("u", "delta", "B", "C", "z")
    grads = torch.autograd.grad(out, [frozen[k] for k in wanted], g)
    for name, grad in zip(wanted, grads):
        assert torch.equal(grad, ref[name]), f"d{name} changed"
    assert returned == {"dA": None, "dD": None, "ddelta_bias": None}


@pytest.mark.parametrize("seed", range(4))
def test_random_shapes_match_plain_recurrence(seed):
    g = torch.Generator().manual_seed(100 + seed)
    batch, d_inner, length, d_state = (int(torch.randint(lo, hi, (1,), generator=g))
                                       for lo, hi in ((1, 4), (1, 9), (1, 70), (1, 17)))
    chunk = int(torch.randint(1, 40, (1,), generator=g))
    inputs = make_inputs(batch, d_inner, length, d_state, seed=seed)
    ref_out, ref_grads = outputs_and_grads(plain_recurrence, inputs, True)
    out, grads = outputs_and_grads(selective_scan, inputs, True, chunk_size=chunk)
    assert (out - ref_out).abs().max() <= 1e-10
    for name in ref_grads:
        assert (grads[name] - ref_grads[name]).abs().max() <= 1e-10, name


def test_float32_within_1e4_relative_of_float64():
    inputs64 = make_inputs(4, 16, 145, 16)
    inputs32 = {k: (v.detach().float().requires_grad_(True) if v is not None else None)
                for k, v in inputs64.items()}
    ref_out, ref_grads = outputs_and_grads(plain_recurrence, inputs64, True)
    out, grads = outputs_and_grads(selective_scan, inputs32, True)
    assert out.dtype == torch.float32
    scale = ref_out.abs().max()
    assert ((out.double() - ref_out).abs().max() / scale) <= 1e-4
    for name in ref_grads:
        rel = (grads[name].double() - ref_grads[name]).abs().max() / ref_grads[name].abs().max()
        assert rel <= 1e-4, f"d{name}: relative error {rel.item()}"


def test_gradcheck_small():
    inputs = make_inputs(2, 3, 9, 2, seed=3)
    args = [inputs[k] for k in NAMES]

    def fn(*a):
        return selective_scan(*a, delta_softplus=True, chunk_size=4)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7)


def test_softplus_threshold_region_has_unit_slope():
    """F.softplus returns x for x > 20; the hand-written backward must agree there too."""
    inputs = make_inputs(1, 3, 6, 2, delta_scale=0.0)
    with torch.no_grad():
        inputs["delta"].fill_(0.0)
        inputs["delta"][0, 0, :3] = 21.0
        inputs["A"].mul_(0.01)
    ref_out, ref_grads = outputs_and_grads(plain_recurrence, inputs, True)
    out, grads = outputs_and_grads(selective_scan, inputs, True)
    assert (out - ref_out).abs().max() <= 1e-10
    assert (grads["delta"] - ref_grads["delta"]).abs().max() <= 1e-10


def test_no_grad_and_traced_paths_equal_autograd_path():
    inputs = make_inputs(2, 4, 33, 3, dtype=torch.float32)
    train_out = selective_scan(**inputs, delta_softplus=True, chunk_size=8)
    with torch.no_grad():
        eval_out = selective_scan(**inputs, delta_softplus=True, chunk_size=8)
    detached = {k: v.detach() for k, v in inputs.items()}

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, True, 8)

    traced = torch.jit.trace(fn, tuple(detached[k] for k in NAMES))
    traced_out = traced(*(detached[k] for k in NAMES))
    assert torch.equal(train_out.detach(), eval_out)
    assert (traced_out - eval_out).abs().max() <= 1e-6


def test_chunk_size_keeps_working_set_small():
    assert default_chunk_size(16, 192, 16) * 16 * 192 * 16 <= 1 << 19
    assert 4 <= default_chunk_size(1, 1, 1) <= 32


def test_bad_shapes_raise_clear_errors():
    inputs = make_inputs(2, 3, 5, 2)
    bad = dict(inputs, B=inputs["B"][:, :, :4])
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**bad)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(**dict(inputs, A=inputs["A"][:2]))
