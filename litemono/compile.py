"""``torch.compile`` of the training step's forward and loss (``--compile``, ``--compile_mode``).

The model and the criterion each trace into one graph (static shapes, no ``.item()``;
tests/test_compile.py holds every ``configs/kitti`` row at zero graph breaks); backward and the
optimiser step stay outside. Modes (torch.compile's): ``default`` (inductor kernels);
``reduce-overhead`` (the same as CUDA graphs, the lever for the launch-bound step; needs fixed
shapes: last partial batch dropped, ``dynamic=False``; returned tensors are overwritten by the
next replay, so read or clone them first; ``default`` on a CPU); ``max-autotune`` (benchmarks
kernels while compiling, then CUDA graphs; minutes of compile for a few percent)."""
from __future__ import annotations

from typing import Callable

import torch

from .options import COMPILE_MODES  # one list: the --compile_mode choices
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # inductor replays these as CUDA graphs


def compile_step(fn: Callable, mode: str = "default", backend: str = "inductor",
                 new_step: bool = True) -> Callable:
    """Compile the model or criterion as one graph (``fullgraph=True``: a break is an error);
    ``backend="eager"`` traces only; ``new_step``: mark a CUDA-graph step first (criterion:
    False)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"--compile_mode must be one of {', '.join(COMPILE_MODES)}, "
                         f"got {mode!r}")
    compiled = torch.compile(fn, mode=mode, fullgraph=True, dynamic=False, backend=backend)
    if mode not in CUDA_GRAPH_MODES or not new_step:
        return compiled

    def step(*args, **kwargs):
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args, **kwargs)

    return step
