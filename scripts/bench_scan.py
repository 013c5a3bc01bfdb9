#!/usr/bin/env python
"""Benchmark the CPU selective scan and the default VisionMambaSurv training step (issue 4).

Forward + backward, one thread, batch 16, d_state 16, for (L, d_inner) in (64,128), (145,256),
(576,192): voxsurv's chunked scan, the naive autograd loop (mamba-ssm's reference recurrence,
skipped when its predicted time exceeds --naive-limit), and mambapy's parallel scan when
installed (``pip install mambapy``, the ``bench`` extra). Exactness: float64 outputs and all input
gradients of each method against the naive loop, on batch 2 of the same shape.
Then one training step of the paper-size network (batch 16, 10 x 96 x 96, width 128, depth 8,
AdamW, Cox loss) and an epoch-equivalent of 2,000 slices. Patient stacks at the issue-11 size:
scripts/bench_network.py.

    python scripts/bench_scan.py --json bench_scan.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from networks.selective_scan import selective_scan, selective_scan_ref

SHAPES = ((64, 128), (145, 256), (576, 192))
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def mambapy_scan():
    """mambapy's pscan wrapped to the same recurrence (delta bias, softplus, D skip, z gate)."""
    try:
        from mambapy.pscan import pscan
    except ImportError:
        return None

    def scan(u, delta, A, B, C, D, z, delta_bias):
        x = u.transpose(1, 2)  # (b, L, d)
        dt = F.softplus(delta + delta_bias[:, None]).transpose(1, 2)
        decay = torch.exp(dt.unsqueeze(-1) * A)
        drive = (dt * x).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(2)
        hs = pscan(decay, drive)  # (b, L, d, n)
        y = (hs @ C.transpose(1, 2).unsqueeze(-1)).squeeze(-1) + D * x
        return (y * F.silu(z.transpose(1, 2))).transpose(1, 2)

    return scan


def ours(u, delta, A, B, C, D, z, delta_bias):
    return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)


def naive(u, delta, A, B, C, D, z, delta_bias):
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)


def make_inputs(batch, d_inner, length, d_state=16, dtype=torch.float32, seed=0):
    """Inputs at Mamba's initialisation scales (A = -(1..N), dt bias ~ softplus^-1(0.001..0.1))."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(d_inner, generator=g, dtype=torch.float64)
                   * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(0.001)))
                   + torch.log(torch.tensor(0.001)))
    t = {
        "u": torch.randn(batch, d_inner, length, generator=g, dtype=torch.float64),
        "delta": 0.1 * torch.randn(batch, d_inner, length, generator=g, dtype=torch.float64),
        "A": -torch.arange(1, d_state + 1, dtype=torch.float64).repeat(d_inner, 1),
        "B": torch.randn(batch, d_state, length, generator=g, dtype=torch.float64),
        "C": torch.randn(batch, d_state, length, generator=g, dtype=torch.float64),
        "D": torch.ones(d_inner, dtype=torch.float64),
        "z": torch.randn(batch, d_inner, length, generator=g, dtype=torch.float64),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),
    }
    return [t[k].to(dtype).requires_grad_(True) for k in NAMES]


def fwd_bwd(fn, inputs, grad_out=None):
    for x in inputs:
        x.grad = None
    out = fn(*inputs)
    out.backward(grad_out if grad_out is not None else torch.ones_like(out))
    return out


def time_fwd_bwd(fn, inputs, repeats):
    """(wall, cpu) seconds, minimum over repeats. With one thread, process CPU time is what the
    scan itself used, which stays meaningful when other jobs share the machine."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fwd_bwd(fn, inputs)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def max_abs_diff_f64(fn, length, d_inner, batch=2):
    """Largest |difference| over the output and all 8 input gradients vs the naive float64 loop."""
    ref_in, test_in = make_inputs(batch, d_inner, length, dtype=torch.float64), \
        make_inputs(batch, d_inner, length, dtype=torch.float64)
    g = torch.randn(batch, d_inner, length, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    ref_out = fwd_bwd(naive, ref_in, g)
    out = fwd_bwd(fn, test_in, g)
    diffs = [(out - ref_out).abs().max().item()]
    diffs += [(a.grad - b.grad).abs().max().item() for a, b in zip(test_in, ref_in)]
    return max(diffs)


def bench_scans(repeats, naive_limit, log):
    mp = mambapy_scan()
    rows = []
    # The naive loop's backward materialises a full-size zero gradient for every per-step slice,
    # so its time grows like L^2 * d_inner: predict from the last run before starting a long one.
    naive_rate = None
    for length, d_inner in SHAPES:
        row = {"L": length, "d_inner": d_inner, "batch": 16, "d_state": 16, "seconds": {},
               "cpu_seconds": {}, "max_abs_diff_f64": {}}
        inputs = make_inputs(16, d_inner, length)
        fwd_bwd(ours, inputs)  # warm-up
        row["seconds"]["voxsurv"], row["cpu_seconds"]["voxsurv"] = time_fwd_bwd(ours, inputs, repeats)
        if mp is not None:
            fwd_bwd(mp, inputs)
            row["seconds"]["mambapy"], row["cpu_seconds"]["mambapy"] = time_fwd_bwd(mp, inputs,
                                                                                    repeats)
        predicted = naive_rate * length ** 2 * d_inner if naive_rate else 0.0
        if predicted <= naive_limit:
            row["seconds"]["naive"], row["cpu_seconds"]["naive"] = time_fwd_bwd(naive, inputs, 1)
            naive_rate = row["seconds"]["naive"] / (length ** 2 * d_inner)
        else:
            row["seconds"]["naive"] = row["cpu_seconds"]["naive"] = None
            row["naive_note"] = (f"skipped: predicted {predicted:.0f} s > --naive-limit "
                                 f"{naive_limit:.0f} s (from the previous shape's rate)")
        s = row["seconds"]
        row["speedup_vs_mambapy"] = s["mambapy"] / s["voxsurv"] if s.get("mambapy") else None
        row["speedup_vs_naive"] = s["naive"] / s["voxsurv"] if s["naive"] else None
        c = row["cpu_seconds"]
        row["cpu_speedup_vs_mambapy"] = c["mambapy"] / c["voxsurv"] if c.get("mambapy") else None
        row["cpu_speedup_vs_naive"] = c["naive"] / c["voxsurv"] if c["naive"] else None
        row["max_abs_diff_f64"]["voxsurv"] = max_abs_diff_f64(ours, length, d_inner)
        if mp is not None:
            row["max_abs_diff_f64"]["mambapy"] = max_abs_diff_f64(mp, length, d_inner)
        log(json.dumps(row))
        rows.append(row)
    return rows


def bench_network(steps, log):
    from networks import VisionMambaSurv
    from voxsurv.stats.cox_loss import CoxPartialLikelihoodLoss

    torch.manual_seed(0)
    # the paper-size network this benchmark has always timed (the constructor defaults are now
    # the issue-11 size, 48 px / width 64 / depth 4: scripts/bench_network.py times that one)
    net = VisionMambaSurv(in_channels=10, img_size=96, embed_dim=128, depth=8, scan_backend="torch").train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = CoxPartialLikelihoodLoss()
    x = torch.randn(16, 10, 96, 96)
    label = torch.stack([torch.rand(16) * 1000, (torch.arange(16) % 3 != 0).float()], 1)
    times, cpu_times = [], []
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), label)
        loss.backward()
        opt.step()
        if i:  # first step is warm-up
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    step = statistics.median(times)
    result = {
        "parameters": sum(p.numel() for p in net.parameters()),
        "input": [16, 10, 96, 96],
        "train_step_seconds_median": step,
        "train_step_seconds_all": times,
        "train_step_cpu_seconds_median": statistics.median(cpu_times),
        "epoch_2000_slices_seconds_estimate": step * 2000 / 16,
    }
    log(json.dumps(result))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", required=True, help="output JSON path")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (minimum is kept)")
    p.add_argument("--naive-limit", type=float, default=150.0,
                   help="skip the naive loop when its predicted time exceeds this (s)")
    p.add_argument("--net-steps", type=int, default=5, help="timed training steps")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    load_before = os.getloadavg()
    started = time.time()
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "loadavg_start": load_before},
        "scan": bench_scans(args.repeats, args.naive_limit, log),
        "network": bench_network(args.net_steps, log),
    }
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["machine"]["wall_seconds"] = time.time() - started
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=2)
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
