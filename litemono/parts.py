"""What a training run optimises, and how a batch runs through it (Zhang et al., CVPR 2023).

:class:`Parts` holds the depth and pose networks (:mod:`litemono.models.build`), their AdamW
optimisers and learning-rate schedules (section 4.2; :mod:`litemono.schedule`) and the AMP
scaler. :func:`build_parts` makes them, :func:`wrap_for_training` adds DistributedDataParallel
and ``--compile``, :func:`start_parts` loads a ``--resume`` training state or the initial
weights (:mod:`litemono.checkpoint`), and :func:`run_networks` is the forward half of upstream's
``process_batch`` (``../shared/spec/upstream.md`` section 8) that :mod:`litemono.engine` trains
and validates with.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from torch import nn

from . import checkpoint as ckpt
from . import distributed
from .compile import compile_step
from .config import Config, ConfigError, lr_schedule_params
from .geometry import transformation_from_parameters
from .models.build import build_depth_network, build_pose_network
from .schedule import build_schedules

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NETWORK_INPUT = "color_aug"  # the images the networks see; the loss reads ("color", f, s)


@dataclasses.dataclass
class Parts:
    """Raw networks (saving, validation), their training wrappers (DDP), optimisers, and the
    step's forward + loss (:func:`forward_and_loss`, compiled with ``--compile``)."""

    depth: nn.Module
    pose: nn.Module
    run_depth: nn.Module
    run_pose: nn.Module
    optimizers: Dict[str, torch.optim.Optimizer]
    schedules: Dict[str, Any]
    scaler: torch.amp.GradScaler
    forward_and_loss: Callable[..., tuple]


def build_parts(cfg: Config, device: torch.device, world: int) -> Parts:
    """Networks on ``device``, optimisers (AdamW, weight decay on every parameter), schedules."""
    model_cfg = dataclasses.replace(cfg.model, mypretrain=None)  # applied by load_initial_weights
    depth = build_depth_network(model_cfg)
    pose = build_pose_network(model_cfg, depth)
    memory = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    depth.to(device, memory_format=memory)
    pose.to(device, memory_format=memory)
    if world > 1 and cfg.train.sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync_bn needs CUDA devices (SyncBatchNorm has no CPU kernels)")
        depth = nn.SyncBatchNorm.convert_sync_batchnorm(depth)
        pose = nn.SyncBatchNorm.convert_sync_batchnorm(pose)
    lr = lr_schedule_params(cfg.train.lr)
    decay = cfg.train.weight_decay
    # fused: the same AdamW update in one kernel over all tensors, where torch has one
    fused = device.type in ("cpu", "cuda")
    optimizers = {
        "depth": torch.optim.AdamW(depth.parameters(), lr[0], weight_decay=decay, fused=fused),
        "pose": torch.optim.AdamW(pose.parameters(), lr[3], weight_decay=decay, fused=fused)}
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")
    return Parts(depth, pose, depth, pose, optimizers,
                 build_schedules(optimizers["depth"], optimizers["pose"], lr), scaler,
                 forward_and_loss)


def wrap_for_training(parts: Parts, cfg: Config, device: torch.device, world: int) -> None:
    """DistributedDataParallel under torchrun, then ``--compile``: the step's forward and loss
    (:func:`forward_and_loss`) as one graph, in ``--compile_mode`` (:mod:`litemono.compile`)."""
    parts.run_depth = distributed.wrap_ddp(parts.depth, device, world)
    parts.run_pose = distributed.wrap_ddp(parts.pose, device, world)
    if cfg.train.compile:
        parts.forward_and_loss = compile_step(forward_and_loss, cfg.train.compile_mode)


def start_parts(cfg: Config, parts: Parts, state: Optional[Mapping[str, Any]],
                path: Optional[Path], report: Callable[[str], None]) -> tuple:
    """Load a training state (``--resume``; :mod:`litemono.checkpoint`) or the initial weights.

    Args:
        state: the training state read from ``path``, or None for a fresh start
            (``--load_weights_folder``, ``--mypretrain``).
        report: prints a line (the resumed step; warnings where the run will not be exact).

    Returns:
        ``(epoch, step, position, best)`` to continue from.
    """
    if state is None:
        ckpt.load_initial_weights(cfg, parts, report)
        return 0, 0, 0, None
    ckpt.restore_state(state, parts, f"--resume {path}")
    note = " (--mypretrain ignored: resumed weights win)" if cfg.model.mypretrain else ""
    report(f"resumed {path}: epoch {state['epoch']}, step {state['step']}{note}")
    changes = ckpt.changed_options(state["config"], cfg)
    if changes:
        report("warning: resuming with changed options, so the run will not match an "
               "uninterrupted one: " + "; ".join(changes))
    threads = state.get("threads")
    if threads is not None and threads != torch.get_num_threads():
        report(f"warning: the run started with {threads} CPU threads and resumes with "
               f"{torch.get_num_threads()}: CPU results will not be bit-identical to "
               f"an uninterrupted run (set OMP_NUM_THREADS={threads})")
    return state["epoch"], state["step"], state["position"], state["best"]


def run_networks(depth_net: nn.Module, pose_net: nn.Module, inputs: Mapping[Any, Any],
                 sources: List[Any], amp_dtype: Optional[torch.dtype] = None) -> Dict[Any, Any]:
    """Network outputs of a batch: ``("disp", s)`` ... and ``("cam_T_cam", 0, f)`` (B, 4, 4).

    The networks run under autocast with ``amp_dtype`` (None: float32); their outputs are cast to
    float32 and the poses are built outside autocast, so warping and the losses stay in float32.
    """
    target = inputs[(NETWORK_INPUT, 0, 0)]
    temporal = [f for f in sources if f != "s"]
    with torch.autocast(target.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        outputs = dict(depth_net(target))
        if temporal:
            pairs = [torch.cat([inputs[(NETWORK_INPUT, f, 0)], target] if f < 0
                               else [target, inputs[(NETWORK_INPUT, f, 0)]], dim=1)
                     for f in temporal]
            motion = pose_net(pairs)  # pair by pair: 2 x (len(temporal) * B, 2, 1, 3)
    outputs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
               for k, v in outputs.items()}
    if temporal:
        axisangle, translation = (m.float().chunk(len(temporal)) for m in motion)
        for f, rot, shift in zip(temporal, axisangle, translation):
            outputs[("axisangle", 0, f)], outputs[("translation", 0, f)] = rot, shift
            outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(
                rot[:, 0], shift[:, 0], invert=f < 0)
    if "s" in sources:
        outputs[("cam_T_cam", 0, "s")] = inputs["stereo_T"]
    return outputs


def forward_and_loss(depth_net: nn.Module, pose_net: nn.Module, criterion: nn.Module,
                     inputs: Mapping[Any, Any], amp_dtype: Optional[torch.dtype] = None) -> tuple:
    """The step's forward and loss: ``(total, terms, outputs)``; what ``--compile`` compiles."""
    outputs = run_networks(depth_net, pose_net, inputs, criterion.source_frames, amp_dtype)
    total, terms = criterion(inputs, outputs)
    return total, terms, outputs


def to_device(batch: Mapping[Any, Any], device: torch.device, channels_last: bool) -> Dict:
    """The tensors of a batch on ``device``; the networks' inputs (``("color_aug", f, s)``)
    channels_last when asked. The images the loss reads stay NCHW: its 3-channel element-wise
    work (warping, SSIM windows) gains nothing from NHWC memory (docs/performance.md)."""
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
            if (channels_last and value.dim() == 4 and isinstance(key, tuple)
                    and key[0] == NETWORK_INPUT):
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out
