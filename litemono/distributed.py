"""Data-parallel training under ``torchrun --nproc_per_node N``: process group, collectives, DDP.

Each process trains its shard with ``--batch_size`` samples, DDP averages gradients, rank 0
alone logs and writes. With one process every helper is a no-op."""
from __future__ import annotations

import os
from typing import Iterable, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .device import resolve_device


def setup_process(device_name: str) -> Tuple[int, int, torch.device]:
    """``(rank, world size, device)``, joining the process group when WORLD_SIZE > 1; under
    torchrun CUDA becomes ``cuda:<LOCAL_RANK>``."""
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
    """``module`` in DDP when ``world > 1``; ``find_unused_parameters`` for the pose ResNet's
    ``fc``."""
    if world == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
