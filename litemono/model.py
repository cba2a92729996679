"""The depth and pose networks as one module: a batch in, the outputs the loss reads out.

:class:`DepthPoseModel` is the forward half of upstream's ``process_batch`` (``trainer.py``);
``torch.compile`` and DDP wrap it; its ``depth`` and ``pose`` are saved as upstream's weight
files."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from .config import Config
from .geometry import transformation_from_parameters
from .models.build import build_depth_network, build_pose_network

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
NETWORK_INPUT = "color_aug"  # the images the networks see; the loss reads ("color", f, s)


def source_frames(cfg: Config) -> List[Any]:
    """The frames warped into the target: ``--frame_ids`` after 0, then ``"s"`` (stereo)."""
    return [*cfg.data.frame_ids[1:], *(["s"] if cfg.data.use_stereo else [])]


class DepthPoseModel(nn.Module):
    """``forward(inputs)`` -> ``("disp", s)`` (plus bin outputs) and ``("cam_T_cam", 0, f)`` (B, 4,
    4).

    Networks run under autocast with ``amp_dtype`` (None: float32), outputs cast to float32, poses
    built outside autocast. Each pair goes through the pose network alone, as upstream."""

    def __init__(self, depth: nn.Module, pose: nn.Module, sources: Sequence[Any],
                 amp_dtype: Optional[torch.dtype] = None):
        super().__init__()
        self.depth, self.pose = depth, pose
        self.sources, self.amp_dtype = list(sources), amp_dtype

    def forward(self, inputs: Mapping[Any, Any]) -> Dict[Any, Any]:
        target = inputs[(NETWORK_INPUT, 0, 0)]
        temporal = [f for f in self.sources if f != "s"]
        with torch.autocast(target.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = dict(self.depth(target))
            if temporal:  # upstream's pair order: (earlier frame, later frame)
                pairs = [torch.cat([inputs[(NETWORK_INPUT, f, 0)], target] if f < 0
                                   else [target, inputs[(NETWORK_INPUT, f, 0)]], dim=1)
                         for f in temporal]
                motion = self.pose(pairs)  # 2 x (len(temporal) * B, 2, 1, 3)
        outputs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                   for k, v in outputs.items()}
        if temporal:
            axisangle, translation = (m.float().chunk(len(temporal)) for m in motion)
            for f, rot, shift in zip(temporal, axisangle, translation):
                outputs[("axisangle", 0, f)], outputs[("translation", 0, f)] = rot, shift
                outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(
                    rot[:, 0], shift[:, 0], invert=f < 0)
        if "s" in self.sources:
            outputs[("cam_T_cam", 0, "s")] = inputs["stereo_T"]
        return outputs


def build_model(cfg: Config) -> DepthPoseModel:
    """The networks of ``cfg``, freshly initialised (``--mypretrain`` and the other initial
    weights are applied by :func:`litemono.checkpoint.load_initial_weights`)."""
    depth = build_depth_network(dataclasses.replace(cfg.model, mypretrain=None))
    pose = build_pose_network(cfg.model, depth)
    return DepthPoseModel(depth, pose, source_frames(cfg), AMP_DTYPES[cfg.train.amp])


def to_device(batch: Mapping[Any, Any], device: torch.device, channels_last: bool) -> Dict:
    """Batch tensors on ``device``; network inputs (``("color_aug", f, s)``) channels_last if asked,
    loss images NCHW (no gain from NHWC there, docs/performance.md)."""
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
            if (channels_last and value.dim() == 4 and isinstance(key, tuple)
                    and key[0] == NETWORK_INPUT):
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out
