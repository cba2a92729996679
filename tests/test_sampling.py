"""The data order of exact resume: the resumable sampler and the per-item seeds."""
import random

import numpy as np
import torch

from litemono.data.sampling import ResumableSampler, SeededItems, derive_seed


def test_sampler_order_is_a_function_of_seed_and_epoch():
    sampler = ResumableSampler(10, seed=5)
    sampler.set_epoch(2)
    full = list(sampler)
    assert sorted(k[2] for k in full) == list(range(10)) and [k[1] for k in full] == list(range(10))
    sampler.set_epoch(2, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    sampler.set_epoch(3)
    assert [k[2] for k in sampler] != [k[2] for k in full]
    ranks = [ResumableSampler(11, seed=5, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(2)
    shards = [[k[2] for k in r] for r in ranks]
    assert len(shards[0]) == len(shards[1]) == 5 and not set(shards[0]) & set(shards[1])
    permutation = torch.randperm(11, generator=torch.Generator().manual_seed(derive_seed(5, 2)))
    assert shards[0] == permutation.tolist()[0:10:2]


class _RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, index):
        return (index, random.random(), float(np.random.rand()), torch.rand(1).item())


def test_seeded_items_are_reproducible_and_leave_global_rng_alone():
    items = SeededItems(_RandomItems(), seed=0)
    torch.manual_seed(123)
    first = items[(1, 2, 3)]
    after = torch.rand(1)
    torch.manual_seed(999)  # a different global state gives the same item
    assert items[(1, 2, 3)] == first
    assert items[(1, 3, 3)] != first and items[(2, 2, 3)] != first
    torch.manual_seed(123)
    random.seed(7)
    np.random.seed(7)
    items[(0, 0, 0)]
    # fetching consumed none of the caller's generators
    assert torch.equal(torch.rand(1), after)
    assert (random.random(), np.random.rand()) == (random.Random(7).random(),
                                                   np.random.RandomState(7).rand())


def test_item_draws_do_not_depend_on_loader_workers():
    sampler = ResumableSampler(6, seed=4)
    sampler.set_epoch(1)
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(SeededItems(_RandomItems(), seed=4), batch_size=2,
                                             sampler=sampler, num_workers=workers)
        batches.append([b for b in loader])
    for single, multi in zip(*batches):
        assert all(torch.equal(a, b) for a, b in zip(single, multi))
