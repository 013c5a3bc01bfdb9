#!/usr/bin/env python
"""Benchmark one VisionMambaSurv training step on patient stacks (issue 11), one torch thread.

A step = forward + Cox loss + backward + AdamW, on a batch of patients (B, C, H, W, S): by
default 64 patients x 1 and x 4 slices, 48 px, 18 channels (CT + 16 maps + mask), embed 64,
depth 4, for mean and attention pooling. Reports the median over ``--steps`` timed steps after one
warm-up, wall and process CPU time (CPU time is less sensitive to other jobs on a shared machine).

    OMP_NUM_THREADS=1 python scripts/bench_network.py --json bench_network.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch


def bench_case(patients: int, slices: int, pooling: str, channels: int, img_size: int,
               embed_dim: int, depth: int, steps: int) -> dict:
    from networks import VisionMambaSurv
    from voxsurv.stats.cox_loss import CoxPartialLikelihoodLoss

    torch.manual_seed(0)
    net = VisionMambaSurv(in_channels=channels, img_size=img_size, embed_dim=embed_dim, depth=depth,
                          pooling=pooling, dropout=0.1, scan_backend="torch").train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.05)
    loss_fn = CoxPartialLikelihoodLoss()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(patients, channels, img_size, img_size, slices, generator=g) - 0.5
    label = torch.stack([torch.rand(patients, generator=g) * 1000,
                         (torch.arange(patients) % 3 != 0).float()], 1)
    walls, cpus = [], []
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), label)
        loss.backward()
        opt.step()
        if i:  # the first step is warm-up
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    return {"patients": patients, "slices": slices, "pooling": pooling, "channels": channels,
            "img_size": img_size, "embed_dim": embed_dim, "depth": depth,
            "parameters": sum(p.numel() for p in net.parameters()),
            "step_seconds_median": statistics.median(walls), "step_seconds_all": walls,
            "step_cpu_seconds_median": statistics.median(cpus)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="output JSON path")
    p.add_argument("--steps", type=int, default=5, help="timed steps per case (median kept)")
    p.add_argument("--patients", type=int, default=64)
    p.add_argument("--slices", type=int, nargs="+", default=[1, 4])
    p.add_argument("--pooling", nargs="+", default=["mean", "attention"])
    p.add_argument("--channels", type=int, default=18)
    p.add_argument("--img-size", type=int, default=48)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=4)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count(), "torch": torch.__version__,
                          "torch_threads": torch.get_num_threads(),
                          "loadavg_start": os.getloadavg()},
              "cases": []}
    for slices in args.slices:
        for pooling in args.pooling:
            row = bench_case(args.patients, slices, pooling, args.channels, args.img_size,
                             args.embed_dim, args.depth, args.steps)
            print(json.dumps({k: v for k, v in row.items() if k != "step_seconds_all"}), flush=True)
            result["cases"].append(row)
    result["machine"]["loadavg_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
