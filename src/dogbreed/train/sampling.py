"""Deterministic, resumable, rank-sharded batches.

Epoch ``e`` shuffles with a generator seeded by ``(seed, e)``, so a resumed job sees the same
order; each rank takes an interleaved shard; ``skip_batches`` starts an epoch mid-way.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one rank; a trailing batch of one is folded into the one
    before it (BatchNorm cannot train on a single image)."""

    def __init__(
        self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.skip_batches = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch = epoch
        self.skip_batches = skip_batches

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        # Pad so every rank gets the same number of samples (DDP needs equal step counts).
        per_rank = -(-self.size // self.world_size)
        order += order[: per_rank * self.world_size - self.size]
        shard = order[self.rank :: self.world_size]
        batches = [shard[i : i + self.batch_size] for i in range(0, len(shard), self.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2].extend(batches.pop())
        return batches

    def total_batches(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.skip_batches :]

    def __len__(self) -> int:
        return self.total_batches() - self.skip_batches
