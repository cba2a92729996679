"""Data-parallel training under ``torchrun --nproc_per_node N``: process group, collectives, DDP.

Each process trains on its shard of every epoch (:mod:`litemono.data.sampling`) with
``--batch_size`` samples, DistributedDataParallel averages the gradients, and rank 0 alone logs
and writes checkpoints. With one process (plain ``python train.py``) every helper here is a
no-op, so the engine calls them unconditionally.
"""
from __future__ import annotations

import os
from typing import Iterable, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .device import resolve_device


def setup_process(device_name: str) -> Tuple[int, int, torch.device]:
    """``(rank, world size, device)``; joins the torchrun process group when WORLD_SIZE > 1.

    Args:
        device_name: ``--device`` (:func:`litemono.device.resolve_device`); under torchrun a
            CUDA device becomes ``cuda:<LOCAL_RANK>``, one GPU per process.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def all_reduce(values: torch.Tensor, world: int,
               op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
    """``values`` reduced in place over all processes (returned as is with one process)."""
    if world > 1:
        dist.all_reduce(values, op=op)
    return values


def broadcast_buffers(modules: Iterable[nn.Module], world: int) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process."""
    if world > 1:
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


def barrier(world: int) -> None:
    """Wait for every process (after rank 0 wrote a checkpoint the others may read)."""
    if world > 1:
        dist.barrier()


def wrap_ddp(module: nn.Module, device: torch.device, world: int) -> nn.Module:
    """``module`` in DistributedDataParallel when ``world > 1`` (else itself).

    ``find_unused_parameters``: the pose ResNet's ``fc`` layer, kept for upstream's key layout,
    gets no gradient.
    """
    if world == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                               find_unused_parameters=True)
