"""The loss of every training step, kept on the device until the engine reads it.

A training step that calls ``.item()`` or ``float(loss)`` waits for the accelerator to finish
before the host can queue the next step (on a GPU the step is launch-bound). So the
engine hands each step's total and terms to :meth:`LossTracker.update`, which only queues
device work: running sums of the terms and, through ``torch.where``, a record of the FIRST step
whose loss was not finite (its number, total and terms). :meth:`LossTracker.check` and
:meth:`LossTracker.read` bring everything to the host at once; the engine calls them every
``--log_frequency`` steps and before every save, so a run that diverged stops there, naming the
first bad step, and the weights after it are never saved. Under torchrun the bad step is
all-reduced (the earliest over all processes) only when read.

Until that read the run goes on, so a bad step must not poison the weights (NaN weights make
later steps NaN too, and some CPU kernels crash on NaN coordinates):
:func:`skip_update_if_not_finite` makes the fused AdamW step a no-op on the device for it.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional

import torch
import torch.distributed as dist

from .distributed import all_reduce

NO_BAD_STEP = 2 ** 62  # "every step so far was finite"; a MIN over processes keeps the first


def skip_update_if_not_finite(optimizers: Iterable[torch.optim.Optimizer], total: torch.Tensor,
                              world: int, scaler: torch.amp.GradScaler) -> None:
    """Make the next ``step()`` of each fused optimiser skip its update if ``total`` is not finite
    on any process (all processes skip together: their gradients are averaged).

    Sets ``found_inf``, the 0-dim flag GradScaler hands to fused optimisers: the AdamW kernel
    leaves parameters, moments and step count unchanged when it is 1 and updates bit-identically
    when it is 0, without a host read. With ``--amp fp16`` the enabled GradScaler sets it from the
    gradients itself. Non-fused optimisers (e.g. on MPS) are left alone.
    """
    if scaler.is_enabled():
        return
    bad = all_reduce((~torch.isfinite(total.detach())).float(), world, dist.ReduceOp.MAX)
    for optimizer in optimizers:
        if optimizer.defaults.get("fused"):
            optimizer.found_inf = bad


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps the last good checkpoint."""


class LossTracker:
    """Device-side running sums of the loss terms and the first non-finite step.

    Args:
        world: the number of processes (the bad step is all-reduced over them when read).

    Attributes:
        losses: the total loss of every step read so far, in step order (host floats).
    """

    def __init__(self, world: int = 1) -> None:
        self.world = world
        self.losses: List[float] = []
        self.names: List[str] = []  # "loss", then the criterion's terms in its order
        self._pending: List[torch.Tensor] = []  # totals of the steps not read yet
        self._sum: Optional[torch.Tensor] = None  # (1 + terms,) since the last read()
        self._count = 0
        self._bad_step: Optional[torch.Tensor] = None  # () int64, NO_BAD_STEP while finite
        self._bad_values: Optional[torch.Tensor] = None  # (1 + terms,) of that step

    def update(self, step: int, total: torch.Tensor, terms: Mapping[str, torch.Tensor]) -> None:
        """Add step ``step``'s scalar ``total`` and ``terms``; queues device work only."""
        values = torch.stack([total.detach(), *(t.detach() for t in terms.values())]).float()
        if self._sum is None:
            self.names = ["loss", *terms]
            self._sum = torch.zeros_like(values)
            self._bad_values = torch.zeros_like(values)
            self._bad_step = torch.full((), NO_BAD_STEP, dtype=torch.int64, device=values.device)
        self._sum += values
        self._count += 1
        self._pending.append(values[0])
        first_bad = ~torch.isfinite(values).all() & (self._bad_step == NO_BAD_STEP)
        self._bad_step = torch.where(first_bad, step, self._bad_step)
        self._bad_values = torch.where(first_bad, values, self._bad_values)

    def check(self) -> None:
        """Raise if a step so far was not finite (on any process); else move the pending totals
        to :attr:`losses`. One host synchronisation; every process must call it together.

        Raises:
            TrainingDiverged: ``step <n>: non-finite loss <total> (<term>=<value>, ...);
                stopping`` for the first bad step.
        """
        if self._bad_step is None:
            return
        first = int(all_reduce(self._bad_step.clone(), self.world, dist.ReduceOp.MIN))
        if first != NO_BAD_STEP:
            if int(self._bad_step) != first:  # another process went first
                raise TrainingDiverged(f"step {first}: non-finite loss on another process; "
                                       "stopping")
            total, *terms = self._bad_values.tolist()
            listing = ", ".join(f"{k}={v:.6g}" for k, v in zip(self.names[1:], terms))
            raise TrainingDiverged(f"step {first}: non-finite loss {total:.6g} ({listing}); "
                                   "stopping")
        if self._pending:
            self.losses.extend(torch.stack(self._pending).tolist())
            self._pending.clear()

    def read(self) -> Dict[str, float]:
        """:meth:`check`, then the mean of each term over the steps since the last read
        (``{"loss": ..., "photometric": ..., ...}``; empty when no step was added)."""
        self.check()
        if not self._count:
            return {}
        means = (self._sum / self._count).tolist()
        self._sum.zero_()
        self._count = 0
        return dict(zip(self.names, means))
