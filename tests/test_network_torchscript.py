"""Issue 12 acceptance (network part): the model zoo's verify_torchscript SCRIPTS the network through
`monai.bundle ckpt_export` (no --use_trace). torch.jit.script works for VisionMambaSurv (mean and
attention pooling, anchored or not) and SurvivalEnsemble and equals eager within 1e-5 on CPU; the
scripted scan (selective_scan_graph) equals the training path (the autograd Function)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from networks import SurvivalEnsemble, VisionMambaSurv
from networks.selective_scan import selective_scan, selective_scan_graph

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(in_channels=3, img_size=16, stem_widths=(8, 8), embed_dim=16, depth=2)
ANCHOR = dict(coef=[0.7, -0.2], mean=[2.0, -30.0], scale=[1.0, 45.0])


def make_net(seed=0, **kw):
    torch.manual_seed(seed)
    net = VisionMambaSurv(**{**SMALL, **kw})
    if net.n_descriptors:
        net.set_anchor(**ANCHOR)
    return net


def stacks(n=3, slices=2, seed=1):
    return torch.rand(n, 3, 16, 16, slices, generator=torch.Generator().manual_seed(seed)) - 0.5


def descriptors(n=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.rand(n, generator=g) * 4, torch.randn(n, generator=g) * 50], 1)


def test_scripted_scan_equals_the_training_path():
    """selective_scan_graph (what torch.jit.script compiles) vs the autograd Function (training)."""
    g = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 6, 4, 37

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    args = [r(b, d, length), r(b, d, length) * 0.5, -torch.rand(d, n, generator=g, dtype=torch.float64) - 0.5,
            r(b, n, length), r(b, n, length), r(d), r(b, d, length), r(d)]
    train_args = [a.clone().requires_grad_(True) for a in args]
    trained = selective_scan(*train_args, delta_softplus=True)
    assert trained.grad_fn is not None and "SelectiveScanFunction" in type(trained.grad_fn).__name__
    scripted = torch.jit.script(selective_scan_graph)
    for chunk in (0, 1, 5, 64):
        out = scripted(*args, True, chunk)
        assert (out - trained.detach()).abs().max() <= 1e-10, chunk
    bare = scripted(args[0], args[1].abs(), args[2], args[3], args[4], None, None, None, False, 0)
    with torch.no_grad():
        ref = selective_scan(args[0], args[1].abs(), args[2], args[3], args[4])
    assert (bare - ref).abs().max() <= 1e-10


@pytest.mark.parametrize("pooling,n_descriptors", [("mean", 0), ("attention", 0), ("mean", 2),
                                                   ("attention", 2)])
def test_script_equals_eager(pooling, n_descriptors):
    net = make_net(pooling=pooling, n_descriptors=n_descriptors).eval()
    scripted = torch.jit.script(net)
    d = descriptors()
    for x in (stacks(slices=3), stacks(n=2, slices=1)[..., 0]):
        dx = d[: x.shape[0]]
        # eager with gradients enabled runs the training path (autograd Function scan)
        eager = net(x, dx)
        assert (scripted(x, dx) - eager.detach()).abs().max() <= 1e-5
    assert (scripted.image_risk(x) - net.image_risk(x).detach()).abs().max() <= 1e-5
    assert (scripted.anchor_offset(d) - net.anchor_offset(d)).abs().max() <= 1e-5
    if n_descriptors:  # the image alone: the image risk, as in eager mode
        x = stacks()
        assert (scripted(x) - net.image_risk(x).detach()).abs().max() <= 1e-5


def test_saved_script_module_reloads_and_takes_any_stack_size(tmp_path):
    net = make_net(pooling="attention", n_descriptors=2).eval()
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    loaded = torch.jit.load(str(path))
    for n, slices in ((1, 5), (4, 2)):
        x, d = stacks(n=n, slices=slices, seed=n), descriptors(n=n)
        with torch.no_grad():
            assert (loaded(x, d) - net(x, d)).abs().max() <= 1e-5


def test_script_ensemble_equals_eager():
    members = [make_net(seed, pooling="attention", n_descriptors=2) for seed in range(3)]
    ensemble = SurvivalEnsemble.from_members(members).eval()
    scripted = torch.jit.script(ensemble)
    x, d = stacks(), descriptors()
    with torch.no_grad():
        assert (scripted(x, d) - ensemble(x, d)).abs().max() <= 1e-5
        assert (scripted.image_risk(x) - ensemble.image_risk(x)).abs().max() <= 1e-5
        assert (scripted.anchor_offset(d) - ensemble.anchor_offset(d)).abs().max() <= 1e-5


def test_monai_bundle_ckpt_export_scripts_the_network(tmp_path):
    """`python -m monai.bundle ckpt_export` without --use_trace, as the zoo's verify_torchscript runs
    it, on a bundle-like folder holding an ensemble (the shipped form); ckpt_export does not put the
    bundle root on sys.path, so the repository goes on PYTHONPATH (FIELD_NOTES.md)."""
    member = {"_target_": "networks.VisionMambaSurv", "in_channels": 3, "img_size": 16,
              "stem_widths": [8, 8], "embed_dim": 16, "depth": 2, "pooling": "attention"}
    config = {"network_def": {"_target_": "networks.SurvivalEnsemble", "member": member, "n_members": 2}}
    (tmp_path / "configs").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "configs" / "inference.json").write_text(json.dumps(config))
    (tmp_path / "configs" / "metadata.json").write_text(json.dumps({"version": "0.0.1"}))
    net = SurvivalEnsemble.from_members([make_net(0, pooling="attention"), make_net(1, pooling="attention")])
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def",
         "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt",
         "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json",
         "--bundle_root", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    exported = torch.jit.load(str(tmp_path / "models" / "model.ts"))
    x = stacks(slices=4)
    net.eval()
    with torch.no_grad():
        assert (exported(x) - net(x)).abs().max() <= 1e-5
