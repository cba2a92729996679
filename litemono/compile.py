"""``torch.compile`` of the training step's forward and loss (``--compile``, ``--compile_mode``).

The model (both networks, :class:`litemono.model.DepthPoseModel`) and the criterion (view
synthesis, photometric and smoothness terms, distillation, Chamfer) each trace into one graph:
the losses use static shapes (no boolean indexing, no per-image loops, no ``.item()``), and
``tests/test_compile.py`` holds every ``configs/kitti`` row at zero graph breaks. The backward
and the optimiser step stay outside: AOTAutograd compiles the backward of the traced graphs,
and ``loss.backward()`` runs it.

Modes (torch.compile's own; https://pytorch.org/docs/stable/generated/torch.compile.html):

* ``default``: inductor kernels (fusion of the element-wise loss work), no CUDA graphs.
* ``reduce-overhead``: the same kernels replayed as CUDA graphs, so a step costs a few graph
  launches instead of thousands of kernel launches; this is the lever for the small,
  launch-bound Lite-Mono step. It needs fixed shapes: training drops the last partial
  batch, so every step has the same batch shape, and ``dynamic=False`` keeps one graph. A tensor
  the compiled step returns lives in a buffer the next replay overwrites: read or clone what you
  keep (the step's loss terms, images to log) before the next call. On a CPU it is ``default``.
* ``max-autotune``: benchmarks kernel choices (matmul / convolution templates) while compiling,
  then uses CUDA graphs as ``reduce-overhead`` does; minutes of compile time for a few percent.
"""
from __future__ import annotations

from typing import Callable

import torch

from .options import COMPILE_MODES  # one list: the --compile_mode choices
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # inductor replays these as CUDA graphs


def compile_step(fn: Callable, mode: str = "default", backend: str = "inductor",
                 new_step: bool = True) -> Callable:
    """Compile a module or function of the step (the model, the criterion) as one graph.

    Args:
        fn: e.g. :class:`litemono.model.DepthPoseModel` or the criterion.
        mode: one of :data:`COMPILE_MODES` (module docstring).
        backend: torch.compile's backend; ``"eager"`` traces without generating kernels
            (tests: the graph-break check at no compile cost).
        new_step: with a CUDA graph mode, each call first marks a new step (the model: the
            first graph of a step), so the previous step's outputs may be overwritten (read them
            before the next call). The criterion, called after the model, passes False.

    Returns:
        A callable with ``fn``'s signature. ``fullgraph=True``: a graph break is an error
        naming the line, not a silent fall-back to eager for part of the step.
    """
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
