"""Lite-Mono's learning-rate schedule: cosine annealing with warm restarts, stepped per epoch.

Lite-Mono (Zhang et al., "Lite-Mono: A Lightweight CNN and Transformer Architecture for
Self-Supervised Monocular Depth Estimation", CVPR 2023) gives each of its two AdamW optimisers a
cosine schedule with warm restarts (cycle ``T_0`` epochs, ``T_mul`` 1, no warm-up) whose peak is
multiplied by 0.9 at every restart, and steps it once at the start of every epoch. Because the
scheduler is stepped before the first epoch trains, the cosine is already one epoch in at epoch
0: the depth networks train at 9.976e-5, not 1e-4 (``tests/test_schedule.py`` holds upstream's
values per epoch).

Here the schedule is a plain function of the epoch, :func:`cosine_restart_lr`, and
:class:`EpochLRSchedule` applies it to an optimiser; its saved state is just the epoch.
"""
from __future__ import annotations

import math
from typing import Any, Dict

import torch

# Peak multiplier per completed cycle (upstream's ``gamma``).
RESTART_DECAY = 0.9


def cosine_restart_lr(epoch: int, peak: float, floor: float, cycle: float,
                      decay: float = RESTART_DECAY) -> float:
    """Learning rate that upstream's scheduler gives to (0-based) ``epoch``.

    Args:
        epoch: the epoch about to be trained, counted from 0.
        peak: the learning rate of the first cycle's start (``--lr`` first / fourth number).
        floor: the minimum learning rate (``--lr`` second / fifth number).
        cycle: cycle length in epochs (``--lr`` third / sixth number; truncated to an int as
            upstream does).
        decay: peak multiplier per completed cycle.

    Returns:
        The learning rate for that epoch.
    """
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    period = int(cycle)
    if period < 1:
        raise ValueError(f"--lr cycle length must be >= 1 epoch, got {cycle}")
    # upstream steps its scheduler once before epoch 0 trains: position e + 1 of the schedule
    position = epoch + 1
    cycle_peak = peak * decay ** (position // period)
    phase = (position % period) / period
    return floor + (cycle_peak - floor) * (1.0 + math.cos(math.pi * phase)) / 2.0


class EpochLRSchedule:
    """Sets an optimiser's learning rate from :func:`cosine_restart_lr` at each epoch start.

    Args:
        optimizer: every parameter group gets the same rate.
        peak, floor, cycle: as in :func:`cosine_restart_lr`.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, peak: float, floor: float,
                 cycle: float) -> None:
        self.optimizer = optimizer
        self.peak, self.floor, self.cycle = float(peak), float(floor), float(cycle)
        self.epoch = -1

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (does not change the optimiser)."""
        return cosine_restart_lr(epoch, self.peak, self.floor, self.cycle)

    def set_epoch(self, epoch: int) -> float:
        """Apply the rate of ``epoch`` to every parameter group and return it."""
        lr = self.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.epoch = epoch
        return lr

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "peak": self.peak, "floor": self.floor, "cycle": self.cycle}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a saved schedule; the optimiser's rate follows the saved epoch."""
        self.peak, self.floor, self.cycle = state["peak"], state["floor"], state["cycle"]
        if state["epoch"] >= 0:
            self.set_epoch(state["epoch"])
        else:
            self.epoch = -1


def build_schedules(depth_optimizer: torch.optim.Optimizer, pose_optimizer: torch.optim.Optimizer,
                    lr_params: tuple) -> Dict[str, EpochLRSchedule]:
    """One schedule per optimiser from ``--lr``'s six numbers.

    Args:
        lr_params: (depth peak, depth floor, depth cycle, pose peak, pose floor, pose cycle), as
            :func:`litemono.config.lr_schedule_params` expands ``--lr``.

    Returns:
        ``{"depth": schedule, "pose": schedule}``.
    """
    depth = EpochLRSchedule(depth_optimizer, *lr_params[0:3])
    pose = EpochLRSchedule(pose_optimizer, *lr_params[3:6])
    return {"depth": depth, "pose": pose}
