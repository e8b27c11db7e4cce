"""Endless, seeded, shardable streams of sample indices.

A stream is the concatenation of per-epoch permutations of ``range(n)``, epoch ``e`` drawn
from ``(seed, stream, e)``. Under DDP every rank reads a disjoint shard ``perm[rank::world]``
of each permutation; when ``n`` is not divisible by the world size the permutation is padded
with its own head (as torch's DistributedSampler does), so a few samples repeat in that epoch.
Each drawn sample also gets a *global position* (unique over ranks and epochs) that seeds
its augmentation, so the views depend on (seed, stream, position) only.
"""
from __future__ import annotations

import math

import numpy as np


def sample_seed(seed: int, stream: int, position: int) -> int:
    """A 63-bit seed for the per-sample generator, mixed by numpy's SeedSequence."""
    state = np.random.SeedSequence([int(seed), int(stream), int(position)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 ^ int(state[1])) & ((1 << 63) - 1)


class ShuffledStream:
    """Rank ``rank``'s endless stream of indices into ``n`` items."""

    def __init__(self, n: int, seed: int, stream: int, rank: int = 0, world_size: int = 1):
        if n < 1:
            raise ValueError("a stream needs at least one item")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.seed, self.stream = n, int(seed), int(stream)
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(n / world_size)  # samples per rank per epoch
        self.padded = self.per_rank * world_size
        self._cache: tuple[int, np.ndarray] | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        """The padded permutation of epoch ``epoch`` shared by every rank."""
        perm = np.random.default_rng([self.seed, self.stream, int(epoch)]).permutation(self.n)
        return np.resize(perm, self.padded)  # pads by repeating the head

    def shard(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self.permutation(epoch)[self.rank :: self.world_size])
        return self._cache[1]

    def take(self, start: int, count: int) -> list[tuple[int, int]]:
        """``count`` (index, global position) pairs from local position ``start`` on."""
        out = []
        for q in range(start, start + count):
            epoch, i = divmod(q, self.per_rank)
            index = int(self.shard(epoch)[i])
            out.append((index, epoch * self.padded + i * self.world_size + self.rank))
        return out
