"""Rank awareness for the bundle helpers: who writes, who waits, and how progress is printed.

Under DDP (torchrun) every rank runs the same config; files that must exist once (demo cohort,
pre-trained weights, predictions, reports) are written by rank 0 while the others wait at a barrier.
Without a process group everything behaves as rank 0.
"""

from __future__ import annotations


def distributed_ready() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def is_rank0() -> bool:
    import torch.distributed as dist

    return not distributed_ready() or dist.get_rank() == 0


def barrier() -> None:
    import torch.distributed as dist

    if distributed_ready():
        dist.barrier()


def say(message: str) -> None:
    """Progress line for the user of the main command (stdout, flushed; the rank under DDP)."""
    import torch.distributed as dist

    rank = f" rank {dist.get_rank()}" if distributed_ready() else ""
    print(f"[voxsurv{rank}] {message}", flush=True)


def unwrap(network):
    """The module inside a DistributedDataParallel / DataParallel wrapper (else `network`)."""
    return getattr(network, "module", network)
