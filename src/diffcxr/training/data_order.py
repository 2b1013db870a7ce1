"""Deterministic data order: the batches of epoch ``e`` are a permutation seeded by ``(seed, e)``, split across
processes, so a resumed or re-sharded run sees the same samples in the same order."""

from __future__ import annotations

import hashlib

import torch

__all__ = ["epoch_permutation", "rank_batches", "mix_seeds"]


def mix_seeds(*numbers: int) -> int:
    digest = hashlib.sha256(":".join(str(int(n)) for n in numbers).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The data order of one epoch: a permutation of ``range(n)`` that depends only on ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(mix_seeds(seed, epoch, 0x5EED))
    return torch.randperm(n, generator=g).tolist()


def rank_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    perm = epoch_permutation(n, seed, epoch)
    shard = perm[rank::world][: max(1, n // world)]
    while len(shard) < batch_size:  # tiny datasets: wrap around
        shard = shard + shard
    return [shard[i:i + batch_size] for i in range(0, len(shard) - batch_size + 1, batch_size)]
