"""Lite-Mono's learning-rate schedule: cosine annealing with warm restarts, stepped per epoch.

Each AdamW optimiser gets cosine restarts (``T_0`` epochs, ``T_mul`` 1, no warm-up, peak x 0.9
per restart), stepped at each epoch start, also before the first, so epoch 0 already trains at
9.976e-5, not 1e-4 (tests/test_schedule.py). :func:`cosine_restart_lr` is a function of the
epoch; :class:`EpochLRSchedule`'s saved state is just the epoch."""
from __future__ import annotations

import math
from typing import Any, Dict

import torch

# Peak multiplier per completed cycle (upstream's ``gamma``).
RESTART_DECAY = 0.9


def cosine_restart_lr(epoch: int, peak: float, floor: float, cycle: float,
                      decay: float = RESTART_DECAY) -> float:
    """Upstream's learning rate for 0-based ``epoch``: ``peak`` / ``floor`` / ``cycle`` (epochs,
    truncated to int) from ``--lr``; ``decay`` per completed cycle."""
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
    """Sets every group's learning rate from :func:`cosine_restart_lr` at each epoch start."""

    def __init__(self, optimizer: torch.optim.Optimizer, peak: float, floor: float,
                 cycle: float) -> None:
        self.optimizer = optimizer
        self.peak, self.floor, self.cycle = float(peak), float(floor), float(cycle)
        self.epoch = -1

    def set_epoch(self, epoch: int) -> float:
        """Apply the rate of ``epoch`` to every parameter group and return it."""
        lr = cosine_restart_lr(epoch, self.peak, self.floor, self.cycle)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.epoch = epoch
        return lr

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "peak": self.peak, "floor": self.floor, "cycle": self.cycle}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a saved schedule; the optimiser's rate follows the saved epoch."""
        self.peak, self.floor, self.cycle = state["peak"], state["floor"], state["cycle"]
        self.epoch = state["epoch"]
        if self.epoch >= 0:
            self.set_epoch(self.epoch)


def build_schedules(depth_optimizer: torch.optim.Optimizer, pose_optimizer: torch.optim.Optimizer,
                    lr_params: tuple) -> Dict[str, EpochLRSchedule]:
    """``{"depth", "pose"}`` schedules from ``--lr``'s six numbers
    (:func:`litemono.config.lr_schedule_params`)."""
    return {"depth": EpochLRSchedule(depth_optimizer, *lr_params[0:3]),
            "pose": EpochLRSchedule(pose_optimizer, *lr_params[3:6])}
