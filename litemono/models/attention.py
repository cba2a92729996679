"""Attention modules for the encoder stages (``--attention KIND``; ``--spatial_attention``):
:data:`ATTENTION_KINDS`, name -> factory(channels) -> module (timm's ``create_attn.py`` style).
``spatial`` (the report's) and ``spatial_bn``: :class:`SpatialAttention`, 98 weights per stage,
~1 M MACs at 640x192 (lite-mono 5.032 G -> 5.033 G); ``spatial_bn``'s BN: +4 per gate pixel."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

CBAM_KERNEL = 7  # CBAM's choice (paper, table 4: 7x7 beats 3x3)


class SpatialAttention(nn.Module):
    """x * sigmoid(conv7x7([mean_c(x); max_c(x)])), bias-free conv (1, 2, 7, 7): ``spatial``, the
    equation of CBAM, Woo et al., ECCV 2018, Eq. 3 (no BN). ``batch_norm`` (``spatial_bn``):
    BatchNorm2d(1) (eps 1e-5, momentum 0.01) before the sigmoid, as the official CBAM code's
    SpatialGate (which stacks max before mean: its conv weights load with the inputs swapped)."""

    def __init__(self, kernel_size: int = CBAM_KERNEL, batch_norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01) if batch_norm else None

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> the gate (B, 1, H, W) in (0, 1)."""
        pooled = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        logits = self.conv(pooled)
        return torch.sigmoid(logits if self.bn is None else self.bn(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> gated x, same shape."""
        return x * self.attention_map(x)


# kind -> factory(channels of the stage) -> module mapping (B, C, H, W) to the same shape
ATTENTION_KINDS: Dict[str, Callable[[int], nn.Module]] = {
    "spatial": lambda channels: SpatialAttention(),  # CBAM's spatial gate ignores the channels
    "spatial_bn": lambda channels: SpatialAttention(batch_norm=True),
}


def register_attention(kind: str, factory: Callable[[int], nn.Module]) -> None:
    """Add an attention kind: ``factory(channels)`` builds the module for one encoder stage."""
    if kind in ATTENTION_KINDS:
        raise ValueError(f"attention kind {kind!r} already exists")
    ATTENTION_KINDS[kind] = factory


def make_attention(kind: Optional[str], channels: int) -> Optional[nn.Module]:
    """The ``kind`` module for a stage of ``channels``; None for None (the upstream network)."""
    if kind is None:
        return None
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"--attention: unknown kind {kind!r}, choose from {list(ATTENTION_KINDS)}")
    return ATTENTION_KINDS[kind](channels)
