"""AdamW for networks whose convolution weights are channels_last (the CPU training default).

torch's fused AdamW kernel works on contiguous tensors: for a channels_last weight it copies the
parameter, its gradient and both moments into contiguous memory and back at every step (the
pose ResNet-18's fused step alone: 15 ms instead of 6 ms on this project's 2-core CPU; both
steps of a 320x96 training step: 13-14 ms instead of 7.5-8 ms, docs/performance.md).
:class:`ChannelsLastAdamW` hands the kernel each such weight as a contiguous alias of the same
memory instead: a channels_last (O, I, kh, kw) tensor is a contiguous (O, kh, kw, I) one,
permuted. AdamW is element-wise, so the update is the same, bit for bit; the saved state is in
the parameters' own shapes (upstream's ``adam.pth`` layout).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List

import torch
from torch import nn


def _is_channels_last_only(tensor: torch.Tensor) -> bool:
    return (tensor.dim() == 4 and not tensor.is_contiguous()
            and tensor.is_contiguous(memory_format=torch.channels_last))


def _as_alias(tensor: torch.Tensor) -> torch.Tensor:
    """(O, I, kh, kw) -> (O, kh, kw, I), a view (contiguous for channels_last memory)."""
    return tensor.permute(0, 2, 3, 1)


def _from_alias(tensor: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_as_alias`, a view."""
    return tensor.permute(0, 3, 1, 2)


class ChannelsLastAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` (same arguments, same updates) that steps channels_last 4-D
    parameters through contiguous aliases of their memory (see the module docstring).

    Args:
        params: an iterable of parameters (one group; per-group options are not supported).
        **kwargs: ``torch.optim.AdamW``'s options (``lr``, ``weight_decay``, ``fused`` ...).

    The aliases take their gradients from the parameters after every backward pass and before
    every step; :meth:`zero_grad` clears both. The parameters must keep their memory: replacing
    ``param.data`` (or moving the network) after construction is refused at the next step.
    """

    def __init__(self, params: Iterable[torch.Tensor], *args: Any, **kwargs: Any):
        originals = list(params)
        if any(isinstance(p, dict) for p in originals):
            raise TypeError("ChannelsLastAdamW takes one iterable of parameters, not groups")
        self._aliases: Dict[int, tuple] = {}  # state index -> (alias, original)
        stepped: List[torch.Tensor] = []
        for index, param in enumerate(originals):
            if _is_channels_last_only(param):
                alias = nn.Parameter(_as_alias(param.detach()), requires_grad=param.requires_grad)
                self._aliases[index] = (alias, param)
                param.register_post_accumulate_grad_hook(
                    lambda p, alias=alias: ChannelsLastAdamW._share_grad(alias, p))
                stepped.append(alias)
            else:
                stepped.append(param)
        super().__init__(stepped, *args, **kwargs)

    @staticmethod
    def _share_grad(alias: torch.Tensor, param: torch.Tensor) -> None:
        if param.grad is None:
            alias.grad = None
        elif alias.grad is None or alias.grad.data_ptr() != param.grad.data_ptr():
            alias.grad = _as_alias(param.grad)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for alias, param in self._aliases.values():
            if alias.data_ptr() != param.data_ptr():
                raise RuntimeError("ChannelsLastAdamW: a parameter no longer uses the memory it "
                                   "had when the optimiser was built (was the network moved or "
                                   "its .data replaced?); build the optimiser after that")
            self._share_grad(alias, param)
        return super().step(closure)

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: D102
        super().zero_grad(set_to_none)
        for alias, param in self._aliases.values():
            if param.grad is not None:
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.zero_()

    def state_dict(self) -> Dict[str, Any]:  # noqa: D102
        state = super().state_dict()
        moments = dict(state["state"])
        for index in self._aliases:
            if index in moments:
                moments[index] = {key: _from_alias(value) if _is_alias_moment(value) else value
                                  for key, value in moments[index].items()}
        return {**state, "state": moments}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:  # noqa: D102
        moments = dict(state_dict["state"])
        for index in self._aliases:
            if index in moments:
                moments[index] = {key: _as_alias(value) if _is_alias_moment(value) else value
                                  for key, value in moments[index].items()}
        super().load_state_dict({**state_dict, "state": moments})


def _is_alias_moment(value: Any) -> bool:
    return torch.is_tensor(value) and value.dim() == 4
