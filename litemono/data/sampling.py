"""The order and randomness of training items, reproducible across interruptions.

:class:`ResumableSampler` draws each epoch's permutation from (seed, epoch) and can start
mid-epoch; :class:`SeededItems` seeds python / numpy / torch from (seed, epoch, position, rank)
per item, so augmentation depends neither on worker count nor on where a run was interrupted."""
from __future__ import annotations

import random
from typing import Any, Iterator, List

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 32-bit seed that depends on every part (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class ResumableSampler(torch.utils.data.Sampler):
    """Each epoch's order from (``seed``, epoch), sharded over ranks, optionally resumed.

    Yields ``(epoch, position, index)`` for :class:`SeededItems` (``position``: this rank's count);
    each rank gets ``len(dataset) // world_size`` items, like a drop-last ``DistributedSampler``.
    ``shuffle`` False: dataset order (validation)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from this rank's item ``start`` on."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.size // self.world_size - self.start

    def __iter__(self) -> Iterator[tuple]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        per_rank = self.size // self.world_size
        shard: List[int] = order[self.rank::self.world_size][:per_rank]  # rank r: r, r+W, ...
        for position in range(self.start, per_rank):
            yield self.epoch, position, shard[position]


class SeededItems(torch.utils.data.Dataset):
    """Wraps a dataset: item ``(epoch, position, index)`` is ``dataset[index]`` drawn with all
    global generators seeded from (seed, epoch, position, rank); the caller's generator states are
    restored afterwards, so fetching never disturbs the training randomness."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int, rank: int = 0) -> None:
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple) -> Any:
        epoch, position, index = key
        # datasets draw on the CPU generators only: the CUDA ones are left alone
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        item_seed = derive_seed(self.seed, epoch, position, self.rank)
        random.seed(item_seed)
        np.random.seed(item_seed)
        torch.default_generator.manual_seed(item_seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
