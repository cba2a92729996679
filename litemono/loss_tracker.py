"""The loss of every training step, kept on the device until the engine reads it.

``.item()`` in the step would make the host wait for the accelerator, so
:meth:`LossTracker.update` only queues device work: running sums of the terms and (via
``torch.where``) the FIRST non-finite step's number, total and terms. :meth:`LossTracker.check`
/ :meth:`LossTracker.read` sync once, every ``--log_frequency`` steps and before every save, so a
diverged run stops naming its first bad step and later weights are never saved; under torchrun
the bad step is all-reduced when read. Meanwhile :func:`skip_update_if_not_finite` makes the
fused AdamW step a device-side no-op so NaNs never reach the weights."""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional

import torch
import torch.distributed as dist

from .distributed import all_reduce

NO_BAD_STEP = 2 ** 62  # "every step so far was finite"; a MIN over processes keeps the first


def skip_update_if_not_finite(optimizers: Iterable[torch.optim.Optimizer], total: torch.Tensor,
                              world: int, scaler: torch.amp.GradScaler) -> None:
    """Make each fused optimiser's next ``step()`` a no-op if ``total`` is not finite on any
    process.

    Sets ``found_inf`` (GradScaler's flag for fused optimisers; AdamW skips at 1, is bit-identical
    at 0), no host read. ``--amp fp16``'s GradScaler sets it itself; non-fused optimisers are left
    alone."""
    if scaler.is_enabled():
        return
    bad = all_reduce((~torch.isfinite(total.detach())).float(), world, dist.ReduceOp.MAX)
    for optimizer in optimizers:
        if optimizer.defaults.get("fused"):
            optimizer.found_inf = bad


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps the last good checkpoint."""


class LossTracker:
    """Device-side sums of the loss terms and the first non-finite step over ``world`` processes;
    ``losses``: host totals of every step read so far."""

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
        """Move pending totals to :attr:`losses`, one sync; all processes call it together.

        Raises:
            TrainingDiverged: ``step <n>: non-finite loss <total> (<term>=<value>, ...);
                stopping``."""
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
