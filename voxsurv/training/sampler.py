"""A batch sampler whose every batch holds at least one event.

Why: the Cox partial likelihood of a mini-batch without any event is zero (no risk set to
compare against), so such a batch teaches nothing and wastes a step.

Each epoch the indices (patients) are shuffled (seeded by `seed + epoch`) and cut into batches;
with `even_sizes` the ceil(n / batch_size) batches get sizes that differ by at most one (96 patients
at batch 64 -> 48 + 48, not 64 + 32: a Cox risk set of 32 is a much noisier step). A batch
without an event swaps one of its members with an event from a batch that has two or more
(every index is still used exactly once); only when no batch can spare one is an event index
repeated. Under DDP each rank takes every `num_replicas`-th batch, after padding the batch list
by repetition so all ranks run the same number of steps. The epoch advances on every `__iter__`
(or explicitly with `set_epoch`), identically on all ranks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class EventBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; every list contains >= 1 index whose `events[i]` is 1.

    Args:
        events: per-sample event indicator (0 censored, 1 event), one per dataset item.
        batch_size: samples per batch (the largest batch with `even_sizes`).
        shuffle: reshuffle every epoch (False keeps dataset order, still fixing event-less batches).
        seed: base seed; epoch e uses `seed + e`.
        drop_last: drop a final batch smaller than `batch_size` (only without `even_sizes`).
        even_sizes: spread the samples over ceil(n / batch_size) batches of (nearly) equal size.
        num_replicas, rank: DDP partition (default: torch.distributed's, or 1 and 0).
    """

    def __init__(self, events: Sequence[int], batch_size: int = 16, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, num_replicas: int | None = None, rank: int | None = None,
                 even_sizes: bool = False) -> None:
        self.events = np.asarray(events, dtype=int).reshape(-1)
        if len(self.events) == 0:
            raise ValueError("EventBatchSampler got no samples")
        if not self.events.any():
            raise ValueError("EventBatchSampler: no sample has an event (all censored); a Cox loss cannot "
                             "learn from this data")
        if num_replicas is None or rank is None:
            import torch.distributed as dist

            ready = dist.is_available() and dist.is_initialized()
            num_replicas = dist.get_world_size() if ready and num_replicas is None else (num_replicas or 1)
            rank = dist.get_rank() if ready and rank is None else (rank or 0)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.shuffle, self.seed, self.drop_last = int(batch_size), shuffle, int(seed), drop_last
        self.even_sizes = bool(even_sizes)
        self.num_replicas, self.rank, self.epoch = int(num_replicas), int(rank), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.events)) if self.shuffle else np.arange(len(self.events))
        if self.even_sizes:
            batches = [list(part) for part in np.array_split(order, self._n_batches())]
        else:
            batches = [list(order[i:i + self.batch_size]) for i in range(0, len(order), self.batch_size)]
        if self.drop_last and not self.even_sizes and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        ev = self.events
        for b in batches:
            if ev[b].any():
                continue
            donor = next((d for d in batches if ev[d].sum() >= 2), None)
            if donor is not None:
                j = next(k for k, idx in enumerate(donor) if ev[idx])
                donor[j], b[0] = b[0], donor[j]
            else:
                b[0] = int(rng.choice(np.flatnonzero(ev)))
        if self.num_replicas > 1:
            while len(batches) % self.num_replicas:
                batches.append(batches[len(batches) % max(1, len(batches))])
        return [[int(i) for i in b] for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()[self.rank::self.num_replicas]
        self.epoch += 1
        return iter(batches)

    def _n_batches(self) -> int:
        if self.drop_last and not self.even_sizes:
            return max(len(self.events) // self.batch_size, 1)
        return max(-(-len(self.events) // self.batch_size), 1)

    def __len__(self) -> int:
        return -(-self._n_batches() // self.num_replicas)
