"""Depth Anything V2 (NeurIPS 2024, arXiv:2406.09414) as a frozen teacher via ``transformers``.

It predicts relative inverse depth >= 0 (ReLU head; sky ~0; scale and shift unknown). Inputs
follow the authors' ``infer_image``, not the ``transformers`` processor (which shrinks a
192x640 frame to 154x518): one scale so the short side is >=
``input_size``, sides rounded to multiples of 14, bicubic, ImageNet mean / std; the output is
resized back bilinearly (``align_corners=True``). Licences: Small is Apache-2.0; Base and Large
are CC-BY-NC-4.0."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

HUB_IDS: Dict[str, str] = {
    "small": "depth-anything/Depth-Anything-V2-Small-hf",
    "base": "depth-anything/Depth-Anything-V2-Base-hf",
    "large": "depth-anything/Depth-Anything-V2-Large-hf",
}
PATCH_SIZE = 14  # DINOv2 ViT patch: every input side must be a multiple of it
DEFAULT_INPUT_SIZE = 518  # the authors' default short side (37 patches)
# ImageNet statistics; the published preprocessor_config.json of every DA-V2 "-hf" model uses them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TeacherUnavailableError(RuntimeError):
    """The teacher weights could not be found locally nor downloaded."""


def lower_bound_size(height: int, width: int, input_size: int = DEFAULT_INPUT_SIZE,
                     multiple: int = PATCH_SIZE) -> Tuple[int, int]:
    """Teacher input ``(height, width)``: aspect kept, short side >= ``input_size``.

    One scale factor for both sides; each side rounded to the nearest multiple of ``multiple``
    (ties to even, as the authors' ``np.round``), or up if that falls below ``input_size``.
    E.g. 192x640 -> 518x1722."""
    scale = max(input_size / height, input_size / width)

    def snap(length: float) -> int:
        rounded = round(length / multiple) * multiple
        return rounded if rounded >= input_size else math.ceil(length / multiple) * multiple

    return snap(scale * height), snap(scale * width)


def resolve_source(model: str = "small", teacher_path: Optional[str] = None) -> str:
    """Hub id or local folder to load; ``teacher_path`` wins over ``model``.

    Raises:
        TeacherUnavailableError: ``teacher_path`` is not a folder with a ``config.json``.
        ValueError: ``model`` is not a known size and not a hub id."""
    if teacher_path is not None:
        if not (Path(teacher_path) / "config.json").is_file():
            raise TeacherUnavailableError(
                f"--teacher_path {teacher_path}: not a folder with config.json and "
                "model.safetensors (a transformers save_pretrained / hub snapshot folder)")
        return str(teacher_path)
    if model in HUB_IDS:
        return HUB_IDS[model]
    if "/" in model:
        return model
    raise ValueError(f"--teacher {model!r}: expected one of {sorted(HUB_IDS)}, a hub id or "
                     "--teacher_path")


def _offline_message(source: str, reason: Exception) -> str:
    return (f"cannot load the Depth Anything V2 teacher {source!r} ({reason.__class__.__name__}): "
            "it is not in the local cache and could not be downloaded (no network access, or no such "
            "hub id). On a machine with internet run\n"
            f"  hf download {source} --local-dir weights/{source.split('/')[-1]}\n"
            "(hf is huggingface_hub's command line, 0.34 or later: pip install -U huggingface_hub; "
            "the folder must hold config.json and model.safetensors), copy that folder here and "
            f"pass --teacher_path weights/{source.split('/')[-1]}.")


class DepthAnythingTeacher(nn.Module):
    """Frozen relative DA-V2 model: RGB in [0, 1] -> relative disparity; ``input_size``: short-side
    lower bound (a multiple of 14 recommended)."""

    def __init__(self, model: nn.Module, input_size: int = DEFAULT_INPUT_SIZE):
        super().__init__()
        if input_size < PATCH_SIZE:
            raise ValueError(f"--input_size must be >= {PATCH_SIZE}, got {input_size}")
        self.model = model.eval().requires_grad_(False)
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, out_size: Tuple[int, int]) -> torch.Tensor:
        """(B, 3, h, w) RGB in [0, 1] -> (B, H, W) float32 disparity >= 0 at ``out_size`` (0 =
        sky)."""
        size = lower_bound_size(images.shape[-2], images.shape[-1], self.input_size)
        resized = F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False)
        disp = self.model(pixel_values=(resized - self.mean) / self.std).predicted_depth
        disp = F.interpolate(disp.unsqueeze(1).float(), size=tuple(out_size), mode="bilinear",
                             align_corners=True)
        return disp.squeeze(1).relu()

    def predict_list(self, images: Sequence[torch.Tensor],
                     out_size: Tuple[int, int]) -> List[torch.Tensor]:
        """Images (3, h_i, w_i) of varied sizes, batched by size -> one (H, W) float32 map each, in
        order."""
        device = self.mean.device
        by_size: Dict[Tuple[int, int], List[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape[-2:]), []).append(i)
        results: List[Optional[torch.Tensor]] = [None] * len(images)
        for indices in by_size.values():
            batch = torch.stack([images[i] for i in indices]).to(device)
            for i, disp in zip(indices, self(batch, out_size)):
                results[i] = disp
        return results  # type: ignore[return-value]


def load_teacher(model: str = "small", teacher_path: Optional[str] = None,
                 input_size: int = DEFAULT_INPUT_SIZE, device: str = "cpu",
                 local_files_only: bool = False) -> DepthAnythingTeacher:
    """Load DA-V2 (``small`` / ``base`` / ``large`` / hub id, or ``teacher_path``), frozen, on
    ``device``; ``local_files_only`` never touches the network.

    Raises:
        TeacherUnavailableError: with the command to download the weights and where to put them."""
    from transformers import DepthAnythingForDepthEstimation

    source = resolve_source(model, teacher_path)
    try:
        network = DepthAnythingForDepthEstimation.from_pretrained(
            source, local_files_only=local_files_only or teacher_path is not None)
    except OSError as exc:
        raise TeacherUnavailableError(_offline_message(source, exc)) from exc
    if getattr(network.config, "depth_estimation_type", "relative") != "relative":
        raise ValueError(f"{source}: a metric Depth Anything model; the teacher must be relative")
    return DepthAnythingTeacher(network, input_size).to(device)


# Architecture of randomly initialised stand-ins (no weights can be downloaded in tests or on a
# benchmark machine): "tiny" is a 164k-parameter model for tests;
# "small" has DA-V2 Small's published configuration (24.8M parameters, the same speed).
RANDOM_ARCHITECTURES = {
    "tiny": dict(backbone=dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                               mlp_ratio=2, out_indices=[1, 2, 3, 4]),
                 reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                 fusion_hidden_size=16, head_hidden_size=8),
    "small": dict(backbone=dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                out_indices=[3, 6, 9, 12]),
                  reassemble_hidden_size=384, reassemble_factors=[4, 2, 1, 0.5],
                  neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
                  head_hidden_size=32),
}


def random_depth_anything(architecture: str = "tiny", seed: int = 0, init_std: float = 0.15,
                          head_bias: float = 1.0):
    """Randomly initialised relative DA-V2 for tests (not a teacher): the default init gives ~80%
    zeros after the ReLU head, so weights use ``init_std`` and the head bias ``head_bias``."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    spec = dict(RANDOM_ARCHITECTURES[architecture])
    backbone = Dinov2Config(patch_size=PATCH_SIZE, image_size=DEFAULT_INPUT_SIZE,
                            reshape_hidden_states=False, **spec.pop("backbone"))
    config = DepthAnythingConfig(backbone_config=backbone, depth_estimation_type="relative", **spec)
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(module.weight, std=init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.constant_(model.head.conv3.bias, head_bias)
    return model.eval()
