#!/usr/bin/env bash
# Device check for issue 4 (one command, < 5 min on one GPU):
#   1. the torch selective scan on CUDA equals the same scan on CPU (float64 and float32; output
#      and all 8 input gradients);
#   2. if mamba-ssm imports there, its CUDA selective_scan_fn equals the torch scan;
#   3. VisionMambaSurv (if MONAI imports) gives the same risk on CUDA as on CPU, with the backend
#      'auto' chose, and a CUDA training-step time.
# Usage (repository root):  bash scripts/device_check_net.sh   [PYTHON=... to pick the interpreter]
# Writes device_check_net.json to $OUT (if set) or the current directory; exit status 1 on mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 290 "$PY" - "${OUT:-.}/device_check_net.json" <<'PYEOF'
import json, sys, time
import torch

from networks.selective_scan import selective_scan

out_path = sys.argv[1]
report = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "checks": {}, "ok": True}
if not torch.cuda.is_available():
    report["ok"] = False
    report["error"] = "no CUDA device visible"
    print(json.dumps(report, indent=2)); json.dump(report, open(out_path, "w"), indent=2)
    sys.exit(1)
report["device"] = torch.cuda.get_device_name(0)
dev = torch.device("cuda")
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def inputs(b, d, L, n=16, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(d, generator=g, dtype=torch.float64) * 4.6 - 6.9)  # 0.001..0.1
    t = [torch.randn(b, d, L, generator=g, dtype=torch.float64),
         0.1 * torch.randn(b, d, L, generator=g, dtype=torch.float64),
         -torch.arange(1, n + 1, dtype=torch.float64).repeat(d, 1),
         torch.randn(b, n, L, generator=g, dtype=torch.float64),
         torch.randn(b, n, L, generator=g, dtype=torch.float64),
         torch.ones(d, dtype=torch.float64),
         torch.randn(b, d, L, generator=g, dtype=torch.float64),
         dt + torch.log(-torch.expm1(-dt))]
    return [x.to(device=device, dtype=dtype).requires_grad_(True) for x in t]


def run(fn, xs, seed=1):
    out = fn(*xs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64).to(out)
    grads = torch.autograd.grad(out, xs, g)
    return [out.detach()] + [x.detach() for x in grads]


def ours(*xs):
    return selective_scan(*xs, delta_softplus=True)


def rel_diff(a_list, b_list):
    return max(((a.double().cpu() - b.double().cpu()).abs().max()
                / b.double().abs().max().clamp_min(1e-30)).item() for a, b in zip(a_list, b_list))


def timed(fn, xs, reps=5):
    run(fn, xs); torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        run(fn, xs)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


ok = True
for (L, d) in ((145, 256), (576, 192)):
    key = f"scan_L{L}_d{d}"
    cpu64 = run(ours, inputs(4, d, L))
    cuda64 = run(ours, inputs(4, d, L, device=dev))
    cuda32 = run(ours, inputs(4, d, L, dtype=torch.float32, device=dev))
    r = {"cuda_f64_vs_cpu_f64_rel": rel_diff(cuda64, cpu64),
         "cuda_f32_vs_cpu_f64_rel": rel_diff(cuda32, cpu64),
         "torch_scan_cuda_f32_fwd_bwd_s_batch16": timed(ours, inputs(16, d, L, dtype=torch.float32, device=dev))}
    r["ok"] = r["cuda_f64_vs_cpu_f64_rel"] < 1e-10 and r["cuda_f32_vs_cpu_f64_rel"] < 1e-4
    ok &= r["ok"]
    report["checks"][key] = r
    print(key, r, flush=True)

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
except Exception as exc:  # not installed, or its CUDA extension fails to load
    report["checks"]["mamba_ssm"] = f"not importable: {type(exc).__name__}: {exc}"
    selective_scan_fn = None
if selective_scan_fn is not None:
    def theirs(*xs):
        return selective_scan_fn(*xs, delta_softplus=True)
    for (L, d) in ((145, 256), (576, 192)):
        key = f"mamba_ssm_L{L}_d{d}"
        ref = run(ours, inputs(4, d, L, device=dev))
        got = run(theirs, inputs(4, d, L, dtype=torch.float32, device=dev))
        r = {"mamba_ssm_f32_vs_torch_f64_rel": rel_diff(got, ref),
             "mamba_ssm_fwd_bwd_s_batch16": timed(theirs, inputs(16, d, L, dtype=torch.float32, device=dev))}
        r["ok"] = r["mamba_ssm_f32_vs_torch_f64_rel"] < 1e-3
        ok &= r["ok"]
        report["checks"][key] = r
        print(key, r, flush=True)

try:
    from networks import VisionMambaSurv
    torch.manual_seed(0)
    net = VisionMambaSurv(in_channels=10, img_size=96, embed_dim=128, depth=8).eval()  # paper size
    x = torch.randn(4, 10, 96, 96)
    with torch.no_grad():
        cpu_risk = net(x)
        net_cuda = net.to(dev)
        cuda_risk = net_cuda(x.to(dev)).cpu()
    r = {"risk_cuda_vs_cpu_abs": (cuda_risk - cpu_risk).abs().max().item(),
         "backend": net_cuda.blocks[0].mixer.active_backend}
    net_cuda.train()
    opt = torch.optim.AdamW(net_cuda.parameters(), 1e-4)
    xb = torch.randn(16, 10, 96, 96, device=dev)
    for i in range(4):
        if i == 1:
            torch.cuda.synchronize(); t0 = time.perf_counter()
        opt.zero_grad(); net_cuda(xb).pow(2).mean().backward(); opt.step()
    torch.cuda.synchronize()
    r["train_step_s_batch16"] = (time.perf_counter() - t0) / 3
    r["ok"] = r["risk_cuda_vs_cpu_abs"] < 1e-3
    ok &= r["ok"]
    report["checks"]["network"] = r
    print("network", r, flush=True)
except ImportError as exc:
    report["checks"]["network"] = f"skipped: {exc}"

report["ok"] = bool(ok)
json.dump(report, open(out_path, "w"), indent=2)
print(json.dumps(report, indent=2))
sys.exit(0 if ok else 1)
PYEOF
